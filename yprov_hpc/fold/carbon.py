"""Carbon intensity (gCO2eq/kWh), offline: an explicit value, or codecarbon's energy-mix data
for a country (ISO 3166 alpha-3 code), else the world average codecarbon uses by default.

codecarbon's data files are read directly; codecarbon itself (and its many imports) is not
loaded. Configured with ``YPROV_CARBON_INTENSITY`` or ``YPROV_CARBON_REGION`` at merge time.
"""

from __future__ import annotations

import importlib.util
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from yprov_hpc.core.config import ENV_CARBON_INTENSITY, ENV_CARBON_REGION, ENV_CPU_TDP_W
from yprov_hpc.core.errors import ConfigError

WORLD_AVERAGE_G_PER_KWH = 475.0  # codecarbon's default when the location is unknown


@dataclass(frozen=True)
class CarbonIntensity:
    g_per_kwh: float
    region: str
    source: str


def _codecarbon_data() -> Path | None:
    spec = importlib.util.find_spec("codecarbon")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(next(iter(spec.submodule_search_locations))) / "data"
    return path if path.is_dir() else None


def carbon_intensity(environ: Mapping[str, str] | None = None) -> CarbonIntensity:
    """The intensity to use, and where it came from."""
    env = os.environ if environ is None else environ
    explicit = env.get(ENV_CARBON_INTENSITY, "").strip()
    if explicit:
        try:
            value = float(explicit)
        except ValueError:
            raise ConfigError(ENV_CARBON_INTENSITY, explicit, "expected gCO2eq/kWh as a number") from None
        return CarbonIntensity(value, env.get(ENV_CARBON_REGION, "") or "explicit", ENV_CARBON_INTENSITY)
    region = env.get(ENV_CARBON_REGION, "").strip().upper()
    data = _codecarbon_data()
    if region and data is not None:
        mix = json.loads((data / "private_infra" / "global_energy_mix.json").read_text())
        if region not in mix:
            raise ConfigError(ENV_CARBON_REGION, region, "not an ISO 3166 alpha-3 code in codecarbon's data")
        return CarbonIntensity(
            float(mix[region]["carbon_intensity"]),
            region,
            f"codecarbon global_energy_mix ({mix[region].get('year', '?')})",
        )
    if region:
        return CarbonIntensity(
            WORLD_AVERAGE_G_PER_KWH,
            region,
            "world average (codecarbon not installed: pip install 'yprov-hpc[energy]')",
        )
    return CarbonIntensity(WORLD_AVERAGE_G_PER_KWH, "world", "world average (set YPROV_CARBON_REGION)")


def cpu_tdp_w(cpu_model: str, environ: Mapping[str, str] | None = None) -> tuple[float, str]:
    """The CPU's TDP for the estimate used where RAPL cannot be read: explicit, codecarbon's
    table (longest model name contained in ``cpu_model``), or codecarbon's 85 W fallback."""
    env = os.environ if environ is None else environ
    if env.get(ENV_CPU_TDP_W, "").strip():
        return float(env[ENV_CPU_TDP_W]), ENV_CPU_TDP_W
    data = _codecarbon_data()
    if data is not None and cpu_model:
        best = ("", 0.0)
        for line in (data / "hardware" / "cpu_power.csv").read_text().splitlines()[1:]:
            name, _, tdp = line.rpartition(",")
            if name and name in cpu_model and len(name) > len(best[0]):
                best = (name, float(tdp))
        if best[0]:
            return best[1], f"codecarbon cpu_power.csv ({best[0]})"
    return 85.0, "codecarbon's default TDP (model not in its table)"
