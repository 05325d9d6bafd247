"""Merge-side telemetry: a node's samples -> its series file and energy timeline; a rank's
marks -> system and carbon metrics at their steps; per-rank and per-node energy totals."""

from __future__ import annotations

import platform
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from yprov_hpc.core.hashing import sha256_file
from yprov_hpc.fold.carbon import CarbonIntensity, cpu_tdp_w
from yprov_hpc.fold.energy import NodeEnergy, build_node_energy

J_PER_KWH = 3.6e6


@dataclass
class NodeTelemetry:
    """One node: its energy timeline, series file and totals."""

    energy: NodeEnergy
    series_path: Path | None = None
    series_sha256: str = ""
    samples: int = 0
    tdp_source: str = ""
    totals: dict[str, Any] = field(default_factory=dict)


def _flatten(ts: int, source: str, values: dict[str, Any], rows: dict[str, list[Any]]) -> None:
    def add(device: str, metric: str, value: Any) -> None:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return
        rows["ts_ns"].append(ts)
        rows["source"].append(source)
        rows["device"].append(device)
        rows["metric"].append(metric)
        rows["value"].append(float(value))

    for key, value in values.items():
        if isinstance(value, dict):  # ranks / domains / gpus
            for device, inner in value.items():
                if isinstance(inner, dict):
                    for metric, v in inner.items():
                        add(f"{key[:-1] if key.endswith('s') else key}:{device}", metric, v)
        else:
            add("node", key, value)


