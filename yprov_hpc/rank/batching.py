"""How much the rank's buffer may hold, and how it is cut into batches.

The buffer is bounded in bytes (``DEFAULT_MAX_BUFFER_BYTES``). The training thread cannot
measure bytes cheaply, so it compares the buffer's length with an event-count ``limit`` that
the sender derives from the bytes per event it measures on the batches it packs: the packed
size plus the Python objects an event tuple holds in memory. Until the first batches are
measured the estimate is deliberately high (``INITIAL_BYTES_PER_EVENT``), so the first limit
is low rather than optimistic.

Batches are cut by events and by bytes: at most ``max_events`` events and about
``TARGET_BATCH_BYTES`` of body, and never a body over ``MAX_MESSAGE_BYTES`` (the sidecar's
socket refuses those): an oversized batch is split in halves until it fits; a single event
that does not fit alone is returned as ``oversized`` for the spool.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from dataclasses import dataclass
from itertools import repeat, starmap

from yprov_hpc.core.config import DEFAULT_MAX_BUFFER_BYTES
from yprov_hpc.wire.codec import MAX_MESSAGE_BYTES, encode_batch
from yprov_hpc.wire.records import Event

log = logging.getLogger("yprov_hpc")

__all__ = ["DEFAULT_MAX_BUFFER_BYTES", "INITIAL_BYTES_PER_EVENT", "BufferBound", "Cutter", "Piece"]

INITIAL_BYTES_PER_EVENT = 512
# In-memory cost of an event beyond its packed bytes: a 6-item tuple (88 B), a float (24 B),
# a timestamp int (36 B) and a step int (28 B); names and contexts are shared strings.
PY_EVENT_OVERHEAD_BYTES = 176
# The estimate is a running mean over about this many recent events, so one batch of a few
# large params moves it a little, as those few events do the buffer's size.
ESTIMATE_WINDOW_EVENTS = 10_000
# Below this many events of slack over the limit, events are never dropped: the sender needs
# up to a scheduler tick (plus a GIL switch interval) to react to the bound.
HARD_CAP_SLACK_EVENTS = 100_000
TARGET_BATCH_BYTES = 4 << 20


class BufferBound:
    """The byte bound of one buffer, as event counts the training thread can compare with."""

    def __init__(self, max_bytes: int, max_events: int | None = None) -> None:
        if max_bytes < 1:
            raise ValueError(f"max_buffer_bytes must be >= 1, got {max_bytes}")
        self.max_bytes = max_bytes
        self.max_events = max_events
        self.bytes_per_event = float(INITIAL_BYTES_PER_EVENT)
        self.packed_bytes_per_event = float(INITIAL_BYTES_PER_EVENT - PY_EVENT_OVERHEAD_BYTES)

    def observe(self, n_events: int, body_bytes: int) -> None:
        """Fold one packed batch into the bytes-per-event estimate."""
        if n_events < 1:
            return
        packed = body_bytes / n_events
        weight = n_events / (n_events + ESTIMATE_WINDOW_EVENTS)
        self.packed_bytes_per_event += (packed - self.packed_bytes_per_event) * weight
        memory = packed + PY_EVENT_OVERHEAD_BYTES
        self.bytes_per_event += (memory - self.bytes_per_event) * weight

    @property
    def limit(self) -> int:
        """Events the buffer may hold before the sender is asked to relieve it."""
        by_bytes = max(1, int(self.max_bytes // self.bytes_per_event))
        return by_bytes if self.max_events is None else max(1, min(by_bytes, self.max_events))

    @property
    def hard_cap(self) -> int:
        """Events past which new events are dropped (and counted): the sender cannot keep up."""
        limit = self.limit
        return max(2 * limit, limit + HARD_CAP_SLACK_EVENTS)


@dataclass
class Piece:
    """One encoded batch, ready to send or spill."""

    seq_start: int
    header: bytes
    body: bytes
    n_events: int


class Cutter:
    """Pops events off the buffer and packs them into sequenced batches of one stream."""

    def __init__(
        self, run_id: str, rank: int, node: str, stream: int, max_events: int, bound: BufferBound
    ) -> None:
        self._run_id = run_id
        self._rank = rank
        self._node = node
        self._stream = stream
        self._max_events = max_events
        self._bound = bound
        self.next_seq = 0
        self.unencodable = 0  # events that could not be packed: lost, counted, reported
        self.pack_s = 0.0  # wall time spent popping and packing (the GIL is held throughout)

    def batch_size(self, available: int) -> int:
        """How many of ``available`` buffered events the next batch takes."""
        by_bytes = int(TARGET_BATCH_BYTES // max(1.0, self._bound.packed_bytes_per_event))
        return max(1, min(available, self._max_events, by_bytes))

    def cut(self, buffer: deque[Event], n: int) -> tuple[list[Piece], list[Piece]]:
        """Pop ``n`` events and pack them: (batches that fit a message, single events too big)."""
        t0 = time.perf_counter()
        events = list(starmap(buffer.popleft, repeat((), n)))  # a C loop: no bytecode per event
        fits: list[Piece] = []
        oversized: list[Piece] = []
        self._pack(events, fits, oversized)
        self.pack_s += time.perf_counter() - t0
        return fits, oversized

    def _pack(self, events: list[Event], fits: list[Piece], oversized: list[Piece]) -> None:
        seq = self.next_seq
        try:
            header, body = encode_batch(  # trusted: the run's verbs checked every field of its events
                self._run_id, self._rank, self._node, self._stream, seq, events, time.time_ns(), trusted=True
            )
        except Exception as exc:  # a value msgpack cannot pack (a lone surrogate in a file name...)
            if len(events) > 1:  # find the event(s) at fault; the others go on
                half = len(events) // 2
                self._pack(events[:half], fits, oversized)
                self._pack(events[half:], fits, oversized)
                return
            self.unencodable += 1
            if self.unencodable == 1:
                log.error(
                    "yprov: an event of kind %s could not be encoded (%s: %.200s); it is lost and"
                    " counted in events_lost",
                    events[0][0] if events and events[0] else "?",
                    type(exc).__name__,
                    exc,
                )
            return
        if len(body) > MAX_MESSAGE_BYTES and len(events) > 1:
            half = len(events) // 2
            self._pack(events[:half], fits, oversized)
            self._pack(events[half:], fits, oversized)
            return
        self.next_seq += len(events)
        self._bound.observe(len(events), len(body))
        piece = Piece(seq, header, body, len(events))
        (oversized if len(body) > MAX_MESSAGE_BYTES else fits).append(piece)
