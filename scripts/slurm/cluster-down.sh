#!/usr/bin/env bash
# Stop the local Slurm cluster started by cluster-up.sh (slurmctld and every emulated slurmd).
set -u
STATE=${YPROV_SLURM_DIR:-/tmp/yprov-slurm}
for pidfile in "$STATE"/slurmd-*.pid "$STATE"/slurmctld.pid; do
  [ -f "$pidfile" ] && kill "$(cat "$pidfile")" 2>/dev/null
done
sleep 0.5
pkill -f "slurmd -f $STATE/slurm.conf" 2>/dev/null
pkill -f "slurmctld -f $STATE/slurm.conf" 2>/dev/null
rm -f "$STATE"/*.pid
exit 0
