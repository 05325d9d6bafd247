"""Loading finished runs: ``load_run(path)`` for one run, ``load_runs(path_or_glob)`` for a table
of many. The DataFrames (``metrics``, ``summaries``, ``system()``, ``load_runs``) need pandas,
imported on first use; ``load_run`` itself does not.

A run is read from its documents (params, summaries, status, energy), its ``merge_report.json``
(problems), its ``environment/`` files and, on first use of ``RunRecord.metrics``, its Parquet
series. Records are found by type and label, never by PROV identifier. A broken or missing file
becomes a line in ``RunRecord.problems``; only a path that is no run at all raises
(``NotARunError``).
"""

from __future__ import annotations

import glob
import re
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from yprov_hpc.core.errors import YProvError
from yprov_hpc.read.documents import first, inside, json_text, read_document, read_json, records
from yprov_hpc.read.series import METRIC_COLUMNS, pandas, read_metrics, read_system

__all__ = ["METRIC_COLUMNS", "NotARunError", "RankRecord", "RunRecord", "load_run", "load_runs"]

SUMMARY_COLUMNS = [
    "rank", "kind", "name", "context", "count", "nan_count", "first_step", "last_step",
    "min", "max", "mean", "last", "first_time", "last_time",
]  # fmt: skip
_RANK_DOC = re.compile(r"^prov_(?P<experiment>.+)_rank(?P<rank>\d+)\.json$")
_COLLECTION = re.compile(r"^prov_(?P<experiment>.+)_collection\.json$")
_SUMMARY_TYPES = {"yprov:Metric": "metric", "yprov:ExecutionTime": "execution_time"}
# a run's status is its ranks' when they agree; else the first of these that a rank has
_STATUS_ORDER = ("failed", "killed", "incomplete", "exited without end_run")


class NotARunError(YProvError, ValueError):
    """A path given to ``load_run`` is not a run directory nor a run's collection document."""

    def __init__(self, path: Path, reason: str) -> None:
        self.path = path
        self.reason = reason
        super().__init__(f"{path}: {reason}")


@dataclass(frozen=True)
class RankRecord:
    """One rank as its document records it."""

    rank: int
    node: str | None
    status: str
    start: datetime | None
    end: datetime | None
    document: Path
    attributes: dict[str, Any]


@dataclass
class RunRecord:
    """One finished (or partly merged) run, read from its directory."""

    path: Path
    id: str
    experiment: str
    status: str
    start: datetime | None = None
    end: datetime | None = None
    world_size: int | None = None
    end_cause: str | None = None  # how a batch job ended (time limit, scancel, ...), when recorded
    nodes: list[str] = field(default_factory=list)
    ranks: dict[int, RankRecord] = field(default_factory=dict)
    params: dict[int, dict[str, Any]] = field(default_factory=dict)
    summary_rows: list[dict[str, Any]] = field(default_factory=list)  # SUMMARY_COLUMNS each
    energy_nodes: dict[str, dict[str, Any]] = field(default_factory=dict)
    energy_ranks: dict[int, dict[str, Any]] = field(default_factory=dict)
    energy_j: float | None = None
    environment: dict[int, dict[str, Any]] = field(default_factory=dict)
    artifacts: list[dict[str, Any]] = field(default_factory=list)
    model_versions: list[dict[str, Any]] = field(default_factory=list)
    datasets: list[dict[str, Any]] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    collection: Path | None = None
    series: dict[int, tuple[Path, str]] = field(default_factory=dict)  # rank -> (file, sha256)
    node_series: dict[str, Path] = field(default_factory=dict)
    _metrics: Any = field(default=None, repr=False)

    @property
    def documents(self) -> list[Path]:
        """The collection and every rank document found."""
        ranks = [self.ranks[r].document for r in sorted(self.ranks)]
        return [self.collection, *ranks] if self.collection else ranks

    @property
    def graphs(self) -> list[Path]:
        """DOT and SVG drawings of the documents (graph/)."""
        return sorted(p for p in (self.path / "graph").glob("*") if p.suffix in (".dot", ".svg"))

    @property
    def duration_s(self) -> float | None:
        if self.start is None or self.end is None:
            return None
        return (self.end - self.start).total_seconds()

    @property
    def summaries(self) -> Any:
        """The documents' summary of every metric and execution-time series of every rank, as a
        pandas DataFrame (SUMMARY_COLUMNS)."""
        return pandas().DataFrame(self.summary_rows, columns=SUMMARY_COLUMNS)

    @property
    def metrics(self) -> Any:
        """Every metric and execution-time point of every rank, as a pandas DataFrame with
        columns rank, name, context, step, value, time (UTC), kind; read once, on first use."""
        if self._metrics is None:
            self._metrics = read_metrics(self.series, self.problems)
        return self._metrics

    def thinned_metrics(self, max_points: int) -> Any:
        """Like ``metrics``, with each rank's (name, context) series thinned to about
        ``max_points`` points by a fixed stride (the last point kept), read rank by rank."""
        return read_metrics(self.series, self.problems, max_points)

    def system(self) -> Any:
        """The nodes' sampled series (node, time, source, device, metric, value) as a DataFrame."""
        return read_system(self.node_series, self.problems)

    def common_params(self) -> dict[str, Any]:
        """The params of the lowest rank that logged any (ranks usually log the same ones)."""
        return next((self.params[r] for r in sorted(self.params) if self.params[r]), {})

    def final_metrics(self) -> dict[tuple[str, str | None], float]:
        """(name, context) -> last value, of the lowest rank that logged that series."""
        out: dict[tuple[str, str | None], float] = {}
        rows = sorted((r for r in self.summary_rows if r["kind"] == "metric"), key=lambda r: int(r["rank"]))
        for row in rows:
            last = row.get("last")
            if isinstance(row.get("name"), str) and isinstance(last, (int, float)):
                context = row.get("context")
                out.setdefault((row["name"], context if isinstance(context, str) else None), float(last))
        return out


