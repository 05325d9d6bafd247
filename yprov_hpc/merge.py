"""The merge: journals and spools -> per-rank PROV-JSON, series files and the collection.

A thin orchestrator of four stages: index (``fold.index``: every frame's header, checksums
checked), fold (``fold.rankfold`` per rank, ``fold.attribution`` per node: summaries, series
columns, energy), PROV building (``prov.rankdoc``, ``prov.collection``: pure functions, no file
I/O) and writers (``fold.writers``, every file written atomically). Memory stays bounded by one
rank's data; re-running the merge gives the same result (it only reads the journals). Nothing
in a journal or marker file fails the whole merge: bad events, markers and samples are skipped
and reported, missing ranks and lost events are reported in the output, not raised.
"""

from __future__ import annotations

import gc
import time
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

from yprov_hpc.core.layout import RunLayout, safe_name
from yprov_hpc.fold.attribution import NodeTelemetry, mark_metrics, node_attributes
from yprov_hpc.fold.attribution import rank_energy as rank_energy_of
from yprov_hpc.fold.carbon import CarbonIntensity
from yprov_hpc.fold.index import Frame, JournalIndex, index_journals, journal_group, read_batch
from yprov_hpc.fold.markers import JobEnd, Markers, RankMarker, read_job_end, read_markers
from yprov_hpc.fold.nodes import (
    Settings,
    finish_nodes,
    job_end_ns,
    load_nodes,
    merge_settings,
    telemetry,
    write_node_files,
)
from yprov_hpc.fold.parts import RankOutcome, node_key, rank_key, read_parts, write_part
from yprov_hpc.fold.rankfold import RankDelivery, RankFold, fold_rank, rank_problems
from yprov_hpc.fold.result import MAX_LISTED_MISSING, MergeResult, write_report
from yprov_hpc.fold.series import build_table, context_spans, summarize, write_series
from yprov_hpc.fold.workers import Workers
from yprov_hpc.fold.writers import write_combined, write_document
from yprov_hpc.prov.collection import CollectionInput, RankEntry, build_collection
from yprov_hpc.prov.graph import draw_documents
from yprov_hpc.prov.rankdoc import RankFiles, build_rank_document, rank_status
from yprov_hpc.prov.vocab import ncname
from yprov_hpc.wire.records import MAX_WORLD_SIZE, EventError, RunStart, decode_event

__all__ = ["MergeResult", "load_nodes", "merge_part", "merge_run", "part_nodes"]  # load_nodes: for read/

Window = tuple[int, int]


def _experiment_of(index: JournalIndex) -> str | None:
    """The experiment name the ranks started with (a run directory's name need not say it)."""
    for rank in sorted(index.ranks):
        for fr in sorted(index.ranks[rank], key=lambda f: f.seq_start)[:1]:
            for raw in read_batch(fr) or []:
                try:
                    rec = decode_event(raw)
                except EventError:
                    continue
                name = rec.info.get("experiment") if isinstance(rec, RunStart) else None
                if isinstance(name, str) and name and safe_name(name) == name:  # it names files
                    return name
    return None


@dataclass
class _RankJob:
    """Everything one rank's merge needs (picklable: it may run in a worker process)."""

    root: Path
    experiment: str
    rank: int
    frames: list[Frame]
    marker: RankMarker | None
    node: NodeTelemetry | None
    carbon: CarbonIntensity
    job_end: JobEnd | None


def _rank_window(fold: RankFold, delivery: RankDelivery) -> Window:
    """The rank's run from its start to its end_run (else its marker's end, else its last event)."""
    start = fold.start_ns if fold.start_ns is not None else min(fold.columns.ts_ns, default=fold.last_ns)
    end = fold.end_ns or delivery.done.get("ended_ts_ns") or fold.last_ns
    return start, max(start, int(end))


def _rel(layout: RunLayout, path: Path) -> str:
    return path.relative_to(layout.root).as_posix()


