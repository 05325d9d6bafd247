"""When a sidecar stops by itself, and what the embedded one does on its way out.

Rules (docs/event-protocol.md, "Sidecar lifetime"):
- any sidecar stops when its run directory disappears (checked every ``PID_CHECK_S``);
- an embedded sidecar stops ``EXIT_GRACE_S`` after every rank of its node said bye,
  ``RANKS_GONE_S`` after every known rank process is gone (zombies count as gone), or when no
  rank said hello (or, with ranks whose pid is unknown, nothing arrived) for ``idle_timeout_s``;
- so does any sidecar once the job is ending (a SIGTERM it defers, ``end_requested``), and at
  once if no rank of its node said hello.
When an embedded sidecar stops because its ranks ended, and every rank of the world has a done
or lost marker, it runs the run's final merge (``yprov_hpc.finalize.final_merge``) after
closing its journal, unless a rank claimed or completed the merge already; a merge
failure is logged, never raised.
"""

from __future__ import annotations

import contextlib
import importlib
import logging
import os
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from yprov_hpc.core.layout import RunLayout
from yprov_hpc.core.untrusted import read_small_json

from .rank_table import RankTable

log = logging.getLogger("yprov_daemon")

PID_CHECK_S = 0.5
SETTLE_CHECK_S = 0.01  # how often the stop is checked once every rank said bye or ended
EXIT_GRACE_S = 1.0  # keep answering after the last bye: the last acks are still queued
RANKS_GONE_S = 3.0  # every known rank process gone for this long: stop
MARKER_WAIT_S = 5.0  # how long to wait for the done markers of ranks that said bye

__all__ = ["EXIT_GRACE_S", "PID_CHECK_S", "RANKS_GONE_S", "Lifetime", "final_merge", "prewarm_merge"]


def _dir_id(path: Path) -> tuple[int, int] | None:
    try:
        st = os.stat(path, follow_symlinks=False)
    except OSError:
        return None
    return st.st_dev, st.st_ino


@dataclass
class Lifetime:
    """Decides when the sidecar stops; ``check`` is called on every loop turn."""

    layout: RunLayout
    embedded: bool
    idle_timeout_s: float
    started: float = field(default_factory=time.monotonic)
    ranks_ended: bool = False  # the stop came from the ranks (every one said bye or was lost)
    _dir: tuple[int, int] | None = None
    _last_check: float = 0.0
    _byes_seen: int = 0
    _since: float | None = None
    ending: bool = False  # a deferred SIGTERM: stop as an embedded sidecar would, once the ranks end
    # the job's aggregator: a stop by the rank rules also waits until the other nodes' sidecars
    # have stopped (their ready files gone), or nothing was forwarded to it for this long (a
    # forwarder killed -9 leaves its ready file); None: not an aggregator
    forwarders_quiet_s: float | None = None
    own_ready: Path | None = None  # this sidecar's ready file (the others' are the forwarders')
    _held: bool = False  # the rank rules say stop, the forwarders not yet: check at the normal pace

    def __post_init__(self) -> None:
        self._dir = _dir_id(self.layout.journal_dir)

    def end_requested(self) -> None:
        """The job is ending (a SIGTERM the sidecar defers): from now on it stops by the
        embedded rules, or at once if no rank said hello; the next check comes at once.
        (Called from a signal handler: sets fields only.)"""
        self.ending, self._last_check = True, 0.0

    def wait_ms(self, idle_ms: int) -> int:
        """How long the loop may wait for a message: ``idle_ms``, or SETTLE_CHECK_S while the
        stop is settling (every rank said bye or ended: the done markers are due any moment)."""
        return idle_ms if self._since is None or self._held else int(SETTLE_CHECK_S * 1000)

    def check(
        self, table: RankTable, last_message: float, now: float, last_forwarded: float | None = None
    ) -> str | None:
        """The reason to stop now, or None to keep serving. ``last_forwarded``: when the job's
        aggregator last heard from another node's sidecar (``forwarders_quiet_s``)."""
        every = SETTLE_CHECK_S if self._since is not None and not self._held else PID_CHECK_S
        if now - self._last_check < every and table.byes == self._byes_seen:
            return None  # checked at most every PID_CHECK_S (often while settling), at once after a bye
        self._last_check, self._byes_seen = now, table.byes
        here = _dir_id(self.layout.journal_dir)
        if self._dir is None:
            self._dir = here  # not there at start: the first directory seen is the run's
        elif here != self._dir:
            return f"the run directory {self.layout.root} is gone"
        table.check_processes()  # writes the lost markers of ranks that died without bye
        if not (self.embedded or self.ending):
            return None
        reason = self._by_the_ranks(table, last_message, now)
        self._held = False
        if reason is None or self.forwarders_quiet_s is None or last_forwarded is None:
            return reason
        if not self._forwarders_running():
            return f"{reason}; the other nodes' sidecars have stopped"
        if now - last_forwarded >= self.forwarders_quiet_s:
            return f"{reason}; the other nodes' sidecars quiet for {self.forwarders_quiet_s:.0f} s"
        self._held, self.ranks_ended = True, False  # they still forward (samples, at least)
        return None

    def _forwarders_running(self) -> bool:
        """Whether another node's sidecar of this run still has its ready file."""
        try:
            names = [e.name for e in os.scandir(self.layout.journal_dir)]
        except OSError:
            return True  # unknown: the quiet rule decides
        own = self.own_ready.name if self.own_ready is not None else None
        return any(n.startswith("sidecar-") and n.endswith(".json") and n != own for n in names)

    def _by_the_ranks(self, table: RankTable, last_message: float, now: float) -> str | None:
        """The embedded rules (and, once the job is ending, no rank at all)."""
        if not table.ranks and self.ending:
            return "the job is ending and no rank of this node said hello"
        if not table.ranks:
            idle = now - self.started > self.idle_timeout_s
            return f"no rank said hello in {self.idle_timeout_s:.0f} s" if idle else None
        if table.all_said_bye():
            # a rank writes its done marker once its last ack arrived: with every marker there,
            # nothing is left to answer, so stop at once (else keep answering for the grace)
            grace = 0.0 if self._markers_written(table) else EXIT_GRACE_S
            return self._after(now, grace, "every rank said bye")
        if table.all_ended():
            return self._after(now, RANKS_GONE_S, "every rank process ended")
        self._since = None
        if table.unknown_pids() and now - last_message > self.idle_timeout_s:
            return f"nothing arrived in {self.idle_timeout_s:.0f} s"
        return None

    def _markers_written(self, table: RankTable) -> bool:
        try:
            names = {e.name for e in os.scandir(self.layout.journal_dir)}
        except OSError:
            return False
        return all(f"rank{r}.done" in names or f"rank{r}.lost" in names for r in table.ranks)

    def _after(self, now: float, grace_s: float, reason: str) -> str | None:
        if self._since is None:
            self._since = now
        if now - self._since < grace_s:
            return None
        self.ranks_ended = True
        return reason