def _run_root(path: Path) -> tuple[Path, Path | None]:
    """(run directory, collection file or None) for a run directory or a collection file."""
    if not path.exists():
        raise NotARunError(path, "no such file or directory")
    path = path.resolve()
    if path.is_file():
        if not _COLLECTION.match(path.name):
            raise NotARunError(path, "not a run's collection document (prov_<experiment>_collection.json)")
        return path.parent, path
    collections = sorted(p for p in path.glob("prov_*_collection.json") if _COLLECTION.match(p.name))
    if collections:
        return path, collections[0]
    if any(_RANK_DOC.match(p.name) for p in path.glob("prov_*.json")) or (path / "journal").is_dir():
        return path, None
    raise NotARunError(path, "not a run directory (no prov_*_collection.json, no journal/)")


def load_run(path: Path | str) -> RunRecord:
    """The run in ``path`` (a run directory or its ``prov_<experiment>_collection.json``)."""
    root, collection_path = _run_root(Path(path))
    problems: list[str] = []
    collection = read_document(collection_path, problems) if collection_path else None
    job = first(collection, "activity", "yprov:Job")
    rank_paths = _rank_documents(root, problems)
    exp_default = next(iter(rank_paths.values()), None)
    experiment = str(job.get("experiment") or _experiment_from(collection_path, exp_default) or root.name)
    run = RunRecord(path=root, id=str(job.get("run_id") or root.name), experiment=experiment, status="")
    run.collection = collection_path if collection is not None else None
    run.start, run.end = _time(job.get("prov:startTime")), _time(job.get("prov:endTime"))
    run.world_size = job.get("world_size") if isinstance(job.get("world_size"), int) else None
    run.end_cause = str(job["end_cause"]) if job.get("end_cause") else None
    nodes = json_text(job.get("nodes"))
    run.nodes = [str(n) for n in nodes] if isinstance(nodes, list) else []
    for node in records(collection or {}, "entity", "yprov:Node"):
        name = str(node.get("prov:label"))
        run.energy_nodes[name] = _energy_fields(node)
        series_path = inside(root, node.get("series_path"))
        if series_path is not None:
            run.node_series[name] = series_path
    coll = first(collection, "entity", "prov:Collection")
    run.energy_j = coll.get("energy_j") if isinstance(coll.get("energy_j"), float) else None
    for rank, doc_path in sorted(rank_paths.items()):
        _read_rank(run, rank, doc_path, problems)
    problems += _merge_problems(root, collection_path is not None)
    extra = json_text(coll.get("problems"))
    if isinstance(extra, list):
        problems += [f"merge: {p}" for p in extra if f"merge: {p}" not in problems]
    run.problems = problems
    run.status = _status(run, coll)
    if run.start is None and run.ranks:
        run.start = min((r.start for r in run.ranks.values() if r.start), default=None)
        run.end = max((r.end for r in run.ranks.values() if r.end), default=None)
    if not run.nodes:
        run.nodes = sorted({r.node for r in run.ranks.values() if r.node})
    return run