def _merge_rank(job: _RankJob) -> RankOutcome:
    """One rank's merge with the cyclic garbage collector paused: a fold allocates ~10 objects
    per event and no cycles, and the collector's passes over them cost ~15 % of the fold."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        return _merge_rank_files(job)
    finally:
        if was_enabled:
            gc.enable()


def _merge_rank_files(job: _RankJob) -> RankOutcome:
    """Fold one rank's batches, join its marks with its node's samples, write its files."""
    layout = RunLayout.open(job.root, job.experiment)
    fold, delivery = fold_rank(job.rank, job.frames, job.marker)
    window = _rank_window(fold, delivery)
    fold.add_metrics(mark_metrics(job.rank, fold.marks, window[0], job.node, job.carbon))
    table = build_table(fold.columns)
    series_path = layout.series_file(job.rank)
    series_sha = write_series(table, series_path)
    summaries = summarize(table)
    for ctx_name, (first, last) in context_spans(summaries).items():
        span = fold.contexts.setdefault(ctx_name, [first, last])
        span[0], span[1] = min(span[0], first), max(span[1], last)
    fold.last_ns = max([fold.last_ns, *(summary.last_ns for summary in summaries)])
    env_path = layout.environment_file(job.rank)
    env_sha = write_document(env_path, fold.environment)
    doc, problems = build_rank_document(
        namespace=str(fold.start.get("namespace") or "http://example.org/"),
        experiment=layout.experiment,
        run_id=str(fold.start.get("run_id") or layout.root.name),
        fold=fold,
        delivery=delivery,
        summaries=summaries,
        files=RankFiles(
            _rel(layout, series_path), series_sha, len(fold.columns), _rel(layout, env_path), env_sha
        ),
        energy=rank_energy_of(job.rank, window, job.node, job.carbon),
        job_end=job.job_end,
        problems=rank_problems(fold, delivery),
    )
    document = layout.rank_document(job.rank)
    sha = write_document(document, doc)
    status = rank_status(fold, delivery, job.job_end)
    return RankOutcome(job.rank, document, sha, delivery, fold.slim(), status, window, problems)


def _world_size(markers: Markers, index: JournalIndex, outcomes: list[RankOutcome]) -> int:
    """The largest world size any rank claims (each claim checked: at most MAX_WORLD_SIZE)."""
    claims = [m.world_size or 1 for m in markers.ranks.values()]
    claims += [o.fold.start.get("world_size") or 1 for o in outcomes]
    return min(MAX_WORLD_SIZE, max([*claims, max(index.ranks, default=-1) + 1, 1]))


def _missing(world_size: int, present: set[int]) -> tuple[list[int], int]:
    """(the first MAX_LISTED_MISSING ranks with no events, how many there are)."""
    count = world_size - len([r for r in present if r < world_size])
    listed: list[int] = []
    for r in range(world_size):
        if len(listed) >= min(count, MAX_LISTED_MISSING):
            break
        if r not in present:
            listed.append(r)
    return listed, count


@dataclass
class _Plan:
    """What a merge knows before the per-rank stage: the index, markers, settings, node
    telemetry, one job per rank, and each rank's key (see ``fold.parts``)."""

    layout: RunLayout
    result: MergeResult
    index: JournalIndex
    markers: Markers
    conf: Settings
    nodes: dict[str, tuple[NodeTelemetry, list[Any]]]
    node_of: dict[int, str]
    jobs: list[_RankJob]
    keys: dict[int, str]


def _plan(run_dir: Path, paths: list[Path] | None = None) -> _Plan:
    """Index the journals (only ``paths`` when given), read markers and settings, build every
    node's telemetry and one job per rank."""
    layout = RunLayout.open(run_dir)
    if not layout.journal_dir.is_dir():
        raise FileNotFoundError(f"{run_dir} has no journal/ directory: not a yprov run directory")
    result = MergeResult(layout.root)
    index = index_journals(layout.journal_dir, paths)
    result.journals, result.malformed_frames = index.reports, index.malformed_frames
    result.problems.extend(index.problems)
    layout = RunLayout.open(layout.root, _experiment_of(index) or layout.experiment)
    markers = read_markers(layout.journal_dir)
    result.problems.extend(markers.problems)
    result.job_end, job_end_problem = read_job_end(layout.job_end)
    result.problems.extend([job_end_problem] if job_end_problem else [])
    conf = merge_settings()
    result.problems.extend(conf.problems)
    nodes = telemetry(index, conf, result.problems, job_end_ns(markers, index))
    node_of = {r: (m.node or index.node_of(r) or "") for r, m in markers.ranks.items()}
    node_of.update({r: index.node_of(r) or "" for r in index.ranks if r not in node_of})
    node_keys = {
        n: node_key(n, samples, conf.tdp, (tele.cpu_model, tele.tdp_source))
        for n, (tele, samples) in nodes.items()
    }
    jobs, keys = [], {}
    for rank in sorted(index.ranks):
        node = node_of[rank]
        job = _RankJob(
            layout.root,
            layout.experiment,
            rank,
            index.ranks[rank],
            markers.ranks.get(rank),
            nodes[node][0] if node in nodes else None,
            conf.carbon,
            result.job_end,
        )
        jobs.append(job)
        keys[rank] = rank_key(
            job.experiment, rank, job.frames, job.marker, node, node_keys.get(node), job.carbon, job.job_end
        )
    return _Plan(layout, result, index, markers, conf, nodes, node_of, jobs, keys)