_prewarm_lock = threading.Lock()
_prewarmed = False


def prewarm_merge() -> None:
    """Import the merge in a background thread (once), so that the final merge starts warm."""
    global _prewarmed
    with _prewarm_lock:
        if _prewarmed:
            return
        _prewarmed = True
    thread = threading.Thread(target=_import_merge, name="yprov-prewarm", daemon=True)
    thread.start()


def _import_merge() -> None:
    # at the lowest priority: this thread must not take CPU from training (per thread on Linux)
    with contextlib.suppress(OSError, AttributeError):
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 19)
    try:
        _arrow_for_the_merge()
        importlib.import_module("yprov_hpc.finalize")
        importlib.import_module("pyarrow.parquet")  # the series writer's
        importlib.import_module("pyarrow.acero")  # the summaries' group_by (30 ms, with compute)
    except ImportError:
        pass  # the merge imports what it needs itself, and reports what is missing
    except Exception as exc:  # the merge will import (and fail) again, and log it there
        log.warning("could not pre-import the merge: %s", exc)


def _arrow_for_the_merge() -> None:
    """pyarrow without its pandas check (0.3-0.5 s of importing pandas that the merge never
    uses): this process only merges. Once per process; under the prewarm lock."""
    with _arrow_lock:
        from yprov_hpc.fold.series import arrow_without_pandas

        arrow_without_pandas()


_arrow_lock = threading.Lock()


def _missing_markers(layout: RunLayout, world_size: int) -> list[int]:
    try:
        names = {e.name for e in os.scandir(layout.journal_dir)}
    except OSError:
        return list(range(world_size))
    return [r for r in range(world_size) if f"rank{r}.done" not in names and f"rank{r}.lost" not in names]


def _merge_mode(layout: RunLayout, world_size: int) -> str:
    """The merge mode the ranks' done markers state ("auto" unless one says otherwise; a marker
    is untrusted: only the known words count)."""
    for rank in range(min(world_size, 64)):  # the ranks of one run share their settings
        data = read_small_json(layout.done_marker(rank))
        mode = data.get("merge") if isinstance(data, dict) else None
        if mode in ("job", "off"):
            return str(mode)
    return "auto"


def final_merge(layout: RunLayout, node: str, world_size: int) -> bool:
    """Merge the run if every rank of the world has a done or lost marker (waiting a little for
    the last ones); True when a merge ran (or was already up to date)."""
    deadline = time.monotonic() + MARKER_WAIT_S
    missing = _missing_markers(layout, world_size)
    while missing and time.monotonic() < deadline:
        time.sleep(0.05)
        missing = _missing_markers(layout, world_size)
    if missing:
        shown = ", ".join(map(str, missing[:10])) + (" ..." if len(missing) > 10 else "")
        log.info(
            "not merging: %d of %d ranks have no done or lost marker (%s)", len(missing), world_size, shown
        )
        return False
    mode = _merge_mode(layout, world_size)
    if mode != "auto":
        log.info("not merging: the ranks' merge mode is %r (a batch script or the user merges)", mode)
        return False
    log.info("merging %d ranks of %s ...", world_size, layout.root.name)
    started = time.monotonic()
    try:
        _arrow_for_the_merge()
        finalize = importlib.import_module("yprov_hpc.finalize")
        done = finalize.final_merge(layout.root, by=f"sidecar {node}", if_stale=True)
    except Exception:  # the merge is the last thing this process does: log it whole, exit cleanly
        log.exception("the final merge failed; run `yprov merge %s` to retry", layout.root)
        return False
    if done.skipped:
        log.info("merged already: the journals are unchanged since the last merge")
    else:
        log.info("merged in %.2f s", time.monotonic() - started)
    return True
