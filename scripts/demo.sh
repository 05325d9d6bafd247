#!/usr/bin/env bash
# Set up yprov-hpc in ./.venv and run the demo: the yProv4ML paper's PyTorch example
# (examples/pytorch_mnist.py, on a generated MNIST-like data set) recorded on the embedded
# default (a local sidecar started by start_run). Prints where the provenance went.
#   ./scripts/demo.sh            one process
#   ./scripts/demo.sh -n 4       four ranks with torchrun and DDP (examples/ddp_train.py)
set -euo pipefail
cd "$(dirname "$0")/.."
ranks=1
if [ "${1:-}" = "-n" ]; then ranks="${2:?-n needs a number}"; shift 2; fi
python3 -m venv .venv >/dev/null 2>&1 || python3 -m venv .venv
# shellcheck disable=SC1091
. .venv/bin/activate
python -m pip install -q --upgrade pip >/dev/null
bash scripts/install_torch.sh
python -m pip install -q ".[torch]"
if [ "$ranks" -gt 1 ]; then
  torchrun --nproc-per-node "$ranks" examples/ddp_train.py "$@"
  run_dir=$(ls -td prov/ddp_mnist_* | head -n 1)
else
  python examples/pytorch_mnist.py "$@"
  run_dir=$(ls -td prov/experiment_name_* | head -n 1)
fi
echo
yprov validate "$run_dir"/prov_*.json
echo "graphs (DOT, and SVG when Graphviz is installed): $run_dir/graph/"
