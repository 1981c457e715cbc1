#!/usr/bin/env bash
# Stop the cluster started by slurm/up.sh: cancels its jobs, then stops exactly
# the daemons whose PIDs up.sh recorded in $LICA_SLURM_DIR/pids (never by name),
# waits for them to exit and removes the PID files. Keeps the state (database,
# job-id counter, munge key) so the next up.sh is fast -- except a munge dir under
# /run (below); rm -rf the state dir to start from scratch.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

STOP_TIMEOUT="${LICA_SLURM_STOP_TIMEOUT:-30}"

# Cancel the jobs first so no job steps outlive slurmd.
if pid_of slurmctld >/dev/null; then
    jobs_="$(squeue -h -o %i 2>/dev/null || true)"
    if [ -n "$jobs_" ]; then
        log "cancelling jobs: $(echo $jobs_)"
        scancel $jobs_ 2>/dev/null || true
        for _ in $(seq 1 50); do
            [ -z "$(squeue -h -t R,CG,PD -o %i 2>/dev/null || true)" ] && break
            sleep 0.2
        done
    fi
fi

stopped=()
# Stop in reverse start order: slurmd, slurmctld, slurmdbd, mariadbd, munged.
for (( i=${#DAEMONS[@]}-1; i>=0; i-- )); do
    d="${DAEMONS[$i]}"
    f="$PIDS/$d.pid"
    if pid="$(pid_of "$d")"; then
        kill -TERM "$pid" 2>/dev/null || true
        deadline=$(( $(date +%s) + STOP_TIMEOUT ))
        while alive "$pid" "$d"; do
            if [ "$(date +%s)" -ge "$deadline" ]; then
                log "$d (pid $pid) did not stop in ${STOP_TIMEOUT}s: SIGKILL"
                kill -KILL "$pid" 2>/dev/null || true
                sleep 0.5
                break
            fi
            sleep 0.1
        done
        stopped+=("$d:$pid")
    fi
    rm -f "$f"
done
rm -f "$MUNGE_DIR/munged.pid"
# The /run fallback for munge (common.sh) lives outside the state dir, so nothing would ever
# remove it: it goes with the daemons (up.sh makes a new key there next time).
if [ "$MUNGE_DIR_UNDER_RUN" = true ]; then
    rm -rf "$MUNGE_DIR"
fi

# Remove the /etc/slurm/slurm.conf link that up.sh made to this state dir.
if [ -L /etc/slurm/slurm.conf ] && [ "$(readlink /etc/slurm/slurm.conf)" = "$CONF" ]; then
    rm -f /etc/slurm/slurm.conf
fi

if [ ${#stopped[@]} -gt 0 ]; then
    log "stopped ${stopped[*]}"
else
    log "nothing was running (state dir $STATE)"
fi
