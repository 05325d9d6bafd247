"""RAPL through /sys/class/powercap: package, core, uncore and DRAM energy counters.

Counters are cumulative microjoules that wrap at ``max_energy_range_uj``; the sampler unwraps
them (a reading below the previous one means one wrap) and reports joules since it opened.
Reading ``energy_uj`` needs root on most kernels since 2020 (CVE-2020-8694): the sampler then
says so once and stays off.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from .base import SamplerUnavailable

DEFAULT_ROOT = Path("/sys/class/powercap")


class RaplSampler:
    """Cumulative energy per RAPL domain, wrap-around handled."""

    name = "rapl"

    def __init__(self, root: Path = DEFAULT_ROOT, read: Callable[[Path], str] = Path.read_text) -> None:
        self.root = root
        self._read = read
        self._domains: dict[str, tuple[Path, int]] = {}  # name -> (energy file, max range)
        self._last: dict[str, int] = {}
        self._total_uj: dict[str, int] = {}

    def _domain_name(self, zone: Path) -> str:
        name = self._read(zone / "name").strip()  # package-0, core, uncore, dram, psys
        parent = zone.name.rsplit(":", 1)[0]
        if zone.name.count(":") >= 2:  # a subzone: qualify it by its package
            pkg = self._read(self.root / parent / "name").strip()
            return f"{pkg}/{name}"
        return name

    def open(self) -> None:
        if not self.root.is_dir():
            raise SamplerUnavailable(
                self.name, f"{self.root} does not exist (no RAPL on this machine or kernel)"
            )
        zones = sorted(p for p in self.root.glob("intel-rapl:*") if (p / "energy_uj").exists())
        if not zones:
            raise SamplerUnavailable(self.name, f"no intel-rapl zones with energy_uj under {self.root}")
        for zone in zones:
            energy = zone / "energy_uj"
            try:
                first = int(self._read(energy))
                max_range = int(self._read(zone / "max_energy_range_uj"))
                name = self._domain_name(zone)
            except PermissionError:
                raise SamplerUnavailable(
                    self.name,
                    f"{energy} is readable by root only; run the sidecar as root, or let it read "
                    "the counters (e.g. chmod o+r on the energy_uj files from a privileged service)",
                ) from None
            except (OSError, ValueError) as exc:
                raise SamplerUnavailable(self.name, f"cannot read {zone}: {exc}") from None
            self._domains[name] = (energy, max_range)
            self._last[name] = first
            self._total_uj[name] = 0

    def sample(self) -> dict[str, Any]:
        domains: dict[str, Any] = {}
        for name, (path, max_range) in self._domains.items():
            raw = int(self._read(path))
            delta = raw - self._last[name]
            if delta < 0:  # the counter wrapped
                delta += max_range + 1
            self._last[name] = raw
            self._total_uj[name] += delta
            domains[name] = {"energy_j": self._total_uj[name] / 1e6}
        return {"domains": domains}

    def close(self) -> None:
        self._domains.clear()
