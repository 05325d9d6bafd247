"""Merge-side telemetry: a node's samples -> its energy timeline; a rank's marks -> system and
carbon metrics at their steps; per-rank and per-node energy over the run's window.

A figure that was not measured is left out and its ``energy_status`` says why ("not measured:
..."), never written as 0. Over the run's window, a node's ranks plus its "other" equal the
node's total, whenever each rank started and ended: "other" is the node's energy minus the
ranks' shares, each over the rank's own window.
"""

from __future__ import annotations

import platform
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from yprov_hpc.core.hardware import cpu_model
from yprov_hpc.fold.carbon import CarbonIntensity, cpu_tdp_w
from yprov_hpc.fold.energy import NodeEnergy, build_node_energy, interpolate
from yprov_hpc.fold.gaps import sample_interval_ns
from yprov_hpc.wire.records import Mark

J_PER_KWH = 3.6e6
Sample = tuple[int, str, dict[str, Any]]
Window = tuple[int, int]


def emissions_kg(energy_j: float, carbon: CarbonIntensity) -> float:
    """kgCO2eq of an energy at the run's carbon intensity: the one emissions formula."""
    return energy_j / J_PER_KWH * carbon.g_per_kwh / 1000


@dataclass
class NodeTelemetry:
    """One node: its energy timeline, series file and totals over the run's window."""

    energy: NodeEnergy
    series_path: Path | None = None
    series_sha256: str = ""
    samples: int = 0
    tdp_source: str = ""
    cpu_model: str = ""
    totals: dict[str, Any] = field(default_factory=dict)  # empty when not measured
    status: str = "not measured: no samples"
    gaps: list[dict[str, Any]] = field(default_factory=list)


def _cpu_model_of(samples: list[Sample], node: str) -> tuple[str, str]:
    """(the CPU model, where it came from): the node's own system samples, else this machine's
    when the merge runs on that node, else none."""
    for _, source, values in reversed(samples):
        model = values.get("cpu_model") if source == "system" else None
        if isinstance(model, str) and model:
            return model[:200], "the node's samples"
    if node == platform.node():
        return cpu_model(), "the merging machine (the same node)"
    return "", "unknown (the node's samples name no CPU model)"


def node_telemetry(node: str, samples: list[Sample], tdp: tuple[float, str] | None = None) -> NodeTelemetry:
    """The energy timeline of one node (totals come later, with the run's window).

    ``tdp`` overrides the TDP lookup from the node's CPU model (tests, or a bad setting)."""
    model, model_source = _cpu_model_of(samples, node)
    tdp_w, tdp_source = tdp if tdp is not None else cpu_tdp_w(model)
    nt = NodeTelemetry(build_node_energy(node, samples, {}, tdp_w), samples=len(samples), cpu_model=model)
    if nt.energy.cpu_method.startswith("tdp"):
        nt.tdp_source = f"{tdp_source}; CPU model from {model_source}"
    return nt


def _at(e: NodeEnergy, series: list[float] | None, t: int) -> float:
    return interpolate(e.times, series, t) if series else 0.0


def covered_s(e: NodeEnergy, window: Window) -> float:
    """Seconds of ``window`` between the node's first and last system sample."""
    if len(e.times) < 2:
        return 0.0
    return max(0, min(window[1], e.times[-1]) - max(window[0], e.times[0])) / 1e9


def _status(e: NodeEnergy, window: Window) -> str:
    if not e.times:
        return "not measured: no samples from this node"
    if len(e.times) < 2:
        return "not measured: one sample only (no interval to measure)"
    covered, length = covered_s(e, window), max(0, window[1] - window[0]) / 1e9
    if covered <= 0:
        return "not measured: no samples in the run's window"
    if length - covered > 2 * sample_interval_ns(e.times, e.system) / 1e9:  # beyond a sampler's reach
        return f"partially measured: samples cover {covered:.1f} s of the {length:.1f} s window"
    return "measured"


def rank_energy(
    rank: int, window: Window, node: NodeTelemetry | None, carbon: CarbonIntensity
) -> dict[str, Any]:
    """A rank's energy over its own window: CPU+DRAM share, GPU, total, emissions, methods."""
    if node is None:
        return {"energy_status": "not measured: no samples from the rank's node"}
    e = node.energy
    status = _status(e, window)
    if status.startswith("not measured"):
        return {"energy_status": status, "node": e.node}
    cpu = _at(e, e.rank_cpu_j.get(rank), window[1]) - _at(e, e.rank_cpu_j.get(rank), window[0])
    gpu = _at(e, e.rank_gpu_j.get(rank), window[1]) - _at(e, e.rank_gpu_j.get(rank), window[0])
    total = max(0.0, cpu + gpu)
    gpus = [g for g, users in e.gpu_users.items() if rank in users]
    return {
        "energy_j": total,
        "energy_kwh": total / J_PER_KWH,
        "energy_status": status,
        "cpu_dram_energy_j": cpu,
        "gpu_energy_j": gpu,
        "emissions_kg": emissions_kg(total, carbon),
        "carbon_intensity_g_per_kwh": carbon.g_per_kwh,
        "carbon_region": carbon.region,
        "carbon_source": carbon.source,
        "cpu_method": e.cpu_method + " split by CPU time",
        "gpus": gpus or None,
        "gpu_methods": {g: e.gpu_methods[g] for g in gpus} or None,
        "node": e.node,
    }


