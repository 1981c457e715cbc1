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
MUNGE_DIR="$STATE/munge"
MUNGE_SOCKET="$MUNGE_DIR/munge.socket.2"
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
