"""The end of one rank's run: its done marker, and the merge, which never runs in training.

After writing ``journal/rank<r>.done``, a rank looks whether every rank 0..world_size-1 has
ended (a done marker, or ``rank<r>.lost`` for a rank that died without ``end_run``). If not, it
returns at once. If so, it is the last, and in merge mode ``auto`` it waits (at most
``merge_wait_s``) for the merge: the embedded sidecar's, when the sidecar's ready file said it
merges and the sidecar still runs; otherwise that of a detached ``python -m yprov_hpc.finalize
RUN_DIR --by "rank N" --if-stale`` process it starts itself (its output: ``journal/merge.log``).
In mode ``job`` a batch script merges and nobody waits; in mode ``off`` nothing merges by itself
(``yprov merge RUN_DIR``). See ``yprov_hpc.finalize`` for why merges never overlap.
"""

from __future__ import annotations

import logging
import os
import re
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from yprov_hpc.core.atomic import write_json_atomic
from yprov_hpc.core.layout import RunLayout
from yprov_hpc.core.untrusted import read_small_json
from yprov_hpc.rank.sender import SenderStats
from yprov_hpc.wire.records import MAX_WORLD_SIZE

if TYPE_CHECKING:
    import subprocess

    from yprov_hpc.core.config import Config
    from yprov_hpc.core.merge_state import MergeState
    from yprov_hpc.rank.discovery import Placement
    from yprov_hpc.rank.sidecar_client import SidecarInfo

__all__ = [
    "Ended",
    "RunReport",
    "conclude",
    "directory_id",
    "done_marker",
    "ended_ranks",
    "finish",
    "run_is_complete",
    "say",
]

RunStatus = str  # "finished" | "failed" | "killed" | "interrupted" | "exited without end_run"

log = logging.getLogger("yprov_hpc")

_MARKER = re.compile(r"rank(0|[1-9][0-9]{0,6})\.(done|lost)", re.ASCII)
_MAX_MARKER_BYTES = 1 << 16
WAIT_SLICE_S = 0.25  # how often the waiting rank checks that its merger is still alive


@dataclass
class RunReport:
    """What ``end_run`` did: where the provenance went, how delivery fared, what went wrong."""

    run_dir: Path
    rank: int
    status: RunStatus
    delivery: SenderStats
    merged: bool = False
    documents: list[Path] = field(default_factory=list)
    collection: Path | None = None
    problems: list[str] = field(default_factory=list)
    merge: str = ""  # who merges the run, when this rank did not wait for it

    def __str__(self) -> str:
        where = self.collection or self.run_dir
        return f"rank {self.rank}: provenance in {where} ({self.status})"


def say(message: str) -> None:
    """One line on stderr for the person running the script; never raises."""
    try:
        sys.stderr.write(f"yprov: {message}\n")
        sys.stderr.flush()
    except (OSError, ValueError, AttributeError):  # stderr closed or missing
        pass


@dataclass(frozen=True)
class Ended:
    """The ranks that have ended: with a done marker, or marked lost; and the newest marker's time."""

    done: frozenset[int]
    lost: frozenset[int]
    newest_ns: int

    def complete(self, world_size: int) -> bool:
        """Whether every rank 0..world_size-1 has a done or a lost marker."""
        ended = self.done | self.lost
        return len(ended) >= world_size and all(r in ended for r in range(world_size))


def ended_ranks(layout: RunLayout) -> Ended:
    """The done and lost markers in the run's journal directory (one listing, no file reads)."""
    done: set[int] = set()
    lost: set[int] = set()
    newest = 0
    try:
        entries = list(os.scandir(layout.journal_dir))
    except OSError:
        return Ended(frozenset(), frozenset(), 0)
    for entry in entries:
        match = _MARKER.fullmatch(entry.name)
        if match is None:
            continue
        (done if match.group(2) == "done" else lost).add(int(match.group(1)))
        try:
            newest = max(newest, entry.stat(follow_symlinks=False).st_mtime_ns)
        except OSError:
            continue
    return Ended(frozenset(done), frozenset(lost), newest)


def _marker_world_size(path: Path) -> int:
    data = read_small_json(path, _MAX_MARKER_BYTES)
    size = data.get("world_size") if isinstance(data, dict) else None
    return size if type(size) is int and 1 <= size <= MAX_WORLD_SIZE else 0


