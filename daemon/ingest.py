"""Journal-then-ack: the one policy by which a batch becomes acknowledged.

``JournalSink`` owns one journal file for the sidecar (its node journal) and for the aggregator
(one copy per node): frames are appended whole; a failed append (a full disk, a quota, an I/O
error) leaves nothing in the file, is counted and logged (loudly once, then at most once a
minute), and is reported to the caller, which does not ack. A journal whose file vanished
(deleted, or its directory removed) is detected before anything is acked, reported, and
re-opened at its path as soon as that is possible.

``BatchIngest`` is the sidecar's drain of its ROUTER socket: every batch is checked before it is
journaled (header, body, every event); a bad batch is refused with a reason (a nack) and never
journaled; the work of one drain is bounded by messages, bytes and time, so that no message
stalls the loop for long; then the journal is committed and the journaled batches are acked.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from operator import itemgetter
from pathlib import Path
from typing import Any

import zmq

from yprov_hpc.core.errors import DecodeError
from yprov_hpc.wire.blocks import check_items
from yprov_hpc.wire.codec import MAX_MESSAGE_BYTES, decode_body, decode_header, encode_ack, encode_nack
from yprov_hpc.wire.journal import MAX_GROUP_FRAMES, JournalWriter
from yprov_hpc.wire.records import NODE_RANK, BatchHeader, Kind

log = logging.getLogger("yprov_daemon")

DRAIN_MAX = 64  # messages handled per drain before committing and acking (acks flow while senders refill)
DRAIN_MAX_BYTES = 64 << 20  # ... or this many bytes received
DRAIN_MAX_S = 0.05  # ... or this long
SOCKET_MAX_MESSAGE_BYTES = MAX_MESSAGE_BYTES + (64 << 10)  # zmq.MAXMSGSIZE: larger parts cut the peer off
LOG_EVERY_S = 60.0  # a lasting journal failure is logged at most this often
REOPEN_RETRY_S = 0.5  # a journal that cannot be opened is tried again after this long
LOGGED_REASONS = 3  # the first few malformed or refused messages are logged, the rest counted

__all__ = ["BatchIngest", "IngestStats", "JournalSink", "array_count"]


class JournalSink:
    """One journal file with the journal-then-ack policy (see the module docstring)."""

    def __init__(
        self, path: Path, what: str, open_writer: Callable[[Path], JournalWriter] = JournalWriter
    ) -> None:
        self.path = path
        self.what = what
        self._open_writer = open_writer  # a seam for tests that need a disk that fails
        self.failed_writes = 0  # appends that did not reach the journal
        self.outages = 0  # times the journal went from writable to failing
        self.vanished = 0  # times the file was found deleted or replaced
        self.lost_frames = 0  # frames not acked because the journal vanished under them
        self._writer: JournalWriter | None = None
        self._retry_at = 0.0
        self._failing_since: float | None = None
        self._last_log = 0.0
        self._pending = 0
        self._group_lost = False  # the file vanished during this group: ack none of it
        self._open()

    def _open(self) -> JournalWriter | None:
        if self._writer is None and time.monotonic() >= self._retry_at:
            try:
                self._writer = self._open_writer(self.path)
            except OSError as exc:
                self._retry_at = time.monotonic() + REOPEN_RETRY_S
                self._failed(exc, "cannot open")
        return self._writer

    def append(self, header: bytes, body: bytes) -> bool:
        """Append one frame; False when it is not in the journal (then do not ack it)."""
        return self.append_many([(header, body)]) == 1

    def append_many(self, frames: list[tuple[bytes, bytes]]) -> int:
        """Append frames in groups of at most ``MAX_GROUP_FRAMES``, one gathering write a group
        (the cost per frame of a write is most of a small batch's); return how many of the first
        frames are in the journal (a group that fails is in it not at all, nor are the next)."""
        done = 0
        for first in range(0, len(frames), MAX_GROUP_FRAMES):
            group = frames[first : first + MAX_GROUP_FRAMES]
            writer = self._open()
            if writer is None:
                self.failed_writes += len(frames) - done
                return done
            try:
                writer.append_many(group)
            except OSError as exc:
                self.failed_writes += len(frames) - done
                self._failed(exc, "cannot write")
                if writer.vanished():
                    stale = self._pending  # frames since the last commit: in a file that is gone
                    self.lost_frames += stale
                    self._pending = 0
                    self._lost_file()
                    self._group_lost = stale > 0  # only their commit is refused, not a later one
                return done
            self._pending += len(group)
            done += len(group)
        return done

    def commit(self) -> bool:
        """True when the frames appended since the last commit are in the file at ``path``
        (checked with two ``stat`` calls); False when that file vanished (then ack none of them)."""
        pending, self._pending = self._pending, 0
        lost, self._group_lost = self._group_lost, False
        writer = self._writer
        if lost:
            self.lost_frames += pending
            return False
        if writer is None or not pending:
            return writer is not None or not pending
        if writer.vanished():
            self.lost_frames += pending
            self._lost_file()
            self._group_lost = False  # this group is the one lost; the next starts clean
            return False
        if self._failing_since is not None:
            log.warning(
                "%s %s is writable again after %.0f s (%d writes failed in all)",
                self.what,
                self.path,
                time.monotonic() - self._failing_since,
                self.failed_writes,
            )
            self._failing_since = None
        return True

    def _lost_file(self) -> None:
        self.vanished += 1
        log.error(
            "%s %s was deleted or replaced under the sidecar: nothing written since the last check "
            "is acked; re-opening it at its path",
            self.what,
            self.path,
        )
        self._close_writer()
        self._group_lost = True
        self._retry_at = 0.0

    def _failed(self, exc: OSError, doing: str) -> None:
        now = time.monotonic()
        if self._failing_since is None:
            self._failing_since = self._last_log = now
            self.outages += 1
            log.error(
                "%s %s on %s (%s): acking nothing that is not written; the senders keep their "
                "batches (ranks resend, then spill to their own spools); node samples are lost "
                "until this clears",
                doing,
                self.what,
                self.path,
                exc,
            )
        elif now - self._last_log >= LOG_EVERY_S:
            self._last_log = now
            log.error(
                "%s %s: still failing (%d writes failed so far): %s",
                self.what,
                self.path,
                self.failed_writes,
                exc,
            )

    def _close_writer(self) -> None:
        writer, self._writer = self._writer, None
        if writer is not None:
            writer.close()

    def sync(self) -> None:
        """fsync the journal (best effort: a failure is logged by the next append)."""
        if self._writer is not None:
            with contextlib.suppress(OSError):
                self._writer.sync()

    def close(self) -> None:
        """Sync and close; idempotent."""
        self._close_writer()


def array_count(data: bytes) -> int | None:
    """The item count of the msgpack array that ``data`` starts with (None if it is no array),
    read from its first bytes: checked against the header before any per-event work."""
    if not data:
        return None
    first = data[0]
    if 0x90 <= first <= 0x9F:
        return first & 0x0F
    if first == 0xDC and len(data) >= 3:
        return int.from_bytes(data[1:3], "big")
    if first == 0xDD and len(data) >= 5:
        return int.from_bytes(data[1:5], "big")
    return None


_SAMPLE = int(Kind.SAMPLE)
_kind_of = itemgetter(0)
_NOT_IN_NODE_STREAMS = frozenset(int(k) for k in Kind if k != Kind.SAMPLE)


def _not_samples(events: list[Any]) -> str | None:
    """Why a node stream's (checked) body is refused: it holds an event of a kind other than
    SAMPLE (the merge reads a node stream for its samples only; a kind this version does not
    know is a newer writer's, journaled as it is), or None."""
    for i, ev in enumerate(events):
        if ev[0] in _NOT_IN_NODE_STREAMS:  # checked: each item is a non-empty array of an int kind
            return f"event {i}: a node stream (rank {NODE_RANK}) carries SAMPLE events only"
    return None


def _samples(events: list[Any]) -> str | None:
    """Why a rank stream's (checked) body is refused: it holds a SAMPLE event (a node's own
    event: the merge reads a rank's stream for the rank's events), or None."""
    kinds = list(map(_kind_of, events))  # checked: each item is a non-empty array of an int kind
    if _SAMPLE not in kinds:
        return None
    where = kinds.index(_SAMPLE)
    return f"event {where}: a SAMPLE event belongs to a node stream (rank {NODE_RANK}), not a rank's"


@dataclass
class IngestStats:
    """What the drains saw."""

    batches: int = 0  # journaled and acked
    events: int = 0
    bytes_journaled: int = 0
    malformed: int = 0  # not a batch at all: dropped without a reply
    refused: int = 0  # a batch that breaks the schema: refused with a reason, not journaled
    not_journaled: int = 0  # good batches the journal could not take: no reply (the rank resends)


OnBatch = Callable[[BatchHeader, list[list[Any]], bytes, bytes], None]


class BatchIngest:
    """The sidecar's drain: check, journal, commit, then ack (or refuse with a reason)."""

    def __init__(self, sink: JournalSink, on_batch: OnBatch) -> None:
        self.sink = sink
        self.stats = IngestStats()
        self._on_batch = on_batch
        self.last_message = time.monotonic()

    def drain(self, sock: Any) -> None:
        """Handle what has arrived, within ``DRAIN_MAX`` messages, bytes and seconds: check each
        batch, journal the good ones together, commit, then ack them."""
        deadline = time.monotonic() + DRAIN_MAX_S
        received = 0
        good: list[tuple[bytes, BatchHeader, list[list[Any]], bytes, bytes]] = []
        replies: list[tuple[bytes, bytes]] = []
        for _ in range(DRAIN_MAX):
            try:
                frames = sock.recv_multipart(flags=zmq.NOBLOCK)
            except zmq.Again:
                break
            received += len(frames[-1])  # the body is nearly all of it
            self._one(frames, good, replies)
            if received >= DRAIN_MAX_BYTES or time.monotonic() >= deadline:
                break
        journaled = good[: self.sink.append_many([(g[3], g[4]) for g in good])] if good else []
        self.stats.not_journaled += len(good) - len(journaled)
        if journaled:
            self.last_message = time.monotonic()
            if self.sink.commit():
                for identity, header, events, header_bytes, body_bytes in journaled:
                    self.stats.batches += 1
                    self.stats.events += header.n_events
                    self.stats.bytes_journaled += len(header_bytes) + len(body_bytes)
                    self._on_batch(header, events, header_bytes, body_bytes)
                    replies.append((identity, encode_ack(header.stream, header.seq_start, header.n_events)))
            else:
                self.stats.not_journaled += len(journaled)
        for identity, reply in replies:
            # a reply that cannot go out: the rank resends (an ack) or spills; nothing is lost
            with contextlib.suppress(zmq.ZMQError):
                sock.send_multipart([identity, reply], flags=zmq.NOBLOCK)

    def _one(
        self,
        frames: list[bytes],
        good: list[tuple[bytes, BatchHeader, list[list[Any]], bytes, bytes]],
        replies: list[tuple[bytes, bytes]],
    ) -> None:
        if len(frames) != 3:
            self._malformed(f"{len(frames)} frames, expected identity, header, body")
            return
        identity, header_bytes, body_bytes = frames
        try:
            header = decode_header(header_bytes)
        except DecodeError as exc:
            self._malformed(exc.reason)
            return
        events = self._vet(header, body_bytes)
        if isinstance(events, str):
            reason = events
            self.stats.refused += 1
            if self.stats.refused <= LOGGED_REASONS:
                log.warning("refused a batch of rank %d (stream %d): %s", header.rank, header.stream, reason)
            replies.append((identity, encode_nack(header.stream, header.seq_start, header.n_events, reason)))
            return
        good.append((identity, header, events, header_bytes, body_bytes))  # journaled by drain

    @staticmethod
    def _vet(header: BatchHeader, body: bytes) -> list[list[Any]] | str:
        """The batch's events, or the reason it is refused. The cheap checks come first: size,
        then the body's event count against the header's, then decoding and every event."""
        if len(body) > MAX_MESSAGE_BYTES:
            return f"body of {len(body)} bytes is over the limit of {MAX_MESSAGE_BYTES}"
        count = array_count(body)
        if count is None:
            return "body is not a msgpack array"
        if count != header.n_events and (header.version < 3 or count > header.n_events):
            # since version 3 a metric block is one item for many events: never more items
            return f"body holds {count} events, header says {header.n_events} (refused before decoding)"
        try:
            events = decode_body(body, header)
        except DecodeError as exc:
            return exc.reason
        reason = check_items(events)
        if reason is None:
            reason = _not_samples(events) if header.rank == NODE_RANK else _samples(events)
        return events if reason is None else reason

    def _malformed(self, reason: str) -> None:
        self.stats.malformed += 1
        if self.stats.malformed <= LOGGED_REASONS:
            log.warning("dropped a malformed message: %s", reason)