def write_node_series(samples: list[tuple[int, str, dict[str, Any]]], path: Path) -> str:
    """All samples of a node in long form (ts_ns, source, device, metric, value), Parquet/zstd."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows: dict[str, list[Any]] = {"ts_ns": [], "source": [], "device": [], "metric": [], "value": []}
    for ts, source, values in sorted(samples, key=lambda s: s[0]):
        _flatten(ts, source, values, rows)
    table = pa.table(
        {
            "ts_ns": pa.array(rows["ts_ns"], pa.int64()),
            "source": pa.array(rows["source"], pa.string()).dictionary_encode(),
            "device": pa.array(rows["device"], pa.string()).dictionary_encode(),
            "metric": pa.array(rows["metric"], pa.string()).dictionary_encode(),
            "value": pa.array(rows["value"], pa.float64()),
        }
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    pq.write_table(table, tmp, compression="zstd")
    tmp.replace(path)
    return sha256_file(path)


def node_telemetry(
    node: str, samples: list[tuple[int, str, dict[str, Any]]], series_path: Path, carbon: CarbonIntensity
) -> NodeTelemetry:
    """Series file, energy timeline and totals of one node."""
    tdp, tdp_source = cpu_tdp_w(platform.processor() or _cpu_model())
    nt = NodeTelemetry(build_node_energy(node, samples, {}, tdp), samples=len(samples))
    nt.tdp_source = tdp_source if nt.energy.cpu_method.startswith("tdp") else ""
    if samples:
        nt.series_path = series_path
        nt.series_sha256 = write_node_series(samples, series_path)
    e = nt.energy
    if e.times:
        cpu = e.cpu_j[-1]
        gpu = sum(g[-1] for g in e.gpu_j.values())
        total = cpu + gpu
        nt.totals = {
            "energy_j": total,
            "energy_kwh": total / J_PER_KWH,
            "cpu_dram_energy_j": cpu,
            "gpu_energy_j": gpu,
            "other_energy_j": e.other_j[-1],
            "ranks_energy_j": sum(e.rank_cpu_j[r][-1] + e.rank_gpu_j[r][-1] for r in e.rank_cpu_j),
            "emissions_kg": total / J_PER_KWH * carbon.g_per_kwh / 1000,
            "cpu_method": e.cpu_method,
            "gpu_methods": e.gpu_methods or None,
            "gpus": len(e.gpu_j) or None,
            "duration_s": (e.times[-1] - e.times[0]) / 1e9,
        }
    return nt


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return ""


def mark_metrics(
    rank: int,
    marks: list[tuple[str, str | None, int | None, int]],
    start_ns: int,
    node: NodeTelemetry | None,
    carbon: CarbonIntensity,
) -> list[tuple[str, str | None, int | None, float, int]]:
    """(name, context, step, value, ts_ns) metrics for a rank's marks, from its node's samples."""
    out: list[tuple[str, str | None, int | None, float, int]] = []
    if node is None or not node.energy.times:
        return out
    e = node.energy
    base_rank = e.rank_total_at(rank, start_ns)
    base_node = e.node_total_at(start_ns)
    rank_gpus = [g for g, users in e.gpu_users.items() if rank in users]
    for what, ctx, step, ts in marks:
        if what == "system":
            sample = e.system_at(ts) or {}
            mine = sample.get("ranks", {}).get(str(rank), {})
            values = {
                "system/cpu_percent": mine.get("cpu_percent"),
                "system/rss_bytes": mine.get("rss_bytes"),
                "system/node_cpu_percent": sample.get("cpu_percent"),
                "system/node_mem_used_bytes": sample.get("mem_used_bytes"),
            }
            gpus = e.gpus_at(ts)
            if rank_gpus and gpus:
                util = [gpus.get(g, {}).get("util_percent") for g in rank_gpus]
                mem = [gpus.get(g, {}).get("mem_used_bytes") for g in rank_gpus]
                if all(u is not None for u in util):
                    values["system/gpu_util_percent"] = sum(util) / len(util)  # type: ignore[arg-type]
                if all(m is not None for m in mem):
                    values["system/gpu_mem_used_bytes"] = sum(mem)  # type: ignore[arg-type]
        else:
            energy = max(0.0, e.rank_total_at(rank, ts) - base_rank)
            window = 1_000_000_000  # power over the second before the mark
            before = e.rank_total_at(rank, ts - window)
            values = {
                "carbon/energy_j": energy,
                "carbon/energy_kwh": energy / J_PER_KWH,
                "carbon/emissions_kg": energy / J_PER_KWH * carbon.g_per_kwh / 1000,
                "carbon/power_w": max(0.0, e.rank_total_at(rank, ts) - before) / (window / 1e9),
                "carbon/node_energy_j": max(0.0, e.node_total_at(ts) - base_node),
            }
        for name, value in values.items():
            if value is not None:
                out.append((name, ctx, step, float(value), ts))
    return out


def rank_energy(
    rank: int, start_ns: int, end_ns: int, node: NodeTelemetry | None, carbon: CarbonIntensity
) -> dict[str, Any]:
    """A rank's energy over its run: CPU+DRAM share, GPU, total, emissions, methods."""
    if node is None or not node.energy.times:
        return {}
    e = node.energy

    def at(series: list[float] | None, t: int) -> float:
        from yprov_hpc.fold.energy import interpolate

        return interpolate(e.times, series, t) if series else 0.0

    cpu = at(e.rank_cpu_j.get(rank), end_ns) - at(e.rank_cpu_j.get(rank), start_ns)
    gpu = at(e.rank_gpu_j.get(rank), end_ns) - at(e.rank_gpu_j.get(rank), start_ns)
    total = max(0.0, cpu + gpu)
    gpus = [g for g, users in e.gpu_users.items() if rank in users]
    return {
        "energy_j": total,
        "energy_kwh": total / J_PER_KWH,
        "cpu_dram_energy_j": cpu,
        "gpu_energy_j": gpu,
        "emissions_kg": total / J_PER_KWH * carbon.g_per_kwh / 1000,
        "carbon_intensity_g_per_kwh": carbon.g_per_kwh,
        "carbon_region": carbon.region,
        "carbon_source": carbon.source,
        "cpu_method": e.cpu_method + " split by CPU time",
        "gpus": gpus or None,
        "gpu_methods": {g: e.gpu_methods[g] for g in gpus} or None,
        "node": e.node,
    }
