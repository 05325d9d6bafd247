"""Marker files the merge reads beside the journals, all untrusted JSON: each rank's done marker
(``rank<r>.done``, written by the rank at ``end_run``), the sidecar's lost marker
(``rank<r>.lost``, a rank that died without ``end_run``) and the batch job's end cause
(``job.end``, written by the Slurm batch script).

Every read is size-capped and every field type-checked; a bad file is reported and ignored,
never raised, and no number in a marker sizes an allocation.
"""

from __future__ import annotations

import json
import os
import re
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from yprov_hpc.wire.records import INT64_MAX, MAX_NAME_CHARS, MAX_RANK, MAX_WORLD_SIZE

__all__ = [
    "END_CAUSES",
    "MAX_MARKER_BYTES",
    "JobEnd",
    "Markers",
    "RankMarker",
    "read_job_end",
    "read_markers",
]

MAX_MARKER_BYTES = 64 * 1024
END_CAUSES = {
    "completed": "completed",
    "cancelled": "cancelled",
    "time_limit": "time limit",
    "failed": "failed",
    "node_fail": "node failure",
}
_MARKER_NAME = re.compile(r"^rank(0|[1-9][0-9]{0,6})\.(done|lost)$")


@dataclass(frozen=True)
class RankMarker:
    """What a rank's done marker (or the sidecar's lost marker) says, checked."""

    rank: int
    status: str
    lost: bool = False
    world_size: int | None = None
    node: str | None = None
    stream: int | None = None
    ended_ts_ns: int | None = None
    delivery: dict[str, Any] = field(default_factory=dict)  # plain scalars only
    create_svg: bool | None = None

    def as_dict(self) -> dict[str, Any]:
        """The checked fields, as the merge report and the documents show them."""
        out: dict[str, Any] = {"rank": self.rank, "status": self.status, "delivery": dict(self.delivery)}
        for key in ("world_size", "node", "stream", "ended_ts_ns", "create_svg"):
            if getattr(self, key) is not None:
                out[key] = getattr(self, key)
        return out


@dataclass(frozen=True)
class JobEnd:
    """How the batch job ended: ``cause`` one of END_CAUSES' keys, at ``ts_ns``."""

    cause: str
    ts_ns: int | None

    @property
    def rank_status(self) -> str:
        """The status of a rank that recorded no end_run in a job that ended this way."""
        if self.cause == "completed":
            return "incomplete (no end_run recorded)"
        return f"{END_CAUSES[self.cause]} (no end_run recorded)"


@dataclass
class Markers:
    """Every valid marker of a run, and what was wrong with the others."""

    ranks: dict[int, RankMarker] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)


def _read_json(path: Path) -> dict[str, Any]:
    """A small JSON object from a file, or ValueError saying why not."""
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    with os.fdopen(fd, "rb") as f:
        if not stat.S_ISREG(os.fstat(f.fileno()).st_mode):
            raise ValueError("not a regular file")
        data = f.read(MAX_MARKER_BYTES + 1)
    if len(data) > MAX_MARKER_BYTES:
        raise ValueError(f"larger than {MAX_MARKER_BYTES} bytes")
    try:
        obj = json.loads(data)
    except RecursionError:
        raise ValueError("JSON nested too deep") from None
    if type(obj) is not dict:
        raise ValueError(f"a JSON {type(obj).__name__}, not an object")
    return obj


def _int(obj: dict[str, Any], key: str, low: int, high: int) -> int | None:
    value = obj.get(key)
    if value is None:
        return None
    if type(value) is not int or not low <= value <= high:
        raise ValueError(f"{key} must be an int in [{low}, {high}], got {value!r:.60}")
    return value


def _str(obj: dict[str, Any], key: str) -> str | None:
    value = obj.get(key)
    if value is None:
        return None
    if type(value) is not str or not value or len(value) > MAX_NAME_CHARS:
        raise ValueError(
            f"{key} must be a non-empty str of at most {MAX_NAME_CHARS} chars, got {value!r:.60}"
        )
    return value


def _delivery(value: Any) -> dict[str, Any]:
    if value is None:
        return {}
    if type(value) is not dict:
        raise ValueError(f"delivery must be an object, got {type(value).__name__}")
    out: dict[str, Any] = {}
    for key, item in list(value.items())[:64]:
        if type(item) is bool or type(item) is float or (type(item) is int and abs(item) <= INT64_MAX):
            out[str(key)[:64]] = item
        elif type(item) is str:
            out[str(key)[:64]] = item[:MAX_NAME_CHARS]
    return out


def _rank_marker(path: Path, rank: int, lost: bool) -> RankMarker:
    obj = _read_json(path)
    claimed = _int(obj, "rank", 0, MAX_RANK)
    if claimed is not None and claimed != rank:
        raise ValueError(f"says rank {claimed} in the file of rank {rank}")
    if lost:
        return RankMarker(
            rank,
            "lost",
            lost=True,
            node=_str(obj, "node"),
            ended_ts_ns=_int(obj, "detected_ts_ns", 0, INT64_MAX),
        )
    svg = obj.get("create_svg")
    return RankMarker(
        rank,
        _str(obj, "status") or "finished",
        world_size=_int(obj, "world_size", 1, MAX_WORLD_SIZE),
        node=_str(obj, "node"),
        stream=_int(obj, "stream", 0, INT64_MAX),
        ended_ts_ns=_int(obj, "ended_ts_ns", 0, INT64_MAX),
        delivery=_delivery(obj.get("delivery")),
        create_svg=svg if type(svg) is bool else None,
    )


def read_markers(journal_dir: Path) -> Markers:
    """Every rank's done or lost marker (a done marker wins: that rank reached end_run)."""
    markers = Markers()
    lost: dict[int, RankMarker] = {}
    try:
        names = sorted(os.listdir(journal_dir))
    except OSError as exc:
        markers.problems.append(f"journal directory unreadable: {exc.strerror or exc}")
        return markers
    for name in names:
        match = _MARKER_NAME.match(name)
        if match is None:
            continue
        rank, is_lost = int(match.group(1)), match.group(2) == "lost"
        if rank > MAX_RANK:
            markers.problems.append(f"{name}: rank over {MAX_RANK}, ignored")
            continue
        try:
            marker = _rank_marker(journal_dir / name, rank, is_lost)
        except (OSError, ValueError) as exc:
            markers.problems.append(f"{name}: ignored, {exc}")
            continue
        (lost if is_lost else markers.ranks)[rank] = marker
    for rank, marker in lost.items():
        markers.ranks.setdefault(rank, marker)
    return markers


def read_job_end(path: Path) -> tuple[JobEnd | None, str | None]:
    """(the job's end cause, None) or (None, what was wrong); (None, None) when there is none."""
    if not os.path.lexists(path):
        return None, None
    try:
        obj = _read_json(path)
        cause = obj.get("cause")
        if type(cause) is not str or cause not in END_CAUSES:
            raise ValueError(f"cause must be one of {sorted(END_CAUSES)}, got {cause!r:.60}")
        return JobEnd(cause, _int(obj, "ts_ns", 0, INT64_MAX)), None
    except (OSError, ValueError) as exc:
        return None, f"{path.name}: ignored, {exc}"
