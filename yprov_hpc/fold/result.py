"""What a merge found and wrote (``MergeResult``), its report file and its progress bar."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from yprov_hpc.core.layout import RunLayout
from yprov_hpc.fold.attribution import NodeTelemetry
from yprov_hpc.fold.markers import JobEnd
from yprov_hpc.fold.rankfold import RankDelivery
from yprov_hpc.fold.writers import write_document

__all__ = ["MAX_LISTED_MISSING", "MergeResult", "progress_bar", "write_report"]

MAX_LISTED_MISSING = 1000  # missing ranks listed by number; beyond that, only counted


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
    statuses: dict[int, str] = field(default_factory=dict)  # each rank's status, as documented
    missing_ranks: list[int] = field(default_factory=list)  # the first MAX_LISTED_MISSING
    missing_count: int = 0
    nodes: dict[str, NodeTelemetry] = field(default_factory=dict)
    telemetry_gaps: list[dict[str, Any]] = field(default_factory=list)
    journals: list[Any] = field(default_factory=list)  # ReadReport of each journal and spool
    job_end: JobEnd | None = None
    malformed_frames: int = 0
    seconds: float = 0.0
    from_parts: int = 0  # ranks whose outcome the join took from the nodes' part files
    parts_unusable: list[str] = field(default_factory=list)  # part files it could not read


def progress_bar(enabled: bool, total: int) -> Any:
    """A progress bar of the ranks merged (rich), or None when not enabled."""
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


def write_report(layout: RunLayout, result: MergeResult, world_size: int) -> None:
    """Write ``merge_report.json``: what the merge read, wrote and found wrong, rank by rank."""
    report = {
        "run_dir": str(layout.root),
        "world_size": world_size,
        "seconds": round(result.seconds, 3),
        "documents": [p.name for p in result.documents],
        "collection": result.collection.name if result.collection else None,
        "end_cause": result.job_end.cause if result.job_end is not None else None,
        "missing_ranks": result.missing_ranks,
        "missing_ranks_count": result.missing_count,
        "malformed_frames": result.malformed_frames,
        "bad_events": sum(d.bad_events for d in result.ranks.values()),
        "telemetry_gaps": result.telemetry_gaps,
        "problems": result.problems,
        "ranks": {
            str(r): {
                "events": d.events,
                "duplicates_dropped": d.duplicates,
                "gaps": d.gaps,
                "missing_at_end": d.missing_at_end,
                "malformed_batches": d.malformed_batches,
                "bad_events": d.bad_events,
                "bad_reasons": d.bad_reasons,
                "status": result.statuses.get(r),
            }
            for r, d in sorted(result.ranks.items())
        },
        "journals": [
            {"file": j.path.name, "frames": j.frames, "torn_bytes": j.torn_bytes, "reason": j.reason}
            for j in result.journals
        ],
    }
    write_document(layout.merge_report, report)