def node_totals(
    node: NodeTelemetry, window: Window, rank_windows: dict[int, Window], carbon: CarbonIntensity
) -> None:
    """Fill ``node.totals`` and ``node.status`` over the run's window; the ranks' shares are
    each over the rank's own window, and "other" is what they leave of the node's total."""
    e = node.energy
    node.status = _status(e, window)
    node.totals = {}
    if node.status.startswith("not measured"):
        return
    t0, t1 = window
    cpu = _at(e, e.cpu_j, t1) - _at(e, e.cpu_j, t0)
    gpu = sum(_at(e, g, t1) - _at(e, g, t0) for g in e.gpu_j.values())
    total = cpu + gpu
    ranks = 0.0
    for rank, w in rank_windows.items():
        ranks += rank_energy(rank, w, node, carbon).get("energy_j", 0.0)
    node.totals = {
        "energy_j": total,
        "energy_kwh": total / J_PER_KWH,
        "cpu_dram_energy_j": cpu,
        "gpu_energy_j": gpu,
        "other_energy_j": total - ranks,
        "ranks_energy_j": ranks,
        "emissions_kg": emissions_kg(total, carbon),
        "cpu_method": e.cpu_method,
        "gpu_methods": e.gpu_methods or None,
        "gpus": len(e.gpu_j) or None,
        "duration_s": covered_s(e, window),
    }


def node_attributes(node: NodeTelemetry | None, series_path: str | None) -> dict[str, Any]:
    """A node's attributes in the collection (without the ``yprov:`` prefix)."""
    if node is None:
        return {"energy_status": "not measured: no samples from this node"}
    attrs: dict[str, Any] = dict(node.totals)
    attrs["energy_status"] = node.status
    attrs["samples"] = node.samples
    attrs["cpu_model"] = node.cpu_model or None
    attrs["cpu_tdp_source"] = node.tdp_source or None
    attrs["telemetry_gaps"] = node.gaps or None
    if series_path is not None:
        attrs["series_path"] = series_path
        attrs["series_sha256"] = node.series_sha256
    return attrs


def _system_values(e: NodeEnergy, rank: int, rank_gpus: list[str], ts: int) -> dict[str, Any]:
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
        if all(isinstance(u, (int, float)) for u in util):
            values["system/gpu_util_percent"] = sum(util) / len(util)
        if all(isinstance(m, (int, float)) for m in mem):
            values["system/gpu_mem_used_bytes"] = sum(mem)
    return values


def mark_metrics(
    rank: int, marks: list[Mark], start_ns: int, node: NodeTelemetry | None, carbon: CarbonIntensity
) -> list[tuple[str, str | None, int | None, float, int]]:
    """(name, context, step, value, ts_ns) metrics for a rank's marks, from its node's samples.
    A carbon mark before the node's first sample gets no values: nothing is invented."""
    out: list[tuple[str, str | None, int | None, float, int]] = []
    if node is None or not node.energy.times:
        return out
    e = node.energy
    base_rank = e.rank_total_at(rank, start_ns)
    base_node = e.node_total_at(start_ns)
    rank_gpus = [g for g, users in e.gpu_users.items() if rank in users]
    append, first_sample, window = out.append, e.times[0], 1_000_000_000  # power: the second before
    for mark in marks:
        ts, ctx, step = mark.ts_ns, mark.context, mark.step
        if mark.what == "system":
            for name, value in _system_values(e, rank, rank_gpus, ts).items():
                if type(value) is float or type(value) is int:  # not None, not a bool
                    append((name, ctx, step, float(value), ts))
            continue
        if ts < first_sample:
            continue
        now = e.rank_total_at(rank, ts)
        energy = max(0.0, now - base_rank)
        power = max(0.0, now - e.rank_total_at(rank, ts - window)) / (window / 1e9)
        append(("carbon/energy_j", ctx, step, energy, ts))
        append(("carbon/energy_kwh", ctx, step, energy / J_PER_KWH, ts))
        append(("carbon/emissions_kg", ctx, step, float(emissions_kg(energy, carbon)), ts))
        append(("carbon/power_w", ctx, step, power, ts))
        append(("carbon/node_energy_j", ctx, step, max(0.0, e.node_total_at(ts) - base_node), ts))
    return out
