"""The merge's node stage: each node's checked samples -> its energy timeline, then (once the
run's window is known from the ranks) its totals, telemetry gaps and series file."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from yprov_hpc.core.errors import ConfigError
from yprov_hpc.core.layout import RunLayout
from yprov_hpc.fold.attribution import NodeTelemetry, node_telemetry, node_totals
from yprov_hpc.fold.carbon import WORLD_AVERAGE_G_PER_KWH, CarbonIntensity, carbon_intensity, cpu_tdp_w
from yprov_hpc.fold.energy import DEFAULT_CPU_TDP_W, check_sample
from yprov_hpc.fold.gaps import sample_interval_ns, telemetry_gaps
from yprov_hpc.fold.index import Frame, JournalIndex, index_journals, read_batch
from yprov_hpc.fold.markers import Markers, read_markers
from yprov_hpc.fold.writers import write_node_series
from yprov_hpc.wire.blocks import event_count, is_block
from yprov_hpc.wire.records import EventError, Kind, RunStart, Sample, UnknownKind, decode_event

__all__ = [
    "Settings",
    "finish_nodes",
    "first_starts",
    "job_end_ns",
    "load_nodes",
    "merge_settings",
    "telemetry",
    "write_node_files",
]

Window = tuple[int, int]


@dataclass
class Settings:
    """The merge's settings (carbon intensity, CPU TDP); a bad one falls back and says so."""

    carbon: CarbonIntensity
    tdp: tuple[float, str] | None
    problems: list[str]


def merge_settings() -> Settings:
    problems = []
    try:
        carbon = carbon_intensity()
    except ConfigError as exc:
        carbon = CarbonIntensity(
            WORLD_AVERAGE_G_PER_KWH, "world", "world average (a bad setting was ignored)"
        )
        problems.append(f"carbon intensity: {exc}; used the world average")
    tdp = None
    try:
        cpu_tdp_w("")
    except ConfigError as exc:
        tdp = (DEFAULT_CPU_TDP_W, "codecarbon's default TDP (a bad setting was ignored)")
        problems.append(f"CPU TDP: {exc}; used {DEFAULT_CPU_TDP_W:g} W")
    return Settings(carbon, tdp, problems)


def node_samples(
    frames: list[Frame], node: str, problems: list[str]
) -> list[tuple[int, str, dict[str, Any]]]:
    """A node's checked samples, each batch once; bad samples are counted and reported."""
    samples: list[tuple[int, str, dict[str, Any]]] = []
    seen: set[tuple[int, int]] = set()
    bad, first = 0, ""
    for fr in sorted(frames, key=lambda f: (f.stream, f.seq_start)):
        if (fr.stream, fr.seq_start) in seen:
            continue
        seen.add((fr.stream, fr.seq_start))
        for raw in read_batch(fr) or []:
            if is_block(raw):  # a node stream carries samples only (the sidecar refuses others)
                bad, first = bad + event_count([raw]), first or "a metric block in a node stream"
                continue
            try:
                rec = decode_event(raw)
            except UnknownKind as exc:
                bad, first = bad + 1, first or f"an event of unknown kind {exc.kind} in a node stream"
                continue
            except EventError as exc:
                bad, first = bad + 1, first or exc.reason
                continue
            if not isinstance(rec, Sample):
                bad, first = bad + 1, first or f"a {Kind(rec.kind).name} event in a node stream"
                continue
            reason = check_sample(rec.source, rec.values)
            if reason is not None:
                bad, first = bad + 1, first or reason
            else:
                samples.append((rec.ts_ns, rec.source, rec.values))
    if bad:
        problems.append(f"node {node}: {bad} bad samples skipped (first: {first})")
    return samples


def job_end_ns(markers: Markers, index: JournalIndex) -> int | None:
    """The job's end (the last rank's end_run) when every rank has a done marker, else None.

    Samples after it are not the job's (a sidecar samples on a little after); cutting there
    also makes a merge right after the job and a later one agree."""
    ends = [m.ended_ts_ns for m in markers.ranks.values() if not m.lost and m.ended_ts_ns is not None]
    if ends and len(ends) == len(markers.ranks) and set(index.ranks) <= set(markers.ranks):
        return max(ends)
    return None


def telemetry(
    index: JournalIndex, conf: Settings, problems: list[str], until: int | None
) -> dict[str, tuple[NodeTelemetry, list[Any]]]:
    """Each node's energy timeline and its checked samples (up to ``until``)."""
    nodes = {}
    for node, frames in sorted(index.nodes.items()):
        samples = node_samples(frames, node, problems)
        if until is not None:
            samples = [s for s in samples if s[0] <= until]
        nodes[node] = (node_telemetry(node, samples, conf.tdp), samples)
    return nodes


def finish_nodes(
    nodes: dict[str, tuple[NodeTelemetry, list[Any]]],
    window: Window | None,
    rank_windows: dict[str, dict[int, Window]],
    carbon: CarbonIntensity,
) -> None:
    """Totals over the run's window and telemetry gaps."""
    for node, (tele, _) in nodes.items():
        times = tele.energy.times
        span = window or ((times[0], times[-1]) if times else (0, 0))
        node_totals(tele, span, rank_windows.get(node, {}), carbon)
        tele.gaps = telemetry_gaps(node, times, span, sample_interval_ns(times, tele.energy.system))


def write_node_files(layout: RunLayout, nodes: dict[str, tuple[NodeTelemetry, list[Any]]]) -> None:
    """Each node's series file (its samples, whatever the ranks' windows): written while the
    workers fold the ranks."""
    for node, (tele, samples) in nodes.items():
        if samples:
            tele.series_path = layout.node_series_file(node)
            tele.series_sha256 = write_node_series(samples, tele.series_path)


def first_starts(index: JournalIndex) -> dict[int, int]:
    """Each rank's run start time from its RUN_START event (in a first batch of a stream)."""
    starts: dict[int, int] = {}
    for rank, frames in index.ranks.items():
        for fr in frames:
            if fr.seq_start != 0:
                continue
            for raw in read_batch(fr) or []:
                if isinstance(raw, list) and raw[:1] == [int(Kind.RUN_START)]:
                    try:
                        rec = decode_event(raw)
                    except EventError:
                        continue
                    if isinstance(rec, RunStart):
                        starts[rank] = min(starts.get(rank, rec.ts_ns), rec.ts_ns)
    return starts


def load_nodes(run_dir: Path) -> tuple[dict[str, NodeTelemetry], CarbonIntensity]:
    """Each node's telemetry (energy timeline, totals over the run's window), from the journals."""
    layout = RunLayout.open(run_dir)
    index = index_journals(layout.journal_dir)
    conf = merge_settings()
    all_markers = read_markers(layout.journal_dir)
    markers = all_markers.ranks
    nodes = telemetry(index, conf, [], job_end_ns(all_markers, index))
    starts = first_starts(index)
    windows = {
        r: (starts[r], m.ended_ts_ns) for r, m in markers.items() if r in starts and m.ended_ts_ns is not None
    }
    by_node: dict[str, dict[int, Window]] = {}
    for r, w in windows.items():
        by_node.setdefault(markers[r].node or index.node_of(r) or "", {})[r] = w
    window = (min(w[0] for w in windows.values()), max(w[1] for w in windows.values())) if windows else None
    finish_nodes(nodes, window, by_node, conf.carbon)
    return {n: t for n, (t, _) in nodes.items()}, conf.carbon
