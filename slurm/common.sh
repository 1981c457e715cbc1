# Shared settings for slurm/up.sh and slurm/down.sh (sourced, not run).
# Every setting can be overridden from the environment.

SLURM_SRC_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO_ROOT="$(cd "$SLURM_SRC_DIR/.." && pwd)"

# State directory: generated config, munge key, database, spool, logs, PID files.
STATE="${LICA_SLURM_DIR:-$REPO_ROOT/.slurm}"
mkdir -p "$STATE" 2>/dev/null || true
STATE="$(cd "$STATE" 2>/dev/null && pwd || echo "$STATE")"

CLUSTER="${LICA_SLURM_CLUSTER:-lica}"
PARTITION="${LICA_SLURM_PARTITION:-lica}"
NODE="${LICA_SLURM_NODE:-$(hostname -s)}"
CTLD_PORT="${LICA_SLURM_CTLD_PORT:-6817}"
SLURMD_PORT="${LICA_SLURM_SLURMD_PORT:-6818}"
DBD_PORT="${LICA_SLURM_DBD_PORT:-6819}"
DB_PORT="${LICA_SLURM_DB_PORT:-13306}"
UP_TIMEOUT="${LICA_SLURM_UP_TIMEOUT:-60}"

CONF="$STATE/etc/slurm.conf"
# munged runs as the munge user, so its directory (key, socket, log) must be reachable by
# that user, and its socket by every client: <state>/munge when every parent of the state
# dir lets others through (o+x); otherwise (a checkout under a 0700 folder, e.g. one made by
# `mktemp -d`) a directory under /run named after the state dir.
others_can_enter() {  # others_can_enter DIR: DIR and every parent of it are o+x
    local d="$1" mode
    while [ -n "$d" ] && [ "$d" != / ]; do
        mode="$(stat -c %a "$d" 2>/dev/null)" || return 1
        (( (8#$mode & 1) != 0 )) || return 1
        d="$(dirname "$d")"
    done
}
MUNGE_DIR_UNDER_RUN=false  # true for the /run fallback, which down.sh removes
if [ -n "${LICA_SLURM_MUNGE_DIR:-}" ]; then
    MUNGE_DIR="$LICA_SLURM_MUNGE_DIR"
elif others_can_enter "$(dirname "$STATE")"; then
    MUNGE_DIR="$STATE/munge"
else
    MUNGE_DIR="/run/lica-munge/$(printf '%s' "$STATE" | cksum | cut -d' ' -f1)"
    MUNGE_DIR_UNDER_RUN=true
fi
MUNGE_SOCKET="$MUNGE_DIR/munge.socket.2"

# make_munge_dir: create $MUNGE_DIR for the munge user (as root), or die naming the fix.
make_munge_dir() {
    (umask 022; mkdir -p "$MUNGE_DIR")
    chown munge:munge "$MUNGE_DIR"
    chmod 755 "$MUNGE_DIR"
    runuser -u munge -- test -w "$MUNGE_DIR" \
        || die "the munge user cannot write to $MUNGE_DIR (a parent folder closed to other users?); chmod o+x its parents or set LICA_SLURM_MUNGE_DIR to a folder it can reach"
}

DB_SOCKET="$STATE/run/mysqld.sock"
PIDS="$STATE/pids"
LOGS="$STATE/log"

# Start and stop order; a PID file $PIDS/<name>.pid is kept for each.
DAEMONS=(munged mariadbd slurmdbd slurmctld slurmd)

export SLURM_CONF="$CONF"

log() { echo "slurm: $*"; }
die() { echo "slurm: ERROR: $*" >&2; exit 1; }

# alive PID NAME: PID is a running (not zombie) process called NAME. The name
# check guards against PID reuse. Zombies count as gone: daemons are reparented
# to PID 1, which may take seconds to reap them.
alive() {
    local stat
    stat="$(cat "/proc/$1/stat" 2>/dev/null)" || return 1
    [ "$(cat "/proc/$1/comm" 2>/dev/null)" = "$2" ] || return 1
    stat="${stat##*) }"
    [ "${stat%% *}" != Z ]
}

# pid_of NAME: print the live PID recorded for daemon NAME, or fail.
pid_of() {
    local f="$PIDS/$1.pid" pid
    [ -s "$f" ] || return 1
    pid="$(tr -dc '0-9' < "$f")"
    [ -n "$pid" ] && alive "$pid" "$1" || return 1
    echo "$pid"
}