def run_is_complete(layout: RunLayout) -> bool:
    """Whether the directory holds an ended run: every rank of the world size its done markers
    name has ended (a run that is still going, or was never started, is not complete)."""
    ended = ended_ranks(layout)
    if not ended.done:
        return False
    world = max(_marker_world_size(layout.done_marker(r)) for r in sorted(ended.done)[:8])
    return world > 0 and ended.complete(world)


def _spawn_finalize(layout: RunLayout, rank: int, problems: list[str]) -> subprocess.Popen[bytes] | None:
    import subprocess  # here: `import yprov_hpc` need not pay for it

    cmd = [sys.executable, "-m", "yprov_hpc.finalize", str(layout.root), "--by", f"rank {rank}", "--if-stale"]
    here = str(Path(__file__).resolve().parents[2])  # where this yprov_hpc is importable from
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, (here, os.environ.get("PYTHONPATH"))))}
    try:
        with open(layout.merge_log, "ab") as out:
            return subprocess.Popen(  # detached: it finishes the merge even if this process exits
                cmd,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                close_fds=True,
                env=env,
            )
    except OSError as exc:
        problems.append(f"could not start the merge process ({exc}); run: yprov merge {layout.root}")
        return None


def _wait(
    layout: RunLayout, since_ns: int, wait_s: float, sidecar: SidecarInfo | None, report: RunReport
) -> MergeState | None:
    """Wait for a merge recorded after ``since_ns``; start a merge process if the sidecar that
    was to merge dies first. None on timeout or when the merge process failed without a record."""
    from yprov_hpc.core.merge_state import read_merge_state, wait_for_merge  # only the last rank needs them

    deadline = time.monotonic() + wait_s
    proc = None if sidecar is not None else _spawn_finalize(layout, report.rank, report.problems)
    while True:
        left = deadline - time.monotonic()
        state = wait_for_merge(layout, since_ns, max(0.0, min(WAIT_SLICE_S, left)))
        if state is not None or left <= 0:
            return state
        if sidecar is not None and not sidecar.alive():
            state = wait_for_merge(layout, since_ns, 0.0)
            if state is not None:
                return state
            say("the sidecar stopped before merging; starting a merge process")
            sidecar, proc = None, _spawn_finalize(layout, report.rank, report.problems)
        if proc is not None and proc.poll() is not None:
            state = wait_for_merge(layout, since_ns, 0.0)
            if state is None and proc.returncode == 0:  # skipped: the journals were merged already
                state = read_merge_state(layout)
            if state is None:
                report.problems.append(
                    f"the merge process failed (see {layout.merge_log}); run: yprov merge {layout.root}"
                )
            return state
        if proc is None and sidecar is None:
            return None


def _take(report: RunReport, layout: RunLayout, state: MergeState, world_size: int) -> None:
    report.merged = state.ok
    report.documents = [p for p in map(layout.rank_document, range(world_size)) if p.exists()]
    report.collection = layout.root / state.collection if state.collection else None
    report.problems.extend(state.problems)


def conclude(
    report: RunReport,
    layout: RunLayout,
    world_size: int,
    mode: str,
    wait_s: float,
    sidecar: SidecarInfo | None,
) -> None:
    """After this rank's done marker: return at once, or, on the last rank in mode "auto", see
    the run merged outside this process and put what the merge recorded into ``report``."""
    if mode == "job":
        report.merge = "the batch script merges the run (YPROV_MERGE=job)"
        return
    if mode == "off":
        report.merge = f"merge off: run yprov merge {layout.root}"
        return
    ended = ended_ranks(layout)
    if not ended.complete(world_size):
        report.merge = "the last rank to end merges the run"
        return
    lost = sorted(ended.lost - ended.done)
    if lost:
        names = ", ".join(map(str, lost[:20])) + (" ..." if len(lost) > 20 else "")
        say(f"rank(s) {names} died without end_run (marked lost); what they delivered is merged")
    merger = sidecar if sidecar is not None and sidecar.merges and sidecar.alive() else None
    say(f"merging {world_size} rank(s) ({'by the sidecar' if merger else 'by a merge process'}) ...")
    started, known = time.monotonic(), len(report.problems)
    state = _wait(layout, ended.newest_ns, wait_s, merger, report)
    if state is None and len(report.problems) > known:  # the merger failed: said in problems
        report.merge = f"not merged: run yprov merge {layout.root}"
        say(report.problems[-1])
        return
    if state is None:
        report.problems.append(f"the merge did not finish within {wait_s:g} s")
        say(
            f"the merge is not done after {time.monotonic() - started:.1f} s; the output will appear in "
            f"{layout.root} (progress: {layout.merge_log}); `yprov merge {layout.root}` makes it now"
        )
        report.merge = "a merge process is still merging the run"
        return
    _take(report, layout, state, world_size)
    where = report.collection or layout.root
    say(f"merged {state.ranks} rank(s) in {time.monotonic() - started:.1f} s: {where}")


