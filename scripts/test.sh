#!/usr/bin/env bash
# Set up everything the tests need on a fresh Debian/Ubuntu machine, then run them.
# Installs: Graphviz (Debian package, for SVG), Debian's chromium-headless-shell (the real
# browser of the page tests, driven by Playwright's Python API; no browser download), torch
# (CPU build when one is at hand; see scripts/install_torch.sh), the project with its dev extra
# in ./.venv (pytest, hypothesis, mpi4py and the MPICH wheel that provides mpiexec, Lightning,
# pandas, plotly, MLflow, rocrate, Transformers), then runs ruff, mypy and pytest. The Slurm
# tests start a local cluster with scripts/slurm/cluster-up.sh (it installs slurm-wlm and
# munge). Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."

need_apt=()
command -v dot >/dev/null 2>&1 || need_apt+=(graphviz)
command -v git >/dev/null 2>&1 || need_apt+=(git)
[ -x /usr/lib/chromium/chromium-headless-shell ] || command -v chromium-headless-shell >/dev/null 2>&1 \
  || need_apt+=(chromium-headless-shell)
if [ ${#need_apt[@]} -gt 0 ]; then
  sudo_cmd=""
  [ "$(id -u)" -eq 0 ] || sudo_cmd="sudo"
  export DEBIAN_FRONTEND=noninteractive
  $sudo_cmd apt-get update -qq || true
  $sudo_cmd apt-get install -y -qq "${need_apt[@]}"
fi

python3 -m venv .venv >/dev/null 2>&1 || python3 -m venv .venv
# shellcheck disable=SC1091
. .venv/bin/activate
python -m pip install -q --upgrade pip >/dev/null
bash scripts/install_torch.sh
python -m pip install -q -e ".[dev]"

echo "== ruff"; ruff check .
echo "== mypy"; mypy
echo "== pytest"
python -m pytest -q -p no:cacheprovider "$@"
