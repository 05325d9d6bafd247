"""The sidecar's view of the ranks it serves: who said hello and bye, which processes are gone.

Everything here comes from batches, so it is bounded whatever they claim: a hello counts only
from a rank in ``[0, world_size)`` of its own claimed world, at most ``MAX_TRACKED_RANKS`` ranks
are tracked, and hello fields were checked by ``decode_event`` before the batch was journaled.

A rank whose process is gone (exited, killed, or a zombie) without saying bye is *lost*: the
sidecar writes ``journal/rank<r>.lost`` (atomic JSON, see docs/event-protocol.md) unless the
rank's done marker is there, so that the merge reports it as lost and the survivors can tell.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any

import psutil

from yprov_hpc.core.atomic import write_json_atomic
from yprov_hpc.core.layout import RunLayout
from yprov_hpc.wire.records import BatchHeader, Kind

log = logging.getLogger("yprov_daemon")

MAX_TRACKED_RANKS = 4096  # ranks one sidecar serves (one node's); later hellos are counted, not kept
_PROC_KEYS = ("cuda_visible_devices", "cuda_device")

__all__ = ["MAX_TRACKED_RANKS", "RankState", "RankTable"]


@dataclass
class RankState:
    """One rank, as its hello and bye told it."""

    rank: int
    pid: int | None
    world_size: int
    local_world_size: int | None
    stream: int  # the stream of the batch that carried the hello (the rank's own logger)
    hello_ts_ns: int
    process: psutil.Process | None = None
    last_seq: int | None = None  # the last sequence number journaled for that stream
    said_bye: bool = False
    lost: bool = False

    @property
    def ended(self) -> bool:
        return self.said_bye or self.lost


class RankTable:
    """Hello/bye bookkeeping, liveness of the rank processes, lost markers."""

    def __init__(self, layout: RunLayout, node: str) -> None:
        self.layout = layout
        self.node = node
        self.ranks: dict[int, RankState] = {}
        self.procs: dict[int, dict[str, Any]] = {}  # replaced whole, never mutated: samplers read it
        self.ignored_hellos = 0
        self.byes = 0

    def track(self, header: BatchHeader, events: list[list[Any]]) -> None:
        """Note the hellos and byes of one journaled batch, and its last sequence number."""
        state = self.ranks.get(header.rank)
        if state is not None and header.stream == state.stream:
            state.last_seq = header.seq_end
        for event in events:
            kind = event[0]
            if kind == Kind.HELLO:
                self._hello(header, event[1], event[2])
            elif kind == Kind.BYE:
                known = self.ranks.get(header.rank)
                # only the process that said the rank's hello ends the rank (not a forked child)
                if known is not None and event[2].get("pid") == known.pid:
                    known.said_bye = True
                    self.byes += 1

    def _hello(self, header: BatchHeader, ts_ns: int, info: dict[str, Any]) -> None:
        if info.get("forked"):  # a forked child is not the rank
            return
        rank = header.rank
        world = info.get("world_size", 1)
        local = info.get("local_world_size")
        if not 0 <= rank < world or (rank not in self.ranks and len(self.ranks) >= MAX_TRACKED_RANKS):
            self.ignored_hellos += 1
            if self.ignored_hellos == 1:
                log.warning(
                    "ignoring a hello of rank %d (world size %d, %d ranks known)",
                    rank,
                    world,
                    len(self.ranks),
                )
            return
        pid = info.get("pid")
        state = RankState(rank, pid, world, local, header.stream, ts_ns, last_seq=header.seq_end)
        state.process = _process(pid)
        self.ranks[rank] = state
        if pid is not None:
            local_rank = info.get("local_rank")
            proc: dict[str, Any] = {"pid": pid, "local_rank": rank if local_rank is None else local_rank}
            proc.update((key, info[key]) for key in _PROC_KEYS if key in info)
            self.procs = {**self.procs, rank: proc}

    @property
    def world_size(self) -> int:
        """The world the ranks claim (the largest claim); 0 before any hello."""
        return max((s.world_size for s in self.ranks.values()), default=0)

    def _expected_here(self) -> int:
        return max(s.local_world_size or s.world_size for s in self.ranks.values())

    def all_said_bye(self) -> bool:
        """Every rank this node expects said hello, and each said bye."""
        ranks = self.ranks.values()
        return (
            bool(self.ranks) and len(self.ranks) >= self._expected_here() and all(s.said_bye for s in ranks)
        )

    def all_ended(self) -> bool:
        """Every rank that said hello said bye or is lost (its process is gone)."""
        return bool(self.ranks) and all(s.ended for s in self.ranks.values())

    def unknown_pids(self) -> bool:
        """Some rank that has not ended gave no pid, so its liveness cannot be checked."""
        return any(s.pid is None and not s.ended for s in self.ranks.values())

    def check_processes(self) -> list[int]:
        """Mark the ranks whose process is gone without bye as lost (writing their markers)."""
        lost = []
        for state in self.ranks.values():
            if state.ended or state.pid is None or _alive(state.process):
                continue
            state.lost = True
            lost.append(state.rank)
            self._write_lost(state)
        if lost:
            self.procs = {r: p for r, p in self.procs.items() if r not in lost}
        return lost

    def _write_lost(self, state: RankState) -> None:
        layout = self.layout
        path = layout.lost_marker(state.rank)
        if layout.done_marker(state.rank).exists() or path.exists():
            return
        marker = {
            "rank": state.rank,
            "pid": state.pid,
            "node": self.node,
            "stream": state.stream,
            "detected_ts_ns": time.time_ns(),
            "last_seq": state.last_seq,
        }
        try:
            write_json_atomic(path, marker)
        except OSError as exc:
            log.error("rank %d died without bye; cannot write %s: %s", state.rank, path, exc)
            return
        log.warning(
            "rank %d (pid %s) died without bye; its events up to seq %s are journaled; wrote %s",
            state.rank,
            state.pid,
            state.last_seq,
            path.name,
        )


def _process(pid: int | None) -> psutil.Process | None:
    """The rank's process (``is_running`` later tells a reused pid apart), or None if it is gone."""
    if pid is None:
        return None
    try:
        return psutil.Process(pid)
    except psutil.Error:
        return None


def _alive(proc: psutil.Process | None) -> bool:
    """Running, the same process (not a reused pid), and not a zombie."""
    if proc is None:
        return False
    try:
        return bool(proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE)
    except psutil.Error:
        return False
