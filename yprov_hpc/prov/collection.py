"""The job's summary document, built as a pure function: the ranks' outcomes in, a dict out.

A ``prov:Collection`` with ``hadMember`` for every rank document, the job activity (with its
end cause when the batch script recorded one), one entity per node (energy totals, telemetry
gaps) and the job's energy, or why it was not measured.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from yprov_hpc.fold.markers import JobEnd
from yprov_hpc.fold.rankfold import RankFold
from yprov_hpc.prov.vocab import DocumentBuilder, is_ncname, qname, record_id

__all__ = ["CollectionInput", "RankEntry", "build_collection"]


@dataclass(frozen=True)
class RankEntry:
    """One rank as the collection shows it: its slim fold, status and document file."""

    fold: RankFold
    status: str
    document_name: str
    document_sha256: str


@dataclass
class CollectionInput:
    """Everything the collection says (all of it already computed by the merge)."""

    namespace: str
    experiment: str
    run_id: str
    world_size: int
    ranks: list[RankEntry]
    nodes: dict[str, dict[str, Any]]  # node -> its attributes (without the yprov: prefix)
    problems: list[str]
    missing_ranks: list[int] = field(default_factory=list)  # the first ones, capped
    missing_count: int = 0
    job_end: JobEnd | None = None
    job_energy_j: float | None = None
    job_energy_status: str | None = None


def _parent_activity(b: DocumentBuilder, parent: str) -> str:
    """The enclosing workflow run as an activity: its own URI when that splits into a namespace
    and an NCName (prefix ``parent``), else a local record that carries the URI."""
    cut = max(parent.rfind("/"), parent.rfind("#"), parent.rfind(":"))
    local = parent[cut + 1 :]
    if cut > 0 and is_ncname(local) and "://" in parent:
        b.doc["prefix"]["parent"] = parent[: cut + 1]
        ident = f"parent:{local}"
    else:
        ident = record_id("parent_run")
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


def _job(b: DocumentBuilder, c: CollectionInput, nodes: list[str], start: int | None, end: int | None) -> str:
    folds = [e.fold for e in c.ranks]
    info = folds[0].start if folds else {}
    steps = sorted(
        {str(f.start["slurm_step_id"]) for f in folds if f.start.get("slurm_step_id") not in (None, "")}
    )
    run_id = c.run_id
    return b.activity(
        record_id("job"),
        start,
        end,
        {
            "prov:type": qname("yprov:Job"),
            "prov:label": f"{c.experiment} run {run_id}",
            "yprov:run_id": run_id,
            "yprov:experiment": c.experiment,
            "yprov:world_size": c.world_size,
            "yprov:nodes": nodes,
            "yprov:launcher": info.get("launcher"),
            "yprov:parent_run": info.get("parent_run"),
            "yprov:slurm_job_id": run_id[5:].split(".")[0] if run_id.startswith("slurm") else None,
            "yprov:slurm_step_ids": steps or None,
            "yprov:end_cause": c.job_end.cause if c.job_end is not None else None,
        },
    )


def build_collection(c: CollectionInput) -> dict[str, Any]:
    """The collection document of one run."""
    b = DocumentBuilder(c.namespace, c.experiment, c.run_id)
    folds = [e.fold for e in c.ranks]
    starts = [f.start_ns for f in folds if f.start_ns]
    ends = [f.end_ns or f.last_ns for f in folds if f.end_ns or f.last_ns]
    end = max(ends) if ends else None
    nodes = sorted({str(f.start["node"]) for f in folds if f.start.get("node")})
    job = _job(b, c, nodes, min(starts) if starts else None, end)
    parent = str(folds[0].start.get("parent_run") or "") if folds else ""
    if parent:  # the job nests in a workflow-level graph (yProv4WFs or another workflow system)
        b.informed(job, _parent_activity(b, parent))
    for node in sorted(set(nodes) | set(c.nodes)):
        attrs: dict[str, Any] = {"prov:type": qname("yprov:Node"), "prov:label": node}
        attrs.update({f"yprov:{k}": v for k, v in c.nodes.get(node, {}).items()})
        ent = b.entity(record_id("node", tail=node), attrs)
        b.generated(ent, job, end)
    missing = c.missing_ranks or None
    coll = b.entity(
        record_id("collection"),
        {
            "prov:type": qname("prov:Collection"),
            "prov:label": f"provenance of {c.experiment} run {c.run_id}",
            "yprov:world_size": c.world_size,
            "yprov:ranks_found": len(c.ranks),
            "yprov:ranks_missing": missing,
            "yprov:ranks_missing_count": c.missing_count if c.missing_count > len(c.missing_ranks) else None,
            "yprov:problems": c.problems or None,
            "yprov:energy_j": c.job_energy_j,
            "yprov:energy_kwh": c.job_energy_j / 3.6e6 if c.job_energy_j is not None else None,
            "yprov:energy_status": c.job_energy_status,
        },
    )
    b.generated(coll, job, end)
    for entry in c.ranks:
        fold, rank = entry.fold, entry.fold.rank
        act = b.activity(
            record_id(f"rank{rank}"),
            fold.start_ns,
            fold.end_ns or fold.last_ns or None,
            {
                "prov:type": qname("yprov:TrainingRun"),
                "yprov:rank": rank,
                "yprov:node": fold.start.get("node"),
                "yprov:status": entry.status,
            },
        )
        b.informed(act, job)
        doc = b.entity(
            record_id(f"rank{rank}", "document"),
            {
                "prov:type": qname("yprov:RankDocument"),
                "prov:label": entry.document_name,
                "yprov:path": entry.document_name,
                "yprov:sha256": entry.document_sha256,
                "yprov:rank": rank,
            },
        )
        b.generated(doc, act, fold.end_ns or None)
        b.member(coll, doc)
    return b.doc