def _experiment_from(collection: Path | None, rank_doc: Path | None) -> str | None:
    for p, pattern in ((collection, _COLLECTION), (rank_doc, _RANK_DOC)):
        match = pattern.match(p.name) if p else None
        if match:
            return match.group("experiment")
    return None


def _rank_documents(root: Path, problems: list[str]) -> dict[int, Path]:
    found: dict[int, Path] = {}
    for p in sorted(root.glob("prov_*_rank*.json")):
        match = _RANK_DOC.match(p.name)
        if match:
            rank = int(match.group("rank"))
            if rank in found:
                problems.append(f"{p.name}: a second document for rank {rank}; kept {found[rank].name}")
                continue
            found[rank] = p
    return found


def _time(value: Any) -> datetime | None:
    from yprov_hpc.read.documents import literal

    value = literal({"$": value, "type": "xsd:dateTime"}) if isinstance(value, str) else value
    return value if isinstance(value, datetime) else None


def _energy_fields(attrs: dict[str, Any]) -> dict[str, Any]:
    keep = ("series_path", "series_sha256", "prov:label", "path", "sha256")
    return {k: v for k, v in attrs.items() if k not in keep}


def _read_rank(run: RunRecord, rank: int, doc_path: Path, problems: list[str]) -> None:
    """Everything one rank's document holds, added to ``run``."""
    doc = read_document(doc_path, problems)
    if doc is None:
        run.ranks[rank] = RankRecord(rank, None, "unreadable document", None, None, doc_path, {})
        return
    act = first(doc, "activity", "yprov:TrainingRun")
    status = str(act.get("status") or "unknown")
    node = act.get("node")
    run.ranks[rank] = RankRecord(
        rank,
        str(node) if node is not None else None,
        status,
        _time(act.get("prov:startTime")),
        _time(act.get("prov:endTime")),
        doc_path,
        act,
    )
    run.params[rank] = {
        str(p.get("prov:label")): p.get("prov:value")
        for p in records(doc, "entity", "yprov:Parameter")
        if p.get("prov:label") is not None
    }
    for prov_type, kind in _SUMMARY_TYPES.items():
        for s in records(doc, "entity", prov_type):
            row = {c: s.get(c) for c in SUMMARY_COLUMNS}
            row.update(rank=rank, kind=kind, name=s.get("prov:label"))
            run.summary_rows.append(row)
    energy = first(doc, "entity", "yprov:EnergyReport")
    if energy:
        run.energy_ranks[rank] = _energy_fields(energy)
    series = first(doc, "entity", "yprov:SeriesFile")
    series_path = inside(run.path, series.get("path"))
    if series_path is not None:
        run.series[rank] = (series_path, str(series.get("sha256") or ""))
    elif series:
        problems.append(f"{doc_path.name}: series path {series.get('path')!r} is outside the run; ignored")
    for kind, target in (("yprov:Artifact", run.artifacts), ("yprov:ModelVersion", run.model_versions)):
        target += [{"rank": rank, **a} for a in records(doc, "entity", kind)]
    run.datasets += [{"rank": rank, **d} for d in records(doc, "entity", "yprov:Dataset")]
    env = read_json(run.path / "environment" / f"rank{rank}.json", problems, what="environment file")
    run.environment[rank] = env if isinstance(env, dict) else first(doc, "entity", "yprov:Environment")


