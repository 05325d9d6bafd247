"""The merge: journals and spools -> per-rank PROV-JSON, series files and the collection.

Two passes keep memory bounded by one rank's data: an index pass reads every frame's header
(and checks its checksum), then each rank's batches are read back by offset, de-duplicated on
(rank, stream, seq) and folded. Re-running the merge gives the same result (it only reads the
journals); missing ranks and lost events are reported in the output, not raised.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from yprov_hpc.core.errors import DecodeError
from yprov_hpc.core.hashing import sha256_file
from yprov_hpc.core.layout import RunLayout
from yprov_hpc.fold.attribution import NodeTelemetry, mark_metrics, node_telemetry, rank_energy
from yprov_hpc.fold.carbon import CarbonIntensity, carbon_intensity
from yprov_hpc.prov.rankdoc import RankDelivery, RankFold, write_rank
from yprov_hpc.prov.vocab import DocumentBuilder, ncname, qname, run_id_of
from yprov_hpc.wire.codec import decode_body, decode_header
from yprov_hpc.wire.journal import ReadReport, read_frame_at, read_frames
from yprov_hpc.wire.records import NODE_RANK, Kind

log = logging.getLogger("yprov_hpc")


@dataclass(frozen=True)
class _Frame:
    path: Path
    offset: int
    stream: int
    seq_start: int
    n_events: int


@dataclass
class MergeResult:
    """What a merge wrote and what it found wrong."""

    run_dir: Path
    documents: list[Path] = field(default_factory=list)
    collection: Path | None = None
    combined: Path | None = None
    graphs: list[Path] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    ranks: dict[int, RankDelivery] = field(default_factory=dict)
    missing_ranks: list[int] = field(default_factory=list)
    nodes: dict[str, NodeTelemetry] = field(default_factory=dict)
    journals: list[ReadReport] = field(default_factory=list)
    malformed_frames: int = 0
    seconds: float = 0.0


def _index(layout: RunLayout, result: MergeResult) -> tuple[dict[int, list[_Frame]], dict[str, list[_Frame]]]:
    """(the ranks' frames by rank, the nodes' own sample frames by node)."""
    frames: dict[int, list[_Frame]] = defaultdict(list)
    node_frames: dict[str, list[_Frame]] = defaultdict(list)
    for path in sorted(layout.journal_dir.glob("*.journal")):
        report = ReadReport(path)
        for offset, header_bytes, _body in read_frames(path, report):
            try:
                h = decode_header(header_bytes)
            except DecodeError:
                result.malformed_frames += 1
                continue
            frame = _Frame(path, offset, h.stream, h.seq_start, h.n_events)
            if h.rank == NODE_RANK:
                node_frames[h.node].append(frame)
            else:
                frames[h.rank].append(frame)
        result.journals.append(report)
        if report.torn_bytes:
            result.problems.append(f"{path.name}: cut {report.torn_bytes} bytes at the end ({report.reason})")
    return frames, node_frames


def _node_samples(frames: list[_Frame], result: MergeResult) -> list[tuple[int, str, dict[str, Any]]]:
    samples: list[tuple[int, str, dict[str, Any]]] = []
    seen: set[tuple[int, int]] = set()
    for fr in frames:
        if (fr.stream, fr.seq_start) in seen:
            continue
        seen.add((fr.stream, fr.seq_start))
        header_bytes, body_bytes = read_frame_at(fr.path, fr.offset)
        try:
            events = decode_body(body_bytes, decode_header(header_bytes))
        except DecodeError:
            result.malformed_frames += 1
            continue
        samples.extend((ev[1], ev[2], ev[3]) for ev in events if ev[0] == Kind.SAMPLE and len(ev) >= 4)
    return samples


def _fold_rank(rank: int, frames: list[_Frame], delivery: RankDelivery, result: MergeResult) -> RankFold:
    fold = RankFold(rank)
    by_stream: dict[int, list[_Frame]] = defaultdict(list)
    for fr in frames:
        by_stream[fr.stream].append(fr)
    for stream, items in sorted(by_stream.items()):
        items.sort(key=lambda f: (f.seq_start, -f.n_events))
        expected = 0
        for fr in items:
            end = fr.seq_start + fr.n_events
            if end <= expected:
                delivery.duplicates += fr.n_events
                continue
            skip = max(0, expected - fr.seq_start)
            if fr.seq_start > expected:
                delivery.gaps.append((stream, expected, fr.seq_start - 1))
            header_bytes, body_bytes = read_frame_at(fr.path, fr.offset)
            try:
                events = decode_body(body_bytes, decode_header(header_bytes))
            except DecodeError:
                result.malformed_frames += 1
                delivery.gaps.append((stream, fr.seq_start, end - 1))
                expected = max(expected, end)
                continue
            delivery.duplicates += skip
            _fold_events(fold, events[skip:] if skip else events)
            delivery.events += fr.n_events - skip
            expected = end
        sent = delivery.done.get("delivery", {}).get("events")
        if delivery.done.get("stream") == stream and isinstance(sent, int) and sent > expected:
            delivery.missing_at_end += sent - expected
    return fold


def _nodes(
    layout: RunLayout,
    node_frames: dict[str, list[_Frame]],
    result: MergeResult,
    carbon: CarbonIntensity,
    done: dict[int, dict[str, Any]],
) -> dict[str, NodeTelemetry]:
    """Each node's telemetry up to the job's end (the last rank's end_run), when every rank
    recorded one: a sidecar goes on sampling a little after, and that is not the job's."""
    ends = [int(d["ended_ts_ns"]) for d in done.values() if isinstance(d.get("ended_ts_ns"), int)]
    until = max(ends) if ends and len(ends) == len(done) else None
    nodes = {}
    for node, items in sorted(node_frames.items()):
        samples = _node_samples(items, result)
        if until is not None:
            samples = [s for s in samples if s[0] <= until]
        nodes[node] = node_telemetry(node, samples, layout.node_series_file(node), carbon)
    return nodes


def load_nodes(run_dir: Path) -> tuple[dict[str, NodeTelemetry], CarbonIntensity]:
    """Each node's telemetry (energy timeline, totals), read from the run's journals."""
    layout = RunLayout.open(run_dir)
    result = MergeResult(layout.root)
    _, node_frames = _index(layout, result)
    carbon = carbon_intensity()
    return _nodes(layout, node_frames, result, carbon, _done_markers(layout)), carbon


def _experiment_of(frames: dict[int, list[_Frame]]) -> str | None:
    """The experiment name the ranks started with (a run directory's name need not say it)."""
    for rank in sorted(frames):
        for fr in sorted(frames[rank], key=lambda f: f.seq_start)[:1]:
            header_bytes, body_bytes = read_frame_at(fr.path, fr.offset)
            try:
                events = decode_body(body_bytes, decode_header(header_bytes))
            except DecodeError:
                continue
            for ev in events:
                if ev[0] == Kind.RUN_START and isinstance(ev[2], dict) and ev[2].get("experiment"):
                    return str(ev[2]["experiment"])
    return None


def _fold_events(fold: RankFold, events: list[list[Any]]) -> None:
    """Metric events (nearly all of them) go straight into the columns; the rest through fold.add."""
    cols = fold.columns
    kind, name, ctx, step = cols.kind.append, cols.name.append, cols.context.append, cols.step.append
    value, ts = cols.value.append, cols.ts_ns.append
    add = fold.add
    metric = int(Kind.METRIC)
    n = 0
    for ev in events:
        if ev[0] == metric and len(ev) == 6:
            kind("metric")
            name(ev[2])
            ctx(ev[4])
            step(ev[5])
            value(ev[3])
            ts(ev[1])
            n += 1
        else:
            add(ev)
    fold.events += n


def _done_markers(layout: RunLayout) -> dict[int, dict[str, Any]]:
    markers: dict[int, dict[str, Any]] = {}
    for path in layout.journal_dir.glob("rank*.done"):
        try:
            data = json.loads(path.read_text())
            markers[int(data["rank"])] = data
        except (OSError, ValueError, KeyError):
            continue
    return markers


@dataclass
class _RankJob:
    """Everything one rank's merge needs (picklable: it may run in a worker process)."""

    root: Path
    experiment: str
    rank: int
    frames: list[_Frame]
    done: dict[str, Any]
    node: NodeTelemetry | None
    carbon: CarbonIntensity


@dataclass
class _RankOutcome:
    rank: int
    document: Path
    delivery: RankDelivery
    fold: RankFold
    problems: list[str]
    malformed: int


def _merge_rank(job: _RankJob) -> _RankOutcome:
    """Fold one rank's batches, join its marks with its node's samples, write its files."""
    layout = RunLayout.open(job.root, job.experiment)
    scratch = MergeResult(layout.root)
    delivery = RankDelivery(done=job.done)
    fold = _fold_rank(job.rank, job.frames, delivery, scratch)
    start_ns = fold.start_ns or 0
    for name, ctx, step, value, ts in mark_metrics(job.rank, fold.marks, start_ns, job.node, job.carbon):
        fold.add_metric(name, ctx, step, value, ts)
    end_ns = fold.end_ns or int(delivery.done.get("ended_ts_ns") or fold.last_ns)
    energy = rank_energy(job.rank, start_ns, end_ns, job.node, job.carbon)
    document = write_rank(layout, fold, delivery, energy)
    problems = []
    if delivery.gaps or delivery.missing_at_end:
        lost = sum(b - a + 1 for _, a, b in delivery.gaps) + delivery.missing_at_end
        problems.append(f"rank {job.rank}: {lost} events missing (gaps {delivery.gaps[:5]})")
    if fold.unknown_kinds:
        problems.append(
            f"rank {job.rank}: events of kinds this yprov-hpc does not know were left out "
            f"(a newer version wrote them; merge with it): {fold.unknown_kinds}"
        )
    if not fold.status and not job.done:
        problems.append(f"rank {job.rank}: no end_run recorded (killed?); kept all events received")
    return _RankOutcome(job.rank, document, delivery, _slim(fold), problems, scratch.malformed_frames)


def _graph_one(args: tuple[Path, Path, bool]) -> tuple[list[Path], list[str]]:
    from yprov_hpc.prov.graph import write_graphs

    document, out_dir, svg = args
    return write_graphs([document], out_dir, svg=svg)


def merge_run(
    run_dir: Path, create_svg: bool | None = None, progress: bool = False, workers: int = 1
) -> MergeResult:
    """Merge a run directory's journals and spools into its PROV output; idempotent.

    ``workers`` > 1 merges ranks (and draws their graphs) in that many worker processes; memory
    stays bounded by one rank's data per worker."""
    began = time.monotonic()
    layout = RunLayout.open(run_dir)
    if not layout.journal_dir.is_dir():
        raise FileNotFoundError(f"{run_dir} has no journal/ directory: not a yprov run directory")
    result = MergeResult(layout.root)
    frames, node_frames = _index(layout, result)
    layout = RunLayout.open(layout.root, _experiment_of(frames) or layout.experiment)
    done = _done_markers(layout)
    carbon = carbon_intensity()
    result.nodes = _nodes(layout, node_frames, result, carbon, done)
    world_size = max([int(d.get("world_size", 1)) for d in done.values()] + [max(frames, default=-1) + 1, 1])
    node_of = _node_of_ranks(done, frames)
    jobs = [
        _RankJob(
            layout.root,
            layout.experiment,
            rank,
            frames[rank],
            done.get(rank, {}),
            result.nodes.get(node_of.get(rank, "")),
            carbon,
        )
        for rank in sorted(frames)
    ]
    folds: dict[int, RankFold] = {}
    bar = _progress(progress, len(jobs))
    pool = _pool(workers, len(jobs))
    try:
        outcomes = pool.map(_merge_rank, jobs) if pool is not None else map(_merge_rank, jobs)
        for outcome in outcomes:
            result.documents.append(outcome.document)
            result.ranks[outcome.rank] = outcome.delivery
            folds[outcome.rank] = outcome.fold
            result.problems.extend(outcome.problems)
            result.malformed_frames += outcome.malformed
            world_size = max(world_size, int(outcome.fold.start.get("world_size", 1) or 1))
            if bar is not None:
                bar.update(1)
        if bar is not None:
            bar.close()
        result.missing_ranks = [r for r in range(world_size) if r not in frames]
        if result.missing_ranks:
            result.problems.append(f"ranks with no events at all: {result.missing_ranks}")
        if result.malformed_frames:
            result.problems.append(f"{result.malformed_frames} malformed frames skipped")
        if folds:
            result.collection = _write_collection(layout, folds, result, world_size)
            if any(f.start.get("collect_all_processes") for f in folds.values()):
                result.combined = _write_combined(layout, result)
        want_svg = (
            create_svg
            if create_svg is not None
            else any(bool(f.end_flags.get("create_svg")) for f in folds.values())
        )
        paths = [*result.documents, *([result.collection] if result.collection else [])]
        tasks = [(path, layout.graph_dir, want_svg) for path in paths]
        for written, problems in pool.map(_graph_one, tasks) if pool is not None else map(_graph_one, tasks):
            result.graphs.extend(written)
            result.problems.extend(p for p in problems if p not in result.problems)
    finally:
        if pool is not None:
            pool.shutdown()
    result.seconds = time.monotonic() - began
    _write_report(layout, result, world_size)
    return result


def _pool(workers: int, tasks: int) -> Any:
    """A process pool (spawned, not forked: the caller may be a training process with threads)."""
    if workers <= 1 or tasks <= 1:
        return None
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    return ProcessPoolExecutor(
        max_workers=min(workers, tasks), mp_context=multiprocessing.get_context("spawn")
    )


def _node_of_ranks(done: dict[int, dict[str, Any]], frames: dict[int, list[_Frame]]) -> dict[int, str]:
    """Each rank's node: from its done marker, else from the header of its first batch."""
    nodes = {r: str(d["node"]) for r, d in done.items() if d.get("node")}
    for rank, items in frames.items():
        if rank not in nodes and items:
            header_bytes, _ = read_frame_at(items[0].path, items[0].offset)
            nodes[rank] = decode_header(header_bytes).node
    return nodes


def _slim(fold: RankFold) -> RankFold:
    """Keep what the collection needs; drop the series columns (bounded memory across ranks)."""
    slim = RankFold(
        fold.rank,
        start=fold.start,
        start_ns=fold.start_ns,
        end_ns=fold.end_ns,
        last_ns=fold.last_ns,
        status=fold.status,
        end_flags=fold.end_flags,
    )
    slim.environment = {k: fold.environment.get(k) for k in ("host", "user")}
    return slim


def _progress(enabled: bool, total: int) -> Any:
    if not enabled:
        return None
    from rich.progress import Progress

    class _Bar:
        def __init__(self) -> None:
            self._p = Progress(transient=True)
            self._p.start()
            self._task = self._p.add_task("merging ranks", total=total)

        def update(self, n: int) -> None:
            self._p.update(self._task, advance=n)

        def close(self) -> None:
            self._p.stop()

    return _Bar()


def _write_collection(
    layout: RunLayout, folds: dict[int, RankFold], result: MergeResult, world_size: int
) -> Path:
    any_fold = next(iter(folds.values()))
    info = any_fold.start
    run_id = str(info.get("run_id") or layout.root.name)
    b = DocumentBuilder(str(info.get("namespace") or "http://example.org/"), layout.experiment, run_id)
    starts = [f.start_ns for f in folds.values() if f.start_ns]
    ends = [f.end_ns or f.last_ns for f in folds.values() if f.end_ns or f.last_ns]
    nodes = sorted({str(f.start.get("node")) for f in folds.values() if f.start.get("node")})
    statuses = {
        r: (f.status or str(result.ranks[r].done.get("status") or "incomplete")) for r, f in folds.items()
    }
    job = b.activity(
        run_id_of("job"),
        min(starts) if starts else None,
        max(ends) if ends else None,
        {
            "prov:type": qname("yprov:Job"),
            "prov:label": f"{layout.experiment} run {run_id}",
            "yprov:run_id": run_id,
            "yprov:experiment": layout.experiment,
            "yprov:world_size": world_size,
            "yprov:nodes": nodes,
            "yprov:launcher": info.get("launcher"),
            "yprov:parent_run": info.get("parent_run"),
            "yprov:slurm_job_id": run_id[5:].split(".")[0] if run_id.startswith("slurm") else None,
            "yprov:slurm_step_ids": sorted(
                {
                    str(f.start["slurm_step_id"])
                    for f in folds.values()
                    if f.start.get("slurm_step_id") not in (None, "")
                }
            )
            or None,
        },
    )
    parent = str(info.get("parent_run") or "")
    if parent:  # the job nests in a workflow-level graph (yProv4WFs or another workflow system)
        b.informed(job, _parent_activity(b, parent))
    job_energy = 0.0
    for node in sorted(set(nodes) | set(result.nodes)):
        tele = result.nodes.get(node)
        attrs: dict[str, Any] = {"prov:type": qname("yprov:Node"), "prov:label": node}
        if tele is not None:
            attrs.update({f"yprov:{k}": v for k, v in tele.totals.items()})
            attrs["yprov:samples"] = tele.samples
            attrs["yprov:cpu_tdp_source"] = tele.tdp_source
            if tele.series_path is not None:
                attrs["yprov:series_path"] = tele.series_path.relative_to(layout.root).as_posix()
                attrs["yprov:series_sha256"] = tele.series_sha256
            job_energy += float(tele.totals.get("energy_j", 0.0))
        ent = b.entity(run_id_of(f"node.{node}"), attrs)
        b.generated(ent, job, max(ends) if ends else None)
    coll = b.entity(
        run_id_of("collection"),
        {
            "prov:type": qname("prov:Collection"),
            "prov:label": f"provenance of {layout.experiment} run {run_id}",
            "yprov:world_size": world_size,
            "yprov:ranks_found": len(folds),
            "yprov:ranks_missing": result.missing_ranks or None,
            "yprov:problems": result.problems or None,
            "yprov:energy_j": job_energy if result.nodes else None,
            "yprov:energy_kwh": job_energy / 3.6e6 if result.nodes else None,
        },
    )
    b.generated(coll, job, max(ends) if ends else None)
    for rank, path in zip(sorted(folds), result.documents, strict=True):
        fold = folds[rank]
        act = b.activity(
            run_id_of(f"rank{rank}"),
            fold.start_ns,
            fold.end_ns or fold.last_ns or None,
            {
                "prov:type": qname("yprov:TrainingRun"),
                "yprov:rank": rank,
                "yprov:node": fold.start.get("node"),
                "yprov:status": statuses[rank],
            },
        )
        b.informed(act, job)
        doc = b.entity(
            run_id_of(f"rank{rank}.document"),
            {
                "prov:type": qname("yprov:RankDocument"),
                "prov:label": path.name,
                "yprov:path": path.name,
                "yprov:sha256": sha256_file(path),
                "yprov:rank": rank,
            },
        )
        b.generated(doc, act, fold.end_ns or None)
        b.member(coll, doc)
    path = layout.collection_document
    tmp = path.with_suffix(".tmp")
    tmp.write_bytes(b.to_bytes())
    os.replace(tmp, path)
    return path


def _parent_activity(b: DocumentBuilder, parent: str) -> str:
    """The enclosing workflow run as an activity: its own URI when that splits into a namespace
    and an NCName (prefix ``parent``), else a local record that carries the URI."""
    cut = max(parent.rfind("/"), parent.rfind("#"), parent.rfind(":"))
    local = parent[cut + 1 :]
    if cut > 0 and local and ncname(local) == local and "://" in parent:
        b.doc["prefix"]["parent"] = parent[: cut + 1]
        ident = f"parent:{local}"
    else:
        ident = run_id_of("parent_run")
    b.activity(
        ident,
        None,
        None,
        {
            "prov:type": qname("yprov:WorkflowRun"),
            "prov:label": "enclosing workflow run",
            "yprov:uri": parent,
        },
    )
    return ident


def _write_combined(layout: RunLayout, result: MergeResult) -> Path:
    """``collect_all_processes``: the collection plus every rank document as a named bundle."""
    assert result.collection is not None
    combined = orjson.loads(result.collection.read_bytes())
    bundles: dict[str, Any] = {}
    for path in result.documents:
        doc = orjson.loads(path.read_bytes())
        doc.pop("prefix", None)
        bundles[ncname(path.stem)] = doc
    combined["bundle"] = bundles
    path = layout.combined_document
    path.write_bytes(orjson.dumps(combined, option=orjson.OPT_INDENT_2))
    return path


def _write_report(layout: RunLayout, result: MergeResult, world_size: int) -> None:
    report = {
        "run_dir": str(layout.root),
        "world_size": world_size,
        "seconds": round(result.seconds, 3),
        "documents": [p.name for p in result.documents],
        "collection": result.collection.name if result.collection else None,
        "missing_ranks": result.missing_ranks,
        "malformed_frames": result.malformed_frames,
        "problems": result.problems,
        "ranks": {
            str(r): {
                "events": d.events,
                "duplicates_dropped": d.duplicates,
                "gaps": d.gaps,
                "missing_at_end": d.missing_at_end,
                "status": d.done.get("status"),
            }
            for r, d in sorted(result.ranks.items())
        },
        "journals": [
            {"file": j.path.name, "frames": j.frames, "torn_bytes": j.torn_bytes, "reason": j.reason}
            for j in result.journals
        ],
    }
    layout.merge_report.write_bytes(orjson.dumps(report, option=orjson.OPT_INDENT_2))


def merge_if_complete(layout: RunLayout, world_size: int) -> MergeResult | None:
    """Merge now if every rank of the world has written its done marker and nobody else
    claimed the merge; else None (another rank, or ``yprov merge``, will do it).

    A done marker is written after every event of its rank was acked (an ack means the batch
    is in the sidecar's journal, flushed to the OS) or spilled to the rank's spool, so the
    journals hold the whole run by now, whether or not a sidecar is still running."""
    if not all(layout.done_marker(r).exists() for r in range(world_size)):
        return None
    try:
        fd = os.open(layout.merge_claim, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
    except FileExistsError:
        return None
    with os.fdopen(fd, "w") as f:
        f.write(str(os.getpid()))
    return merge_run(layout.root)
