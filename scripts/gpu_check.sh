#!/usr/bin/env bash
# The GPU paths, on a machine with an NVIDIA GPU and torch with CUDA: the real NVML sampler, and
# CUDA training with the logger while the sidecar samples NVML (tests/gpu). Short by design
# (~1 minute). Needs nvidia-ml-py; where there is no network, carry its wheel and set
# PIP_FIND_LINKS to its folder. Run from the repository root:  bash scripts/gpu_check.sh
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m pip install -q --no-deps nvidia-ml-py 2>/dev/null || python3 -m pip install -q --no-deps --no-index nvidia-ml-py
python3 -m pip install -q --no-deps -e . 2>/dev/null || true
nvidia-smi --query-gpu=index,name,power.draw,memory.used --format=csv || true
PYTHONPATH=. python3 -m pytest -q -p no:cacheprovider -s tests/gpu
