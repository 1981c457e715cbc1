#!/usr/bin/env bash
# Install the Debian packages for a single-node SLURM cluster with accounting.
# Idempotent: exits at once when every package is already installed.
set -euo pipefail

PACKAGES=(slurmctld slurmd slurm-client slurmdbd munge mariadb-server)

missing=()
for p in "${PACKAGES[@]}"; do
    if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
        missing+=("$p")
    fi
done

if [ ${#missing[@]} -eq 0 ]; then
    echo "slurm/install.sh: all packages already installed (${PACKAGES[*]})"
    exit 0
fi

if [ "$(id -u)" -ne 0 ]; then
    echo "slurm/install.sh: missing packages: ${missing[*]}; installing them needs root" >&2
    exit 1
fi

echo "slurm/install.sh: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
# Keep the packages' maintainer scripts from starting daemons (there may be no
# systemd, and up.sh starts everything itself with its own configuration).
policy=/usr/sbin/policy-rc.d
created_policy=0
if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\nexit 101\n' > "$policy"
    chmod +x "$policy"
    created_policy=1
fi
cleanup() { if [ "$created_policy" = 1 ]; then rm -f "$policy"; fi; }
trap cleanup EXIT

apt-get update -q
apt-get install -y -q --no-install-recommends "${PACKAGES[@]}"
echo "slurm/install.sh: done"
