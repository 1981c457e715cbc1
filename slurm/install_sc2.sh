#!/usr/bin/env bash
# Install what lica's SMAC backend (env=smac_*) needs, on a Linux machine with internet:
#   1. StarCraft II 4.10 for Linux (Blizzard's s2client-proto package SC2.4.10.zip, the
#      version the LICA paper used) into $SC2PATH (default: $HOME/StarCraftII);
#   2. the SMAC maps (SMAC_Maps.zip from the oxwhirl/smac releases) into
#      $SC2PATH/Maps/SMAC_Maps;
#   3. SMAC itself, from git, into the active virtual environment.  NOT `pip install smac`:
#      PyPI's "smac" is SMAC3, an unrelated hyper-parameter optimiser.
# Idempotent: each step is skipped when its result is already there.
#
# Usage:   bash slurm/install_sc2.sh            (or: make sc2)
# Env:     SC2PATH   where the game goes            (default $HOME/StarCraftII)
#          PYTHON    interpreter to pip-install into (default: $VIRTUAL_ENV/bin/python)
#          SC2_SKIP_PIP=1  install the game and maps only
# Needs:   curl or wget, unzip, git; ~4 GB download and ~8 GB of disk next to $SC2PATH.
# Then:    export SC2PATH=...   (printed at the end) in the shell / SLURM job that trains.
set -euo pipefail

SC2PATH="${SC2PATH:-$HOME/StarCraftII}"
SC2_VERSION="4.10"
SC2_BUILD="75689"  # Versions/Base75689 is SC2 4.10
SC2_URL="${SC2_URL:-https://blzdistsc2-a.akamaihd.net/Linux/SC2.${SC2_VERSION}.zip}"
SC2_ZIP_PASSWORD="iagreetotheeula"
MAPS_URL="${MAPS_URL:-https://github.com/oxwhirl/smac/releases/download/v0.1-beta1/SMAC_Maps.zip}"
SMAC_SPEC="smac @ git+https://github.com/oxwhirl/smac.git"
PAPER_MAPS=(2s3z 1c3s5z 5m_vs_6m 2c_vs_64zg MMM2 3s5z_vs_3s6z)

say() { printf 'install_sc2: %s\n' "$*"; }
die() { printf 'install_sc2: ERROR: %s\n' "$*" >&2; exit 1; }

download() {  # download URL FILE
    if command -v curl >/dev/null 2>&1; then
        curl -fL --retry 3 -o "$2" "$1"
    elif command -v wget >/dev/null 2>&1; then
        wget -q --tries=3 -O "$2" "$1"
    else
        die "need curl or wget to download $1"
    fi
}

command -v unzip >/dev/null 2>&1 || die "need unzip (e.g. apt-get install unzip)"

SC2PATH="$(mkdir -p "$(dirname "$SC2PATH")" && cd "$(dirname "$SC2PATH")" && pwd)/$(basename "$SC2PATH")"
PARENT="$(dirname "$SC2PATH")"
WORK="$(mktemp -d "$PARENT/.install_sc2.XXXXXX")"
trap 'rm -rf "$WORK"' EXIT

# --- 1. StarCraft II 4.10 ----------------------------------------------------------
if [ -d "$SC2PATH/Versions/Base$SC2_BUILD" ]; then
    say "StarCraft II $SC2_VERSION already installed in $SC2PATH"
