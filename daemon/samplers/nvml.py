"""NVML (nvidia-ml-py): per-GPU power, energy counter, utilisation, memory, temperature, clocks,
processes. The ``nvml`` module is injected (the real ``pynvml`` by default) so that a fake with
the same functions stands in where there is no GPU.

Energy: NVML's cumulative counter (mJ, Volta and newer) when supported, else the sample carries
only power and the merge integrates it. Counters a device does not support (MIG instances,
older GPUs) are recorded as missing, once, not as errors.
"""

from __future__ import annotations

import contextlib
from typing import Any

from .base import SamplerUnavailable


class NvmlSampler:
    """One reading per GPU of the node."""

    name = "nvml"

    def __init__(self, nvml: Any = None) -> None:
        self._nvml = nvml
        self._handles: list[Any] = []
        self._energy0: dict[int, int] = {}
        self._names: dict[int, str] = {}
        self.unsupported: set[tuple[int, str]] = set()

    def open(self) -> None:
        if self._nvml is None:
            try:
                import pynvml
            except ImportError:
                raise SamplerUnavailable(
                    self.name, "nvidia-ml-py is not installed (pip install 'yprov-hpc[gpu]')"
                ) from None
            self._nvml = pynvml
        nv = self._nvml
        try:
            nv.nvmlInit()
            count = nv.nvmlDeviceGetCount()
        except Exception as exc:  # NVMLError_LibraryNotFound, _DriverNotLoaded, ...
            raise SamplerUnavailable(self.name, f"NVML is not usable here: {exc}") from None
        if count == 0:
            raise SamplerUnavailable(self.name, "NVML found no GPU")
        self._handles = [nv.nvmlDeviceGetHandleByIndex(i) for i in range(count)]
        self._names = {}
        for i, handle in enumerate(self._handles):
            name = self._try(i, "name", nv.nvmlDeviceGetName, handle)
            if name is not None:
                self._names[i] = name.decode() if isinstance(name, bytes) else str(name)
            energy = self._try(i, "energy", nv.nvmlDeviceGetTotalEnergyConsumption, handle)
            if energy is not None:
                self._energy0[i] = int(energy)

    def _try(self, index: int, what: str, fn: Any, *args: Any) -> Any:
        if (index, what) in self.unsupported:
            return None
        try:
            return fn(*args)
        except self._nvml.NVMLError:
            self.unsupported.add((index, what))
            return None

    def sample(self) -> dict[str, Any]:
        nv = self._nvml
        gpus: dict[str, Any] = {}
        for i, h in enumerate(self._handles):
            gpu: dict[str, Any] = {"name": self._names[i]} if i in self._names else {}
            power_mw = self._try(i, "power", nv.nvmlDeviceGetPowerUsage, h)
            if power_mw is not None:
                gpu["power_w"] = power_mw / 1000.0
            if i in self._energy0:
                energy = self._try(i, "energy", nv.nvmlDeviceGetTotalEnergyConsumption, h)
                if energy is not None:
                    gpu["energy_j"] = (int(energy) - self._energy0[i]) / 1000.0
            util = self._try(i, "utilization", nv.nvmlDeviceGetUtilizationRates, h)
            if util is not None:
                gpu["util_percent"] = float(util.gpu)
                gpu["mem_util_percent"] = float(util.memory)
            mem = self._try(i, "memory", nv.nvmlDeviceGetMemoryInfo, h)
            if mem is not None:
                gpu["mem_used_bytes"] = int(mem.used)
                gpu["mem_total_bytes"] = int(mem.total)
            temp = self._try(i, "temperature", nv.nvmlDeviceGetTemperature, h, nv.NVML_TEMPERATURE_GPU)
            if temp is not None:
                gpu["temperature_c"] = float(temp)
            sm = self._try(i, "clock", nv.nvmlDeviceGetClockInfo, h, nv.NVML_CLOCK_SM)
            if sm is not None:
                gpu["sm_clock_mhz"] = float(sm)
            procs = self._try(i, "processes", nv.nvmlDeviceGetComputeRunningProcesses, h)
            if procs is not None:
                gpu["pids"] = sorted(int(p.pid) for p in procs)
            gpus[str(i)] = gpu
        return {"gpus": gpus}

    def close(self) -> None:
        if self._nvml is not None and self._handles:
            with contextlib.suppress(Exception):  # shutting down: nothing left to report to
                self._nvml.nvmlShutdown()
        self._handles = []