def merge_run(
    run_dir: Path,
    create_svg: bool | None = None,
    progress: bool = False,
    workers: int = 1,
    create_graph: bool | None = None,
    join: bool = False,
) -> MergeResult:
    """Merge a run directory's journals and spools into its PROV output; idempotent.

    Graphs are drawn when asked: ``create_graph``/``create_svg``, or (None) as any rank's
    ``end_run(create_graph=..., create_svg=...)`` asked.

    ``workers`` > 1 merges ranks (and draws their graphs) in that many worker processes; memory
    stays bounded by one rank's data per worker. ``join``: take each rank whose node's part
    (``merge_part``) folded exactly these inputs from its part file, fold the others here; the
    output is the same as without."""
    began = time.monotonic()
    pool = Workers(_merge_rank, workers)
    try:
        if not join:  # a join may find every rank in the parts: no workers then
            pool.start_for(sorted(RunLayout.open(run_dir).journal_dir.glob("*.journal")))
        plan = _plan(run_dir)
        layout, result = plan.layout, plan.result
        done: dict[int, RankOutcome] = {}
        if join:
            done, result.parts_unusable = read_parts(layout, plan.keys)
            result.from_parts = len(done)
        todo = [job for job in plan.jobs if job.rank not in done]
        meanwhile = partial(write_node_files, layout, plan.nodes)  # while the workers fold
        outcomes = sorted([*done.values(), *pool.run(todo, progress, meanwhile)], key=lambda o: o.rank)
    finally:
        pool.close()
    for outcome in outcomes:
        result.documents.append(outcome.document)
        result.ranks[outcome.rank] = outcome.delivery
        result.statuses[outcome.rank] = outcome.status
        result.problems.extend(outcome.problems)
    world_size = _world_size(plan.markers, plan.index, outcomes)
    result.missing_ranks, result.missing_count = _missing(world_size, set(plan.index.ranks))
    if result.missing_count:
        more = (
            f" (and {result.missing_count - len(result.missing_ranks)} more)"
            if result.missing_count > len(result.missing_ranks)
            else ""
        )
        result.problems.append(f"ranks with no events at all: {result.missing_ranks}{more}")
    if result.malformed_frames:
        result.problems.append(f"{result.malformed_frames} malformed frames skipped")
    _finish_run(layout, result, outcomes, plan.nodes, plan.node_of, plan.conf, world_size)
    _draw(layout, result, outcomes, create_graph, create_svg, workers)
    result.seconds = time.monotonic() - began
    write_report(layout, result, world_size)
    return result


def part_nodes(run_dir: Path) -> list[str]:
    """Every node a merge part can be run for: the (file-name-safe) nodes of the journals."""
    journal_dir = RunLayout.open(run_dir).journal_dir
    groups = {journal_group(p) for p in journal_dir.glob("*.journal")}
    return sorted(g for g in groups if g is not None)


def merge_part(run_dir: Path, nodes: list[str], workers: int = 1, progress: bool = False) -> MergeResult:
    """One node part of a split merge (see ``fold.parts``): fold the ranks whose journals are
    the nodes' (``fold.index.journal_group``), write their documents and series, and one part
    file per node for the join; no collection, no report."""
    began = time.monotonic()
    wanted = {safe_name(n) for n in nodes}
    journal_dir = RunLayout.open(run_dir).journal_dir
    paths = [p for p in journal_dir.glob("*.journal") if journal_group(p) in wanted]
    pool = Workers(_merge_rank, workers)
    try:
        pool.start_for(paths)
        plan = _plan(run_dir, paths)
        jobs = [job for job in plan.jobs if safe_name(plan.node_of[job.rank]) in wanted]
        outcomes = pool.run(jobs, progress)
    finally:
        pool.close()
    for node in sorted(wanted):
        mine = [o for o in outcomes if safe_name(plan.node_of[o.rank]) == node]
        write_part(plan.layout, node, plan.layout.experiment, [(plan.keys[o.rank], o) for o in mine])
    plan.result.documents = [o.document for o in outcomes]
    plan.result.ranks = {o.rank: o.delivery for o in outcomes}
    plan.result.seconds = time.monotonic() - began
    return plan.result


