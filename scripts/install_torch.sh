#!/usr/bin/env bash
# Install a CPU-friendly torch into the active environment unless one is there already.
# torch 2.13.0 is pinned because a CPU build of it is often pre-downloaded (pip's find-links,
# e.g. /opt/wheels); an unpinned `pip install torch` on Linux fetches a multi-GB CUDA build.
# yprov-hpc itself works with any torch >= 2.1.
set -euo pipefail
if python -c "import torch" >/dev/null 2>&1; then
  exit 0
fi
python -m pip install -q "torch==2.13.0" || python -m pip install -q "torch>=2.1"