def directory_id(path: Path) -> tuple[int, int] | None:
    """(device, inode) of a directory, without following a symlink; None if it is not there."""
    try:
        st = os.lstat(path)
    except OSError:
        return None
    return (st.st_dev, st.st_ino)


def done_marker(
    report: RunReport, placement: Placement, stream: int, end_ns: int, flags: dict[str, bool]
) -> dict[str, Any]:
    """What ``journal/rank<r>.done`` says: who ended, how, when, and how delivery fared."""
    return {
        "rank": report.rank,
        "status": report.status,
        "world_size": placement.world_size,
        "node": placement.node,
        "stream": stream,
        "ended_ts_ns": end_ns,
        "delivery": report.delivery.as_dict(),
        **flags,
    }


def _delivery_problems(report: RunReport, config: Config, root_id: tuple[int, int] | None) -> bool:
    """Say what went wrong with delivery and the run directory; False if the directory is gone."""
    stats = report.delivery
    if stats.events_spilled and config.sidecar != "off":
        report.problems.append(
            f"{stats.events_spilled} events went to the spool (sidecar slow or gone); "
            "they are merged from there"
        )
    lost = int(getattr(stats, "events_lost", 0) or 0)  # counted by Senders that track it
    if lost:
        report.problems.append(
            f"{lost} events could not be kept (the buffer past its hard cap, a failed spool, or an"
            " event that could not be encoded: see the log)"
        )
    refused = int(getattr(stats, "events_refused", 0) or 0)
    if refused:
        reasons = "; ".join(str(r) for r in list(getattr(stats, "refusals", []) or [])[:3])
        report.problems.append(f"{refused} events were refused by the sidecar as malformed ({reasons})")
    if root_id is not None and directory_id(report.run_dir) == root_id:
        return True
    acked = max(0, stats.events - stats.events_spilled)
    message = (
        f"the run directory {report.run_dir} was deleted or replaced during the run: "
        f"{acked} events acknowledged by the sidecar went to a journal that no longer exists, "
        "and nothing of this rank can be merged"
    )
    log.error("yprov: rank %d: %s", report.rank, message)
    report.problems.append(message)
    report.merge = "not merged: the run directory is gone"
    return False


def finish(
    report: RunReport,
    layout: RunLayout,
    config: Config,
    marker: dict[str, Any],
    sidecar: SidecarInfo | None,
    root_id: tuple[int, int] | None,
) -> None:
    """After delivery: check the run directory, write the done marker (atomically), then
    ``conclude``. Never raises: every problem is logged as a warning and kept in ``report``."""
    try:
        if not _delivery_problems(report, config, root_id):
            return
        try:
            write_json_atomic(layout.done_marker(report.rank), marker)
        except OSError as exc:
            report.problems.append(
                f"could not write the done marker {layout.done_marker(report.rank)} ({exc}); "
                f"what was delivered is in the journals: run yprov merge {layout.root} once the disk has room"
            )
            report.merge = f"not merged: run yprov merge {layout.root}"
        else:
            conclude(report, layout, int(marker["world_size"]), config.merge, config.merge_wait_s, sidecar)
    except Exception as exc:  # the end of a run must not raise into the training script
        log.exception("yprov: rank %d: end_run failed", report.rank)
        report.problems.append(
            f"end_run failed ({type(exc).__name__}: {exc}); run: yprov merge {layout.root}"
        )
    for problem in report.problems:
        log.warning("yprov: rank %d: %s", report.rank, problem)