def _finish_run(
    layout: RunLayout,
    result: MergeResult,
    outcomes: list[RankOutcome],
    nodes: dict[str, tuple[NodeTelemetry, list[Any]]],
    node_of: dict[int, str],
    conf: Settings,
    world_size: int,
) -> None:
    """Node totals and gaps over the run's window, then the collection (and the combined file)."""
    window = (min(o.window[0] for o in outcomes), max(o.window[1] for o in outcomes)) if outcomes else None
    rank_windows: dict[str, dict[int, Window]] = {}
    for o in outcomes:
        rank_windows.setdefault(node_of.get(o.rank, ""), {})[o.rank] = o.window
    finish_nodes(nodes, window, rank_windows, conf.carbon)
    result.nodes = {n: t for n, (t, _) in nodes.items()}
    for tele in result.nodes.values():
        result.telemetry_gaps.extend(tele.gaps)
        result.problems.extend(
            f"node {g['node']}: telemetry gap from {g['from_ts_ns']} to {g['to_ts_ns']} ns: {g['reason']}"
            for g in tele.gaps
        )
    silent = sorted({node_of.get(o.rank, "") for o in outcomes} - set(nodes) - {""})
    for node in silent if nodes else []:  # with no samples anywhere, telemetry was off: no gap
        if window is not None:
            gap = {
                "node": node,
                "from_ts_ns": window[0],
                "to_ts_ns": window[1],
                "reason": "no samples from this node",
            }
            result.telemetry_gaps.append(gap)
            result.problems.append(f"node {node}: no samples from this node (no telemetry for the run)")
    if not outcomes:
        return
    measured = [t.totals["energy_j"] for t in result.nodes.values() if "energy_j" in t.totals]
    first = outcomes[0].fold.start
    run_id = str(first.get("run_id") or layout.root.name)
    doc = build_collection(
        CollectionInput(
            namespace=str(first.get("namespace") or "http://example.org/"),
            experiment=layout.experiment,
            run_id=run_id,
            world_size=world_size,
            ranks=[RankEntry(o.fold, o.status, o.document.name, o.document_sha256) for o in outcomes],
            nodes=_node_entries(layout, result, silent),
            problems=result.problems,
            missing_ranks=result.missing_ranks,
            missing_count=result.missing_count,
            job_end=result.job_end,
            job_energy_j=sum(measured) if measured else None,
            job_energy_status=None if measured else "not measured: no node has samples in the run's window",
        )
    )
    result.collection = layout.collection_document
    write_document(result.collection, doc)
    if any(o.fold.start.get("collect_all_processes") for o in outcomes):
        result.combined = layout.combined_document
        write_combined(result.combined, result.collection, {ncname(p.stem): p for p in result.documents})


def _node_entries(layout: RunLayout, result: MergeResult, silent: list[str]) -> dict[str, dict[str, Any]]:
    """Each node's attributes in the collection, a node without samples included."""
    entries = {
        n: node_attributes(t, _rel(layout, t.series_path) if t.series_path else None)
        for n, t in result.nodes.items()
    }
    for node in silent:
        entries[node] = node_attributes(None, None)
        gaps = [g for g in result.telemetry_gaps if g["node"] == node]
        entries[node]["telemetry_gaps"] = gaps or None
    return entries


def _draw(
    layout: RunLayout,
    result: MergeResult,
    outcomes: list[RankOutcome],
    create_graph: bool | None,
    create_svg: bool | None,
    workers: int,
) -> None:
    """DOT graphs of every document (SVG too on request), only when asked; a graph is a view,
    never a merge failure."""
    svg = create_svg if create_svg is not None else any(o.fold.end_flags.get("create_svg") for o in outcomes)
    graph = (
        create_graph
        if create_graph is not None
        else any(o.fold.end_flags.get("create_graph") for o in outcomes)
    )
    if not (graph or svg):
        return
    paths = [*result.documents, *([result.collection] if result.collection else [])]
    written, problems = draw_documents(paths, layout.graph_dir, bool(svg), workers)
    result.graphs.extend(written)
    result.problems.extend(p for p in problems if p not in result.problems)
