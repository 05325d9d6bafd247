#!/bin/bash
# The training step for torchrun-style launchers, inside yprov-job.sbatch: one torchrun per node
# (submit with --ntasks-per-node=1), rendezvous on the first node. For example:
#
#   YPROV_NPROC_PER_NODE=4 sbatch -N 2 --ntasks-per-node=1 scripts/slurm/yprov-job.sbatch \
#       scripts/slurm/torchrun-step.sh examples/ddp_train.py --epochs 2
#
# Ranks come from torchrun (RANK, LOCAL_RANK, WORLD_SIZE, LOCAL_WORLD_SIZE); the run id and run
# directory from the batch script (YPROV_RUN_ID, YPROV_RUN_DIR); the node from SLURMD_NODENAME.
set -euo pipefail
first=$(scontrol show hostnames "$SLURM_JOB_NODELIST" | head -n 1)
addr=$(scontrol show node "$first" -o | sed -n 's/.*NodeAddr=\([^ ]*\).*/\1/p')
exec torchrun \
  --nnodes "$SLURM_JOB_NUM_NODES" --node-rank "$SLURM_NODEID" \
  --nproc-per-node "${YPROV_NPROC_PER_NODE:-1}" \
  --master-addr "${addr:-$first}" --master-port "${YPROV_MASTER_PORT:-$((30000 + SLURM_JOB_ID % 20000))}" \
  "$@"
