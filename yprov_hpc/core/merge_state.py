"""The record of the last completed merge of a run, and the snapshot it was made from.

The merge itself never runs in a training process; this module is what the rank side may read:
``wait_for_merge`` lets the last rank's ``end_run`` wait (bounded) for the merge that a sidecar or
a merge process runs, and report what it found. The state file is read as untrusted input: a
file that does not parse or has wrong types counts as no state.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from yprov_hpc.core.atomic import write_json_atomic
from yprov_hpc.core.layout import RunLayout

__all__ = ["MergeState", "journal_snapshot", "read_merge_state", "wait_for_merge", "write_merge_state"]

_MAX_STATE_BYTES = 1 << 20
_MAX_PROBLEMS = 200


@dataclass(frozen=True)
class MergeState:
    """One completed merge: its generation (1, 2, ...), the journal snapshot it read, who ran it."""

    generation: int
    snapshot: str
    by: str
    pid: int
    started_ts_ns: int
    finished_ts_ns: int
    seconds: float
    ranks: int
    events: int
    ok: bool
    collection: str | None = None
    problems: tuple[str, ...] = field(default_factory=tuple)

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["problems"] = list(self.problems)
        return data


def journal_snapshot(layout: RunLayout) -> str:
    """A digest of what a merge would read: names and sizes of journals, spools and markers."""
    h = hashlib.sha256()
    try:
        entries = sorted(os.scandir(layout.journal_dir), key=lambda e: e.name)
    except OSError:
        return ""
    for entry in entries:
        if entry.name.endswith((".journal", ".done", ".lost")) or entry.name == "job.end":
            try:
                size = entry.stat(follow_symlinks=False).st_size
            except OSError:
                continue
            h.update(f"{entry.name}\0{size}\n".encode())
    return h.hexdigest()


def _typed(data: dict[str, Any], key: str, kind: type | tuple[type, ...]) -> Any:
    value = data.get(key)
    if not isinstance(value, kind) or (isinstance(value, bool) and kind in (int, float)):
        raise ValueError(key)
    return value


def read_merge_state(layout: RunLayout) -> MergeState | None:
    """The last completed merge, or None when there is none (or the file is not a valid state)."""
    path: Path = layout.merge_state
    try:
        with open(path, "rb") as f:
            raw = f.read(_MAX_STATE_BYTES + 1)
        if len(raw) > _MAX_STATE_BYTES:
            return None
        data = json.loads(raw)
        if not isinstance(data, dict):
            return None
        problems = data.get("problems") or []
        if not isinstance(problems, list):
            return None
        collection = data.get("collection")
        return MergeState(
            generation=_typed(data, "generation", int),
            snapshot=_typed(data, "snapshot", str),
            by=_typed(data, "by", str),
            pid=_typed(data, "pid", int),
            started_ts_ns=_typed(data, "started_ts_ns", int),
            finished_ts_ns=_typed(data, "finished_ts_ns", int),
            seconds=float(_typed(data, "seconds", (int, float))),
            ranks=_typed(data, "ranks", int),
            events=_typed(data, "events", int),
            ok=_typed(data, "ok", bool),
            collection=collection if isinstance(collection, str) else None,
            problems=tuple(str(p)[:2000] for p in problems[:_MAX_PROBLEMS]),
        )
    except (OSError, ValueError, TypeError):
        return None


def write_merge_state(layout: RunLayout, state: MergeState) -> None:
    """Record a completed merge (atomically)."""
    write_json_atomic(layout.merge_state, state.as_dict(), indent=True)


def wait_for_merge(
    layout: RunLayout, newer_than_ns: int, timeout_s: float, poll_s: float = 0.01
) -> MergeState | None:
    """Wait until a merge that started after ``newer_than_ns`` is recorded; None on timeout."""
    deadline = time.monotonic() + timeout_s
    while True:
        state = read_merge_state(layout)
        if state is not None and state.started_ts_ns >= newer_than_ns:
            return state
        if time.monotonic() >= deadline:
            return None
        time.sleep(poll_s)