else
    [ -e "$SC2PATH/Versions" ] && say "note: $SC2PATH holds another SC2 version; adding $SC2_VERSION"
    say "downloading StarCraft II $SC2_VERSION for Linux (~4 GB) from $SC2_URL"
    download "$SC2_URL" "$WORK/SC2.zip"
    say "EULA: the archive password '$SC2_ZIP_PASSWORD' means you accept the StarCraft II"
    say "      AI and Machine Learning License (https://blzdistsc2-a.akamaihd.net/AI_AND_MACHINE_LEARNING_LICENSE.html)."
    say "      Using it here, you accept that licence."
    unzip -q -P "$SC2_ZIP_PASSWORD" "$WORK/SC2.zip" -d "$WORK/unpacked"
    rm -f "$WORK/SC2.zip"
    [ -d "$WORK/unpacked/StarCraftII/Versions/Base$SC2_BUILD" ] \
        || die "unexpected archive layout: no StarCraftII/Versions/Base$SC2_BUILD"
    if [ ! -e "$SC2PATH" ]; then
        mv "$WORK/unpacked/StarCraftII" "$SC2PATH"
    else  # merge (keeps Maps/ and other versions already there)
        cp -a "$WORK/unpacked/StarCraftII/." "$SC2PATH/"
    fi
    say "StarCraft II $SC2_VERSION installed in $SC2PATH"
fi

# --- 2. SMAC maps ------------------------------------------------------------------
maps_missing() {
    local m
    for m in "${PAPER_MAPS[@]}"; do
        [ -f "$SC2PATH/Maps/SMAC_Maps/$m.SC2Map" ] || { echo "$m"; return 0; }
    done
    return 1
}
if ! maps_missing >/dev/null; then
    say "SMAC maps already in $SC2PATH/Maps/SMAC_Maps"
else
    say "downloading the SMAC maps from $MAPS_URL"
    download "$MAPS_URL" "$WORK/SMAC_Maps.zip"
    mkdir -p "$SC2PATH/Maps"
    unzip -q -o "$WORK/SMAC_Maps.zip" -d "$SC2PATH/Maps"   # creates Maps/SMAC_Maps/
    say "SMAC maps installed in $SC2PATH/Maps/SMAC_Maps"
fi

# --- 3. SMAC (git) into the active venv --------------------------------------------
if [ "${SC2_SKIP_PIP:-0}" = 1 ]; then
    say "SC2_SKIP_PIP=1: not installing SMAC"
else
    if [ -n "${PYTHON:-}" ]; then
        PY="$PYTHON"
    elif [ -n "${VIRTUAL_ENV:-}" ]; then
        PY="$VIRTUAL_ENV/bin/python"
    else
        die "no virtual environment is active: activate lica's venv first (or set PYTHON=/path/to/venv/bin/python, or SC2_SKIP_PIP=1)"
    fi
    if "$PY" -c "import smac.env.starcraft2.starcraft2" >/dev/null 2>&1; then
        say "SMAC already installed for $PY"
    else
        if "$PY" -c "import smac" >/dev/null 2>&1; then
            die "$PY has a 'smac' package without smac.env -- probably SMAC3 (PyPI 'smac', a hyper-parameter optimiser), which would clash with the StarCraft SMAC. Remove it first: $PY -m pip uninstall -y smac"
        fi
        command -v git >/dev/null 2>&1 || die "need git to pip-install SMAC from its repository"
        say "installing SMAC from git into $PY"
        "$PY" -m pip install "$SMAC_SPEC"
    fi
    # Some SMAC versions ship the maps inside the package: add any the zip lacked.
    pkg_maps="$("$PY" -c 'import os, smac; print(os.path.join(os.path.dirname(smac.__file__), "env", "starcraft2", "maps", "SMAC_Maps"))' 2>/dev/null || true)"
    if [ -n "$pkg_maps" ] && [ -d "$pkg_maps" ]; then
        mkdir -p "$SC2PATH/Maps/SMAC_Maps"
        cp -n "$pkg_maps"/*.SC2Map "$SC2PATH/Maps/SMAC_Maps/" 2>/dev/null || true
    fi
fi

if missing="$(maps_missing)"; then
    die "map $missing.SC2Map is still missing from $SC2PATH/Maps/SMAC_Maps (copy it from the SMAC repository's smac/env/starcraft2/maps/SMAC_Maps)"
fi

say "done. StarCraft II $SC2_VERSION + SMAC maps in $SC2PATH"
say "set this wherever lica runs (shell profile, SLURM job script or lica/conf/local/):"
printf '    export SC2PATH=%q\n' "$SC2PATH"
