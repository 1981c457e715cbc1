#!/usr/bin/env bash
# Configure and start a single-node SLURM cluster (munged, mariadb, slurmdbd,
# slurmctld, slurmd) without systemd. State lives in $LICA_SLURM_DIR
# (default: <repo>/.slurm). Idempotent: exits 0 at once when already up.
# Needs root and the packages from slurm/install.sh.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

[ "$(id -u)" -eq 0 ] || die "up.sh needs root (daemons, munge user, ports)"
for cmd in munged mungekey mariadbd mariadb-install-db slurmdbd slurmctld slurmd sinfo sacct sacctmgr; do
    command -v "$cmd" >/dev/null || die "'$cmd' not found: run slurm/install.sh first"
done

# ---------------------------------------------------------------- already up?
running=()
for d in "${DAEMONS[@]}"; do
    if pid_of "$d" >/dev/null; then running+=("$d"); fi
done
if [ ${#running[@]} -eq ${#DAEMONS[@]} ] \
    && sinfo -h -N -n "$NODE" -o %t 2>/dev/null | grep -qxE 'idle|mix|alloc|comp'; then
    log "already up (state dir $STATE); export SLURM_CONF=$CONF"
    exit 0
fi
if [ ${#running[@]} -gt 0 ]; then
    log "partly up (${running[*]} running): restarting"
    "$SLURM_SRC_DIR/down.sh"
fi

# A failed start stops whatever it did start (logs stay in the state dir).
on_exit() {
    local rc=$?
    set +e
    if [ "$rc" -ne 0 ] && [ "${LICA_SLURM_KEEP_ON_FAIL:-0}" != 1 ]; then
        mkdir -p "$LOGS"
        "$SLURM_SRC_DIR/down.sh" >"$LOGS/down-after-failed-up.log" 2>&1
        echo "slurm: start failed; stopped the daemons it had started" \
            "(see $LOGS/down-after-failed-up.log; LICA_SLURM_KEEP_ON_FAIL=1 keeps them)" >&2
    fi
    exit "$rc"
}
trap on_exit EXIT
trap 'exit 129' HUP; trap 'exit 130' INT; trap 'exit 143' TERM
trap '' PIPE  # a closed stdout (e.g. "up.sh | head") must not skip the cleanup

for sock in "$MUNGE_SOCKET" "$DB_SOCKET"; do
    [ "${#sock}" -lt 100 ] || die "socket path too long for a unix socket (${#sock} chars): $sock; use a shorter LICA_SLURM_DIR"
done

t0=$(date +%s.%N)
mkdir -p "$STATE"/{etc,run,spool/slurmctld,spool/slurmd,mysql} "$PIDS" "$LOGS"
chmod 755 "$STATE" "$STATE/etc" "$STATE/run"

# Fail early with a clear message when a port is taken by someone else.
for port in "$CTLD_PORT" "$SLURMD_PORT" "$DBD_PORT" "$DB_PORT"; do
    [[ "$port" =~ ^[0-9]+$ ]] || die "port '$port' is not a number (LICA_SLURM_*_PORT)"
    if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
        die "port $port on 127.0.0.1 is already in use (another slurm/mariadb?); set LICA_SLURM_*_PORT"
    fi
done

# wait_for SECONDS DESCRIPTION LOGFILE CMD...: poll CMD until it succeeds.
wait_for() {
    local secs="$1" what="$2" logfile="$3"; shift 3
    local deadline=$(( $(date +%s) + secs )) out
    until out="$("$@" 2>&1)"; do
        if [ "$(date +%s)" -ge "$deadline" ]; then
            echo "slurm: ERROR: timed out after ${secs}s waiting for $what" >&2
            echo "slurm: last check ($*) said: ${out:-<nothing>}" | head -n 10 >&2
            echo "slurm: log: $logfile (last lines below); state dir: $STATE" >&2
            tail -n 20 "$logfile" >&2 2>/dev/null || true
            if [ -n "${WAIT_DIAG:-}" ]; then eval "$WAIT_DIAG" >&2 2>&1 || true; fi
            exit 1
        fi
        sleep 0.2
    done
}

elapsed() { awk "BEGIN{printf \"%.1f\", $(date +%s.%N)-$t0}"; }
stage() { log "+$(elapsed) s: $*"; }

# render TEMPLATE OUTPUT KEY=VALUE...: replace @KEY@ in TEMPLATE.
render() {
    local tpl="$1" out="$2" text kv; shift 2
    text="$(cat "$tpl")"
    for kv in "$@"; do text="${text//@${kv%%=*}@/${kv#*=}}"; done
    printf '%s\n' "$text" > "$out"
}

# ------------------------------------------------------------------ node size
CPUS="${LICA_SLURM_CPUS:-$(nproc)}"
if [ -n "${LICA_SLURM_MEM_MB:-}" ]; then
    MEM_MB="$LICA_SLURM_MEM_MB"
else
    MEM_MB="$(slurmd -C 2>/dev/null | sed -n 's/.*RealMemory=\([0-9]*\).*/\1/p')"
    [ -n "$MEM_MB" ] || MEM_MB="$(free -m | awk '/^Mem:/{print $2}')"
fi
DEF_MEM_PER_CPU="${LICA_SLURM_DEF_MEM_PER_CPU:-1024}"

# ------------------------------------------------------------------- configs
if [ ! -s "$STATE/etc/db.pass" ]; then
    (umask 077; head -c 18 /dev/urandom | base64 | tr -dc 'A-Za-z0-9' > "$STATE/etc/db.pass")
fi
DB_PASS="$(cat "$STATE/etc/db.pass")"
subst=(CLUSTER="$CLUSTER" PARTITION="$PARTITION" NODE="$NODE" STATE="$STATE"
       CTLD_PORT="$CTLD_PORT" SLURMD_PORT="$SLURMD_PORT" DBD_PORT="$DBD_PORT"
       DB_PORT="$DB_PORT" DB_PASS="$DB_PASS" MUNGE_SOCKET="$MUNGE_SOCKET"
       CPUS="$CPUS" MEM_MB="$MEM_MB" DEF_MEM_PER_CPU="$DEF_MEM_PER_CPU")
render "$SLURM_SRC_DIR/slurm.conf.in" "$CONF" "${subst[@]}"
chmod 644 "$CONF"
(umask 077; render "$SLURM_SRC_DIR/slurmdbd.conf.in" "$STATE/etc/slurmdbd.conf" "${subst[@]}")
chmod 600 "$STATE/etc/slurmdbd.conf"
cat > "$STATE/env.sh" <<ENV
# source this to use the lica test cluster from a shell
export SLURM_CONF=$CONF
ENV

# Let plain 'sinfo'/'sbatch' (and submitit) find the cluster without SLURM_CONF,
# unless the machine has a slurm.conf of its own.
ETC_CONF=/etc/slurm/slurm.conf
if [ "${LICA_SLURM_LINK_ETC:-1}" = 1 ]; then
    if [ ! -e "$ETC_CONF" ] || [ -L "$ETC_CONF" ]; then
        mkdir -p /etc/slurm && ln -sfn "$CONF" "$ETC_CONF"
    else
        log "note: $ETC_CONF is a real file; use 'export SLURM_CONF=$CONF' (or source $STATE/env.sh)"
    fi
fi

# -------------------------------------------------------------------- munged
# munged runs as the munge user and insists that its key, log, PID and seed
# files belong to that user; its socket directory must be reachable (o+x) by
# every client (slurm daemons, sbatch, job users).
make_munge_dir
if [ ! -s "$MUNGE_DIR/munge.key" ]; then
    mungekey --create --keyfile="$MUNGE_DIR/munge.key" >/dev/null
fi
chown munge:munge "$MUNGE_DIR/munge.key"
chmod 400 "$MUNGE_DIR/munge.key"
rm -f "$MUNGE_SOCKET" "$MUNGE_SOCKET.lock" "$MUNGE_DIR/munged.pid"
runuser -u munge -- munged \
    --socket="$MUNGE_SOCKET" --key-file="$MUNGE_DIR/munge.key" \
    --pid-file="$MUNGE_DIR/munged.pid" --log-file="$MUNGE_DIR/munged.log" \
    --seed-file="$MUNGE_DIR/munged.seed" </dev/null >>"$LOGS/munged.out" 2>&1 \
    || die "munged failed to start; see $LOGS/munged.out and $MUNGE_DIR/munged.log"
wait_for 10 "munged pid file" "$MUNGE_DIR/munged.log" test -s "$MUNGE_DIR/munged.pid"
cp "$MUNGE_DIR/munged.pid" "$PIDS/munged.pid"
wait_for 10 "munged socket" "$MUNGE_DIR/munged.log" \
    bash -c "munge -n --socket='$MUNGE_SOCKET' | unmunge --socket='$MUNGE_SOCKET'"
stage "munged up"

# ------------------------------------------------------------------- mariadb
# Own data directory, own socket and port: independent of any system mariadb.
# slurmdbd logs an error unless innodb_buffer_pool_size >= 1G; the pool is
# allocated lazily, so a test cluster's mariadb stays at ~125 MB resident.
if [ ! -d "$STATE/mysql/mysql" ]; then
    mariadb-install-db --no-defaults --user=root --datadir="$STATE/mysql" \
        --auth-root-authentication-method=socket --skip-test-db \
        >"$LOGS/mariadb-install.log" 2>&1 \
        || die "mariadb-install-db failed; see $LOGS/mariadb-install.log"
fi
rm -f "$DB_SOCKET"
setsid mariadbd --no-defaults --user=root --datadir="$STATE/mysql" \
    --socket="$DB_SOCKET" --port="$DB_PORT" --bind-address=127.0.0.1 \
    --skip-name-resolve --pid-file="$PIDS/mariadbd.pid" \
    --log-error="$LOGS/mariadb.log" \
    --innodb-buffer-pool-size=1G --innodb-lock-wait-timeout=900 \
    </dev/null >>"$LOGS/mariadb.log" 2>&1 &
mysql_() { mariadb --no-defaults --socket="$DB_SOCKET" -u root "$@"; }
wait_for 30 "mariadb" "$LOGS/mariadb.log" mysql_ -e 'SELECT 1'
stage "mariadb up"
mysql_ <<SQL
CREATE USER IF NOT EXISTS 'slurm'@'127.0.0.1' IDENTIFIED BY '$DB_PASS';
ALTER USER 'slurm'@'127.0.0.1' IDENTIFIED BY '$DB_PASS';
GRANT ALL ON slurm_acct_db.* TO 'slurm'@'127.0.0.1';
FLUSH PRIVILEGES;
SQL

# ------------------------------------------------------------------ slurmdbd
slurmdbd </dev/null >>"$LOGS/slurmdbd.log" 2>&1 \
    || die "slurmdbd failed to start; see $LOGS/slurmdbd.log"
wait_for 30 "slurmdbd" "$LOGS/slurmdbd.log" sacctmgr -n list cluster
stage "slurmdbd up"
if [ -z "$(sacctmgr -n -P list cluster "$CLUSTER" format=cluster 2>/dev/null)" ]; then
    sacctmgr -i add cluster "$CLUSTER" >/dev/null \
        || die "sacctmgr add cluster $CLUSTER failed; see $LOGS/slurmdbd.log"
fi

# ------------------------------------------------------- slurmctld, slurmd
slurmctld -f "$CONF" </dev/null >>"$LOGS/slurmctld.log" 2>&1 \
    || die "slurmctld failed to start; see $LOGS/slurmctld.log"
wait_for 30 "slurmctld" "$LOGS/slurmctld.log" scontrol ping
stage "slurmctld up"
slurmd -f "$CONF" -N "$NODE" </dev/null >>"$LOGS/slurmd.log" 2>&1 \
    || die "slurmd failed to start; see $LOGS/slurmd.log"
node_idle() { sinfo -h -N -n "$NODE" -o %t | grep -qx idle; }
WAIT_DIAG='echo "slurm: node state:"; sinfo -N -l; sinfo -R' \
    wait_for "$UP_TIMEOUT" "node $NODE to be idle (sinfo)" "$LOGS/slurmd.log" node_idle
wait_for 30 "sacct" "$LOGS/slurmdbd.log" sacct -n -X -S now-1minutes
stage "slurmd up, node $NODE idle"

# End-to-end probe: a trivial batch job must run and reach the accounting
# database (this also waits out slurmctld's first scheduling cycle, ~3 s after
# it starts, which a job submitted earlier would wait for anyway).
if [ "${LICA_SLURM_PROBE:-1}" = 1 ]; then
    probe="$(sbatch --parsable -J lica-up-probe -p "$PARTITION" -o /dev/null \
        -e "$LOGS/probe.err" --wrap true 2>>"$LOGS/probe.err")" \
        || die "could not submit the probe job; see $LOGS/probe.err and $LOGS/slurmctld.log"
    probe="${probe%%;*}"
    # (not sbatch --wait: it polls every 2 s and more)
    probe_done() { sacct -n -X -P -j "$probe" -o State | grep -qx COMPLETED; }
    WAIT_DIAG='scontrol show job "$probe"' \
        wait_for 60 "probe job $probe to complete (sacct)" "$LOGS/slurmd.log" probe_done
    stage "probe job $probe ran and is in sacct"
fi

for d in "${DAEMONS[@]}"; do
    pid_of "$d" >/dev/null || die "$d is not running after start; see $LOGS/"
done
log "up in $(elapsed) s: cluster $CLUSTER, partition $PARTITION, node $NODE ($CPUS CPUs, $MEM_MB MB)"
log "state dir $STATE; export SLURM_CONF=$CONF"
