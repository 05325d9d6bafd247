"""The machine's CPU and GPU models, as its kernel and driver name them (no NVML, no CUDA)."""

from __future__ import annotations

import platform
from pathlib import Path

__all__ = ["cpu_model", "nvidia_gpu_models"]


def cpu_model() -> str:
    """The CPU model from /proc/cpuinfo (``platform.processor()`` where there is none)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


def nvidia_gpu_models() -> list[str]:
    """The models of the NVIDIA GPUs the driver lists, in its order (empty without the driver)."""
    models = []
    for path in sorted(Path("/proc/driver/nvidia/gpus").glob("*/information")):
        try:
            for line in path.read_text().splitlines():
                if line.startswith("Model:"):
                    models.append(line.split(":", 1)[1].strip())
        except OSError:
            continue
    return models
