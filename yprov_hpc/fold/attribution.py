"""Merge-side telemetry: a node's samples -> its energy timeline; a rank's marks -> system and
carbon metrics at their steps; per-rank and per-node energy over the run's window.

A figure that was not measured is left out and its ``energy_status`` says why ("not measured:
..."), never written as 0. Over the run's window, a node's ranks plus its "other" equal the
node's total, whenever each rank started and ended: "other" is the node's energy minus the
ranks' shares, each over the rank's own window.
"""

from __future__ import annotations

import platform
from collections.abc import Sequence
from dataclasses import dataclass, field
from itertools import compress, repeat
from operator import ge, is_not, itemgetter, not_
from pathlib import Path
from typing import Any

from yprov_hpc.core.hardware import cpu_model
from yprov_hpc.fold.carbon import CarbonIntensity, cpu_tdp_w
from yprov_hpc.fold.energy import NodeEnergy, build_node_energy, interpolate
from yprov_hpc.fold.gaps import sample_interval_ns
from yprov_hpc.fold.series import MarkColumns, SeriesColumns

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


SYSTEM_NAMES = (
    "system/cpu_percent",
    "system/rss_bytes",
    "system/node_cpu_percent",
    "system/node_mem_used_bytes",
    "system/gpu_util_percent",
    "system/gpu_mem_used_bytes",
)


def _system_values(
    e: NodeEnergy, rank: int, rank_gpus: list[str], k: int, g: int
) -> tuple[float | None, ...]:
    """The SYSTEM_NAMES values of system sample ``k`` and GPU sample ``g`` (-1: none) for a
    rank, None where a value is missing or not a number."""
    sample = e.system[k]
    mine = sample.get("ranks", {}).get(str(rank), {})
    values: list[Any] = [
        mine.get("cpu_percent"),
        mine.get("rss_bytes"),
        sample.get("cpu_percent"),
        sample.get("mem_used_bytes"),
        None,
        None,
    ]
    gpus = e.gpu_samples[g][1] if g >= 0 else {}
    if rank_gpus and gpus:
        util = [gpus.get(gpu, {}).get("util_percent") for gpu in rank_gpus]
        mem = [gpus.get(gpu, {}).get("mem_used_bytes") for gpu in rank_gpus]
        if all(isinstance(u, (int, float)) for u in util):
            values[4] = sum(util) / len(util)
        if all(isinstance(m, (int, float)) for m in mem):
            values[5] = sum(mem)
    return tuple(float(v) if type(v) is float or type(v) is int else None for v in values)  # no bool


_Marks = tuple[list[int], list[str | None], list[int | None]]  # the marks' times, contexts, steps


def _extend(
    out: SeriesColumns, name: str, marks: _Marks, values: Sequence[float | None], keep: list[bool] | None
) -> None:
    """Append one derived metric at each mark (only where ``keep`` says, when given)."""
    ts, ctxs, steps = marks
    if keep is not None:
        ts, ctxs, steps = list(compress(ts, keep)), list(compress(ctxs, keep)), list(compress(steps, keep))
        values = list(compress(values, keep))
    out.kind.frombytes(bytes(len(ts)))  # METRIC codes
    out.name.extend(repeat(name, len(ts)))
    out.context.extend(ctxs)
    out.step.extend(steps)
    out.value.fromlist(values)  # type: ignore[arg-type]  # no None is left where keep is None
    out.ts_ns.fromlist(ts)


def _system_metrics(out: SeriesColumns, e: NodeEnergy, rank: int, cols: _Marks) -> None:
    """The SYSTEM_NAMES metrics at each system mark: each distinct (system sample, GPU sample)
    pair is read once, and each name is one column over the marks."""
    rank_gpus = [g for g, users in e.gpu_users.items() if rank in users]
    pairs = list(zip(e.system_indices(cols[0]), e.gpu_indices(cols[0]), strict=True))
    seen = {pair: _system_values(e, rank, rank_gpus, *pair) for pair in set(pairs)}
    rows = [seen[pair] for pair in pairs]
    for i, name in enumerate(SYSTEM_NAMES):
        values = list(map(itemgetter(i), rows))
        if values.count(None) == len(values):
            continue
        _extend(out, name, cols, values, list(map(is_not, values, repeat(None))) if None in values else None)


def _carbon_metrics(
    out: SeriesColumns, e: NodeEnergy, rank: int, cols: _Marks, start_ns: int, carbon: CarbonIntensity
) -> None:
    """Energy, emissions and power at each carbon mark at or after the node's first sample
    (power: over the second before the mark)."""
    if min(cols[0]) < e.times[0]:
        cols = _pick(cols, list(map(ge, cols[0], repeat(e.times[0]))))
    ts = cols[0]
    if not ts:
        return
    base_rank, base_node, window = e.rank_total_at(rank, start_ns), e.node_total_at(start_ns), 1_000_000_000
    now = e.rank_totals_at(rank, ts)
    before = e.rank_totals_at(rank, [t - window for t in ts])
    energy = [_positive(v - base_rank) for v in now]
    _extend(out, "carbon/energy_j", cols, energy, None)
    _extend(out, "carbon/energy_kwh", cols, [v / J_PER_KWH for v in energy], None)
    _extend(out, "carbon/emissions_kg", cols, [float(emissions_kg(v, carbon)) for v in energy], None)
    power = [_positive(a - b) / (window / 1e9) for a, b in zip(now, before, strict=True)]
    _extend(out, "carbon/power_w", cols, power, None)
    node = [_positive(v - base_node) for v in e.node_totals_at(ts)]
    _extend(out, "carbon/node_energy_j", cols, node, None)


def _positive(x: float) -> float:
    """``max(0.0, x)``: NaN and -0.0 give 0.0 too."""
    return x if x > 0.0 else 0.0


def mark_metrics(
    rank: int, marks: MarkColumns, start_ns: int, node: NodeTelemetry | None, carbon: CarbonIntensity
) -> SeriesColumns:
    """The system and carbon metrics at a rank's marks, from its node's samples, as columns: a
    derived series is in its marks' order (system series first, then carbon). A carbon mark
    before the node's first sample gets no values: nothing is invented."""
    out = SeriesColumns()
    if node is None or not node.energy.times or not len(marks):
        return out
    cols = marks.ts_ns, marks.context, marks.step
    systems = marks.what.count("system")
    if systems == len(marks):
        _system_metrics(out, node.energy, rank, cols)
        return out
    if systems:
        is_system = list(map("system".__eq__, marks.what))
        _system_metrics(out, node.energy, rank, _pick(cols, is_system))
        cols = _pick(cols, list(map(not_, is_system)))
    _carbon_metrics(out, node.energy, rank, cols, start_ns, carbon)
    return out


def _pick(cols: _Marks, keep: list[bool]) -> _Marks:
    return list(compress(cols[0], keep)), list(compress(cols[1], keep)), list(compress(cols[2], keep))
