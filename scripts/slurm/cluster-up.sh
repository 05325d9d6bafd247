#!/usr/bin/env bash
# Bring up a local Slurm cluster of N emulated nodes on this one machine, for tests and for
# trying the batch scripts. Installs Debian's slurm-wlm and munge when missing (needs root),
# starts munged, slurmctld and one slurmd per emulated node (node1..nodeN, each on its own
# port, with distinct SLURMD_NODENAME), and waits until the nodes are idle.
#
#   scripts/slurm/cluster-up.sh [N=2]          then:  export SLURM_CONF=<printed path>
#   scripts/slurm/cluster-down.sh
#
# Emulation: Slurm 22.05's several-slurmd-per-host mode (NodeHostname=localhost, Port per node,
# SlurmdParameters=config_overrides), ProctrackType=proctrack/linuxproc, TaskPlugin=task/none,
# no accounting. The emulated nodes share this host's hostname, /tmp and file system; yprov-hpc
# tells them apart by SLURMD_NODENAME. State lives in $YPROV_SLURM_DIR (default /tmp/yprov-slurm).
#
# Two such clusters can run side by side with their own YPROV_SLURM_DIR, YPROV_SLURMCTLD_PORT,
# YPROV_SLURMD_PORT (node i listens on this + i, default 17000) and YPROV_SLURM_FIRST_JOB_ID
# (the batch script derives tcp ports from the job id, so give the clusters distinct ranges).
set -euo pipefail
N=${1:-2}
STATE=${YPROV_SLURM_DIR:-/tmp/yprov-slurm}
CPUS=${YPROV_SLURM_CPUS_PER_NODE:-4}
SLURMD_PORT=${YPROV_SLURMD_PORT:-17000}

if ! command -v slurmctld >/dev/null 2>&1 || ! command -v munged >/dev/null 2>&1; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq || true
  apt-get install -y -qq slurm-wlm munge >/dev/null
fi

"$(dirname "$0")/cluster-down.sh" >/dev/null 2>&1 || true
mkdir -p "$STATE/ctld" "$STATE/spool" "$STATE/log"

# munge: one key, the daemon as the munge user
if [ ! -s /etc/munge/munge.key ]; then
  mkdir -p /etc/munge
  dd if=/dev/urandom bs=1 count=1024 of=/etc/munge/munge.key status=none
fi
chown munge:munge /etc/munge/munge.key && chmod 400 /etc/munge/munge.key
mkdir -p /run/munge /var/lib/munge /var/log/munge
chown munge:munge /run/munge /var/lib/munge /var/log/munge
if ! pgrep -x munged >/dev/null; then
  runuser -u munge -- /usr/sbin/munged
fi

CONF="$STATE/slurm.conf"
{
  echo "ClusterName=yprov"
  echo "SlurmctldHost=localhost"
  echo "SlurmctldPort=${YPROV_SLURMCTLD_PORT:-16817}"
  echo "SlurmUser=root"
  echo "AuthType=auth/munge"
  echo "ProctrackType=proctrack/linuxproc"
  echo "TaskPlugin=task/none"
  echo "SlurmdParameters=config_overrides"
  echo "SchedulerType=sched/backfill"
  echo "SelectType=select/cons_tres"
  echo "SelectTypeParameters=CR_Core"
  echo "MpiDefault=none"
  echo "ReturnToService=2"
  echo "AccountingStorageType=accounting_storage/none"
  echo "JobAcctGatherType=jobacct_gather/none"
  echo "JobCompType=jobcomp/none"
  echo "StateSaveLocation=$STATE/ctld"
  echo "SlurmdSpoolDir=$STATE/spool/%n"
  echo "SlurmctldPidFile=$STATE/slurmctld.pid"
  echo "SlurmdPidFile=$STATE/slurmd-%n.pid"
  echo "SlurmctldLogFile=$STATE/log/slurmctld.log"
  echo "SlurmdLogFile=$STATE/log/slurmd-%n.log"
  echo "KillWait=10"
  echo "MinJobAge=60"
  if [ -n "${YPROV_SLURM_FIRST_JOB_ID:-}" ]; then echo "FirstJobId=$YPROV_SLURM_FIRST_JOB_ID"; fi
  for i in $(seq 1 "$N"); do
    echo "NodeName=node$i NodeHostname=localhost NodeAddr=127.0.0.1 Port=$((SLURMD_PORT + i)) CPUs=$CPUS RealMemory=2000 State=UNKNOWN"
  done
  echo "PartitionName=debug Nodes=node[1-$N] Default=YES MaxTime=INFINITE State=UP OverSubscribe=YES"
} > "$CONF"
export SLURM_CONF="$CONF"

# -c: start clean. A test cluster's saved jobs and node states are a killed earlier run's
# (a node left draining by a job step that was killed would never come up idle)
slurmctld -c -f "$CONF"
for i in $(seq 1 "$N"); do
  mkdir -p "$STATE/spool/node$i"
  slurmd -c -f "$CONF" -N "node$i"
done

for _ in $(seq 1 100); do
  idle=$(sinfo -h -N -o "%N %T" 2>/dev/null | grep -c idle || true)
  [ "$idle" -ge "$N" ] && break
  sleep 0.2
done
sinfo -N -o "%N %T %c" >&2
[ "$(sinfo -h -N -o '%T' | grep -c idle)" -ge "$N" ] || { echo "slurm nodes did not come up; see $STATE/log" >&2; exit 1; }
echo "$CONF"