def _merge_problems(root: Path, merged: bool) -> list[str]:
    """Problems the merge recorded in merge_report.json (missing ranks, gaps, bad frames)."""
    if not merged:
        return [f"not merged yet (no collection document): run yprov merge {root}"]
    found: list[str] = []
    report = read_json(root / "merge_report.json", found, what="merge report")
    if not isinstance(report, dict):
        return found
    if isinstance(report.get("problems"), list):  # the merge states every loss here
        return found + [f"merge: {p}" for p in report["problems"] if isinstance(p, str)]
    missing = report.get("missing_ranks")  # a report without the list: say what its fields show
    if isinstance(missing, list) and missing:
        found.append(f"ranks missing: {', '.join(str(r) for r in missing)}")
    ranks = report.get("ranks")
    for rank, info in sorted(ranks.items() if isinstance(ranks, dict) else []):
        if not isinstance(info, dict):
            continue
        if info.get("gaps"):
            found.append(f"rank {rank}: events lost in gaps {info['gaps']}")
        if isinstance(info.get("missing_at_end"), int) and info["missing_at_end"] > 0:
            found.append(f"rank {rank}: {info['missing_at_end']} events sent but never received")
    return found


def _status(run: RunRecord, coll: dict[str, Any]) -> str:
    if run.collection is None:
        return "not merged"
    statuses = {r.status for r in run.ranks.values()}
    missing = json_text(coll.get("ranks_missing"))
    if isinstance(missing, list) and missing:
        return "incomplete"
    return combined_status(statuses)


def combined_status(statuses: set[str]) -> str:
    """One status for a run from its ranks': theirs when they agree, else the worst one found
    (failed, killed, incomplete, exited without end_run), else all of them."""
    if len(statuses) == 1:
        return next(iter(statuses))
    for status in _STATUS_ORDER:
        if status in statuses:
            return status
    return ", ".join(sorted(statuses)) or "no ranks"


def find_runs(path_or_glob: Path | str) -> list[Path]:
    """Run directories named by ``path_or_glob``: a run directory, a directory holding runs
    (one or two levels down), or a glob pattern of either."""
    text = str(path_or_glob)
    bases = [Path(p) for p in sorted(glob.glob(text))] if glob.has_magic(text) else [Path(text)]
    found: list[Path] = []
    for base in bases:
        try:
            root, _ = _run_root(base)
            found.append(root)
            continue
        except NotARunError:
            pass
        if base.is_dir():
            for pattern in ("*/prov_*_collection.json", "*/journal", "*/*/prov_*_collection.json"):
                found += [p.parent for p in sorted(base.glob(pattern))]
    return sorted(dict.fromkeys(found))


def load_runs(path_or_glob: Path | str) -> Any:
    """A pandas DataFrame with one row per run found (see ``find_runs``): path, id, experiment,
    status, start, end, duration_s, ranks, world_size, nodes, energy_j, problems, then
    ``params.<key>`` (the lowest rank's) and ``metrics.<name>[<context>]`` (final values)."""
    pd = pandas()
    rows = [run_row(load_run(p)) for p in find_runs(path_or_glob)]
    base = ["path", "id", "experiment", "status", "start", "end", "duration_s", "ranks", "world_size"]
    base = [*base, "nodes", "energy_j", "problems"]
    frame = pd.DataFrame(rows)
    if frame.empty:
        return pd.DataFrame(columns=base)
    params = sorted(c for c in frame.columns if c.startswith("params."))
    metrics = sorted(c for c in frame.columns if c.startswith("metrics."))
    frame = frame[[*base, *params, *metrics]]
    frame = frame.sort_values(["experiment", "start"], kind="stable", na_position="last")
    return frame.reset_index(drop=True)


def metric_column(name: str, context: str | None) -> str:
    """The column name of a final metric in ``load_runs``: ``metrics.loss[training]``."""
    return f"metrics.{name}[{context}]" if context else f"metrics.{name}"


def run_fields(run: RunRecord) -> dict[str, Any]:
    """A run's identity, status, times and size: the first columns of every table of runs."""
    return {
        "path": str(run.path),
        "id": run.id,
        "experiment": run.experiment,
        "status": run.status,
        "start": run.start,
        "end": run.end,
        "duration_s": run.duration_s,
        "ranks": len(run.ranks),
        "world_size": run.world_size,
        "nodes": len(run.nodes),
        "energy_j": run.energy_j,
    }


def run_row(run: RunRecord) -> dict[str, Any]:
    """One run as a flat row (the shape of ``load_runs`` and ``yprov ls --json``)."""
    row = {**run_fields(run), "problems": len(run.problems)}
    row.update({f"params.{k}": v for k, v in run.common_params().items()})
    row.update({metric_column(n, c): v for (n, c), v in run.final_metrics().items()})
    return row
