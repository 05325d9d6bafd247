"""A fake NVML module (there is no GPU here) with the functions of nvidia-ml-py that the NVML
sampler calls, so the sampler runs unchanged against it (YPROV_NVML_MODULE=tests.fakes.fake_nvml).

GPU 0: 250 W, a total-energy counter (mJ) growing with time, running the processes in
$FAKE_NVML_PIDS. GPU 1 (like a MIG instance or an old GPU): 100 W, no energy counter, no processes.
"""

from __future__ import annotations

import os
import time
from types import SimpleNamespace
from typing import Any

NVML_TEMPERATURE_GPU = 0
NVML_CLOCK_SM = 1
POWER_W = {0: 250.0, 1: 100.0}
_t0 = time.monotonic()


class NVMLError(Exception):
    pass


class NVMLError_NotSupported(NVMLError):
    pass


def nvmlInit() -> None:
    pass


def nvmlShutdown() -> None:
    pass


def nvmlDeviceGetCount() -> int:
    return 2


def nvmlDeviceGetHandleByIndex(i: int) -> int:
    return i


def nvmlDeviceGetName(h: int) -> str:
    return "Fake GPU 80GB"


def nvmlDeviceGetPowerUsage(h: int) -> int:
    return int(POWER_W[h] * 1000)


def nvmlDeviceGetTotalEnergyConsumption(h: int) -> int:
    if h == 1:
        raise NVMLError_NotSupported("not supported")
    return int(POWER_W[h] * (time.monotonic() - _t0) * 1000) + 5_000_000


def nvmlDeviceGetUtilizationRates(h: int) -> Any:
    return SimpleNamespace(gpu=90 if h == 0 else 0, memory=40)


def nvmlDeviceGetMemoryInfo(h: int) -> Any:
    return SimpleNamespace(used=8 << 30, total=80 << 30)


def nvmlDeviceGetTemperature(h: int, sensor: int) -> int:
    return 60


def nvmlDeviceGetClockInfo(h: int, clock: int) -> int:
    return 1410


def nvmlDeviceGetComputeRunningProcesses(h: int) -> list[Any]:
    if h != 0:
        return []
    pids = [int(p) for p in os.environ.get("FAKE_NVML_PIDS", "").split(",") if p]
    return [SimpleNamespace(pid=p, usedGpuMemory=1 << 30) for p in pids]
