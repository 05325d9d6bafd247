"""System and carbon metrics at marks, computed a column at a time, against a reference that
reads the node's samples one mark at a time (the obvious way, kept here as the specification)."""

from __future__ import annotations

import random
from collections import defaultdict
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from yprov_hpc.fold.attribution import (
    J_PER_KWH,
    NodeTelemetry,
    emissions_kg,
    mark_metrics,
    node_telemetry,
)
from yprov_hpc.fold.carbon import CarbonIntensity
from yprov_hpc.fold.energy import NodeEnergy, interpolate, interpolate_many
from yprov_hpc.fold.series import METRIC, MarkColumns
from yprov_hpc.wire.records import Kind, Mark

S = 1_000_000_000
CARBON = CarbonIntensity(412.5, "test", "test")


def _reference_system(e: NodeEnergy, rank: int, rank_gpus: list[str], ts: int) -> dict[str, Any]:
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


def reference(rank: int, marks: list[Mark], start_ns: int, node: NodeTelemetry) -> list[tuple[Any, ...]]:
    """(name, context, step, value, ts_ns) at each mark, one mark at a time."""
    out: list[tuple[Any, ...]] = []
    e = node.energy
    if not e.times:
        return out
    base_rank, base_node = e.rank_total_at(rank, start_ns), e.node_total_at(start_ns)
    rank_gpus = [g for g, users in e.gpu_users.items() if rank in users]
    for m in marks:
        ts, ctx, step = m.ts_ns, m.context, m.step
        if m.what == "system":
            for name, value in _reference_system(e, rank, rank_gpus, ts).items():
                if type(value) is float or type(value) is int:
                    out.append((name, ctx, step, float(value), ts))
            continue
        if ts < e.times[0]:
            continue
        now = e.rank_total_at(rank, ts)
        energy = max(0.0, now - base_rank)
        out.append(("carbon/energy_j", ctx, step, energy, ts))
        out.append(("carbon/energy_kwh", ctx, step, energy / J_PER_KWH, ts))
        out.append(("carbon/emissions_kg", ctx, step, float(emissions_kg(energy, CARBON)), ts))
        out.append(("carbon/power_w", ctx, step, max(0.0, now - e.rank_total_at(rank, ts - S)), ts))
        out.append(("carbon/node_energy_j", ctx, step, max(0.0, e.node_total_at(ts) - base_node), ts))
    return out


def _node(seed: int, n: int, gpus: bool) -> NodeTelemetry:
    """A node's samples with holes: missing and boolean values, repeated times, GPUs sampled on
    their own clock."""
    rng = random.Random(seed)
    samples: list[tuple[int, str, dict[str, Any]]] = []
    cpu = [0.0, 0.0]
    for k in range(n):
        cpu = [c + rng.uniform(0, 1) for c in cpu]
        ranks: dict[str, dict[str, Any]] = {
            str(r): {"pid": 100 + r, "cpu_s": cpu[r], "local_rank": r, "cpu_percent": rng.uniform(0, 100)}
            for r in (0, 1)
        }
        ranks["0"]["rss_bytes"] = rng.choice([10**9 + k, None, True, 2.5e8])
        values = {"cpu_busy_s": sum(cpu) * 1.5, "cpu_percent": rng.uniform(0, 100), "ranks": ranks}
        if rng.random() < 0.8:
            values["mem_used_bytes"] = 10**10 + k
        system_times = [t for t, source, _ in samples if source == "system"]
        ts = system_times[-1] if system_times and rng.random() < 0.2 else k * S + rng.randrange(S // 4)
        samples.append((ts, "system", values))  # now and then two samples of one time
        if gpus:
            gpu = {"power_w": rng.uniform(50, 300), "pids": [100]}
            if rng.random() < 0.7:
                gpu["util_percent"] = rng.uniform(0, 100)
            gpu["mem_used_bytes"] = rng.choice([4 * 10**9, None, 2**33])
            samples.append((k * S + S // 3, "nvml", {"gpus": {"0": gpu}}))
    return node_telemetry("n0", samples, tdp=(95.0, "test"))


@settings(max_examples=60, deadline=None)
@given(
    seed=st.integers(0, 10**6),
    n_samples=st.integers(1, 12),
    gpus=st.booleans(),
    marks=st.lists(
        st.tuples(
            st.sampled_from(["system", "carbon", "other"]),
            st.integers(-2 * S, 14 * S),
            st.sampled_from([None, "training", "validation"]),
            st.one_of(st.none(), st.integers(-5, 10**6)),
        ),
        max_size=60,
    ),
    rank=st.sampled_from([0, 1, 7]),
    start_s=st.integers(-1, 5),
    in_order=st.booleans(),
)
def test_columns_equal_the_reference_series_by_series(
    seed: int,
    n_samples: int,
    gpus: bool,
    marks: list[tuple[str, int, str | None, int | None]],
    rank: int,
    start_s: int,
    in_order: bool,
) -> None:
    """Every derived series holds the reference's values, contexts, steps and times, in the marks'
    order, bit for bit, whether the marks come in time order (as a rank sends them) or not; marks
    before the first sample, missing and boolean values are left out alike. (Only the
    interleaving of different series differs: the columns hold series whole.)"""
    node = _node(seed, n_samples, gpus)
    if in_order:
        marks = sorted(marks, key=lambda m: m[1])
    recs = [Mark(int(Kind.MARK), max(0, ts), what, ctx, step) for what, ts, ctx, step in marks]
    columns = MarkColumns()
    for m in recs:
        columns.add(m.what, m.ts_ns, m.context, m.step)
    got = mark_metrics(rank, columns, start_s * S, node, CARBON)
    assert set(got.kind) <= {METRIC} and len(got.kind) == len(got.ts_ns)
    series: dict[str, list[tuple[Any, ...]]] = defaultdict(list)
    for name, ctx, step, value, ts in zip(got.name, got.context, got.step, got.value, got.ts_ns, strict=True):
        series[name].append((ctx, step, value, ts))
    expected: dict[str, list[tuple[Any, ...]]] = defaultdict(list)
    for name, ctx, step, value, ts in reference(rank, recs, start_s * S, node):
        expected[name].append((ctx, step, value, ts))
    assert series == expected


@settings(max_examples=200, deadline=None)
@given(
    times=st.lists(st.integers(0, 50), min_size=1, max_size=8).map(sorted),
    values=st.lists(st.floats(-1e6, 1e6), min_size=8, max_size=8),
    ts=st.lists(st.integers(-5, 55), max_size=40),
    in_order=st.booleans(),
)
def test_interpolating_many_times_is_interpolating_each(
    times: list[int], values: list[float], ts: list[int], in_order: bool
) -> None:
    """Bit for bit the one-time interpolation, repeated sample times and times outside the
    samples included, in time order or not."""
    values = values[: len(times)]
    ts = sorted(ts) if in_order else ts
    assert interpolate_many(times, values, ts) == [interpolate(times, values, t) for t in ts]


def test_no_node_or_no_samples_derive_nothing() -> None:
    """Without the rank's node or its samples nothing is invented."""
    marks = MarkColumns()
    marks.add("carbon", S, None, 1)
    assert len(mark_metrics(0, marks, 0, None, CARBON)) == 0
    empty = node_telemetry("n0", [], tdp=(95.0, "test"))
    assert len(mark_metrics(0, marks, 0, empty, CARBON)) == 0
