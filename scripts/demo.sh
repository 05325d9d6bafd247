#!/usr/bin/env bash
# Set up yprov-hpc in ./.venv and run the demo training run on the embedded default
# (a local sidecar started by start_run). Prints where the provenance went.
#   ./scripts/demo.sh            one process
#   ./scripts/demo.sh -n 4       four MPI ranks on this machine (installs the MPICH wheel)
set -euo pipefail
cd "$(dirname "$0")/.."
ranks=1
if [ "${1:-}" = "-n" ]; then ranks="${2:?-n needs a number}"; shift 2; fi
python3 -m venv .venv >/dev/null 2>&1 || python3 -m venv .venv
# shellcheck disable=SC1091
. .venv/bin/activate
python -m pip install -q --upgrade pip >/dev/null
if [ "$ranks" -gt 1 ]; then extras=".[mpi]"; else extras="."; fi
python -m pip install -q -e "$extras"
if [ "$ranks" -gt 1 ]; then
  mpiexec -n "$ranks" python examples/quickstart.py "$@"
else
  python examples/quickstart.py "$@"
fi
run_dir=$(ls -td prov/quickstart_* | head -n 1)
echo
yprov validate "$run_dir"/prov_*.json
echo "open $run_dir/graph/ for the provenance graphs (DOT, and SVG when Graphviz is installed)"
