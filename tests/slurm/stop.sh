#!/usr/bin/env bash
# From ../shared/slurm/ (tested there; see its README for the executor plugin's pitfalls).
# Stop the daemons that start.sh started, by the PIDs in its pidfiles only.
# Usage: stop.sh [slurm-only]    (slurm-only: keep munged/mariadbd/slurmdbd)
# PURGE=1 also deletes the run dir (state, logs, database).
set -uo pipefail
RUN_DIR=${SLURM_RUN_DIR:-/tmp/local-slurm}
log() { echo "[local-slurm $(date +%T)] $*"; }

# a zombie (PID 1 here may reap late) counts as dead
alive() { [[ -e /proc/$1 && $(ps -o stat= -p "$1" 2>/dev/null) != Z* ]]; }
stop_pidfile() { # stop_pidfile PIDFILE EXE
  local pidfile=$1 exe=$2 pid i
  [[ -s $pidfile ]] || return 0
  pid=$(cat "$pidfile")
  if [[ $pid =~ ^[0-9]+$ && $(readlink "/proc/$pid/exe" 2>/dev/null) == "$(readlink -f "$exe")" ]]; then
    kill -TERM "$pid"
    for i in $(seq 1 150); do alive "$pid" || break; sleep 0.1; done
    if alive "$pid"; then log "$exe ($pid) ignored TERM, sending KILL"; kill -KILL "$pid"; fi
    log "stopped $exe (pid $pid)"
  fi
  rm -f "$pidfile"
}

if [[ -s $RUN_DIR/slurmctld.pid ]] && command -v scancel >/dev/null; then
  timeout 10 scancel --quiet --user "$(id -un)" 2>/dev/null || true   # jobs of this private cluster
fi
stop_pidfile "$RUN_DIR/slurmd.pid" /usr/sbin/slurmd
stop_pidfile "$RUN_DIR/slurmctld.pid" /usr/sbin/slurmctld
[[ ${1:-} == slurm-only ]] && exit 0
stop_pidfile "$RUN_DIR/slurmdbd.pid" /usr/sbin/slurmdbd
stop_pidfile "$RUN_DIR/mysqld/mariadbd.pid" /usr/sbin/mariadbd
stop_pidfile "$RUN_DIR/munged.pid" /usr/sbin/munged   # only exists if we started munged
if [[ ${PURGE:-0} == 1 ]]; then rm -rf "$RUN_DIR"; log "removed $RUN_DIR"; fi
exit 0
