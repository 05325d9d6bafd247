"""The rank's sender: one background thread that owns the ZeroMQ socket.

The training thread only appends event tuples to ``buffer`` (a deque). This thread wakes on
a short timer, cuts the buffer into sequenced batches, sends them to the node's sidecar and
keeps each one until its ack arrives. A batch without an ack is resent once, then spilled to
the rank's own spool file; batches that cannot be sent at all go straight to the spool. The
merge reads journals and spools alike, so every batch is either acked (in the sidecar's
journal) or spilled (in the spool) by the time ``close`` returns. Nothing here raises into
training: problems are counted in ``SenderStats``.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

from yprov_hpc.core.errors import DecodeError
from yprov_hpc.core.layout import RunLayout
from yprov_hpc.wire.codec import decode_ack, encode_batch
from yprov_hpc.wire.journal import JournalWriter
from yprov_hpc.wire.records import Event

log = logging.getLogger("yprov_hpc")

# A batch carries at most this many events (or batch_events if larger). Packing one holds the
# GIL in C for ~0.2 ms; the sender yields the GIL after each, so training never waits longer.
MAX_BATCH_EVENTS = 1024
POLL_S = 0.05


@dataclass
class SenderStats:
    """Delivery counters, reported at end_run and written into the PROV document."""

    events: int = 0
    batches: int = 0
    batches_acked: int = 0
    batches_resent: int = 0
    batches_spilled: int = 0
    events_spilled: int = 0
    send_failures: int = 0
    bad_acks: int = 0
    buffer_overflows: int = 0
    sidecar: str = ""

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class _InFlight:
    header: bytes
    body: bytes
    n_events: int
    sent_at: float
    attempts: int


class Sender:
    """Batches, sends, tracks acks and spills the events of one rank's stream."""

    def __init__(
        self,
        *,
        layout: RunLayout,
        run_id: str,
        rank: int,
        node: str,
        stream: int,
        batch_events: int,
        flush_interval_s: float,
        ack_timeout_s: float,
        max_inflight_batches: int,
        locate: Callable[[], str | None],
        on_connected: Callable[[], None] | None = None,
    ) -> None:
        self.buffer: deque[Event] = deque()
        self.stats = SenderStats()
        self._layout = layout
        self._run_id = run_id
        self._rank = rank
        self._node = node
        self._stream = stream
        self._batch_events = batch_events
        self._max_batch = max(batch_events, MAX_BATCH_EVENTS)
        self._flush_interval_s = flush_interval_s
        self._ack_timeout_s = ack_timeout_s
        self._max_inflight = max_inflight_batches
        self._locate = locate
        self._on_connected = on_connected
        self._seq = 0
        self._inflight: OrderedDict[int, _InFlight] = OrderedDict()
        self._spool: JournalWriter | None = None
        self._lock = threading.Lock()  # guards cutting batches (seq) and the spool
        self._closing = threading.Event()
        self._closed = threading.Event()
        self._degraded = False
        self._end_timeout_s = 10.0
        self._thread = threading.Thread(target=self._run, name="yprov-sender", daemon=True)

    # --- called from the training thread -------------------------------------------------
    def start(self) -> None:
        self._thread.start()

    def relieve(self) -> None:
        """The buffer is over its bound: spill it now rather than grow (rare; does I/O)."""
        self.stats.buffer_overflows += 1
        with self._lock:
            while self.buffer:
                header, body, n = self._cut_batch()
                self._spill(header, body, n)

    def close(self, timeout_s: float) -> SenderStats:
        """Send what is buffered, wait (bounded) for acks, spill the rest; idempotent."""
        self._end_timeout_s = timeout_s
        self._closing.set()
        if self._thread.is_alive():
            self._thread.join(timeout_s + 5.0)
        if not self._closed.is_set():  # the thread could not finish: make the data durable here
            with self._lock:
                for item in list(self._inflight.values()):
                    self._spill(item.header, item.body, item.n_events)
                self._inflight.clear()
                while self.buffer:
                    self._spill(*self._cut_batch())
                if self._spool is not None:
                    self._spool.close()
            self._closed.set()
        return self.stats

    # --- the sender thread ----------------------------------------------------------------
    def _run(self) -> None:
        socket = None
        try:
            endpoint = None
            try:
                endpoint = self._locate()
            except Exception as exc:  # never let discovery kill delivery: fall back to spool
                log.warning("yprov: could not reach or start a sidecar (%s); spooling", exc)
            socket = self._connect(endpoint) if endpoint else None
            if socket is None:
                self._degraded = True
            self._send_buffer(socket)  # what was logged while connecting ships at once
            if self._on_connected is not None:
                self._on_connected()  # e.g. the environment capture, after the first send
            last_flush = time.monotonic()
            while not self._closing.is_set():
                if socket is not None:
                    self._receive_acks(socket, POLL_S)
                else:
                    self._closing.wait(POLL_S)
                now = time.monotonic()
                if len(self.buffer) >= self._batch_events or (
                    self.buffer and now - last_flush >= self._flush_interval_s
                ):
                    self._send_buffer(socket)
                    last_flush = now
                self._check_timeouts(socket, now)
            self._finish(socket)
        except Exception:  # a bug here must not lose data: close() spills what is left
            log.exception("yprov: sender thread failed; remaining events will be spilled")
        finally:
            if socket is not None:
                socket.close(linger=0)

    def _connect(self, endpoint: str) -> Any:
        import zmq

        sock: Any = zmq.Context.instance().socket(zmq.DEALER)
        sock.setsockopt(zmq.LINGER, 0)
        sock.setsockopt(zmq.SNDHWM, self._max_inflight * 2)
        sock.connect(endpoint)
        self.stats.sidecar = endpoint
        return sock

    def _cut_batch(self) -> tuple[bytes, bytes, int]:
        n = min(len(self.buffer), self._max_batch)
        pop = self.buffer.popleft
        events = [pop() for _ in range(n)]
        header, body = encode_batch(
            self._run_id, self._rank, self._node, self._stream, self._seq, events, time.time_ns()
        )
        self._seq += n
        self.stats.events += n
        self.stats.batches += 1
        return header, body, n

    def _send_buffer(self, socket: Any) -> None:
        with self._lock:
            while self.buffer:
                busy = len(self._inflight) >= self._max_inflight
                if socket is not None and busy and not self._degraded:
                    return  # a healthy, busy sidecar: wait for acks; the bounded buffer holds the rest
                header, body, n = self._cut_batch()
                seq_start = self._seq - n
                if socket is None or (self._degraded and self._inflight):
                    self._spill(header, body, n)
                    continue
                if self._send(socket, header, body):
                    self._inflight[seq_start] = _InFlight(header, body, n, time.monotonic(), 1)
                else:
                    self._spill(header, body, n)
                time.sleep(0)  # yield the GIL to the training thread between batches

    def _send(self, socket: Any, header: bytes, body: bytes) -> bool:
        import zmq

        try:
            socket.send_multipart([header, body], flags=zmq.NOBLOCK)
            return True
        except zmq.ZMQError:
            self.stats.send_failures += 1
            return False

    def _receive_acks(self, socket: Any, wait_s: float) -> None:
        import zmq

        if not socket.poll(int(wait_s * 1000), zmq.POLLIN):
            return
        while True:
            try:
                frame = socket.recv(flags=zmq.NOBLOCK)
            except zmq.Again:
                return
            try:
                stream, seq_start, _n = decode_ack(frame)
            except DecodeError:
                self.stats.bad_acks += 1
                continue
            if stream != self._stream:
                self.stats.bad_acks += 1
                continue
            if self._inflight.pop(seq_start, None) is not None:
                self.stats.batches_acked += 1
                self._degraded = False

    def _check_timeouts(self, socket: Any, now: float) -> None:
        if not self._inflight:
            return
        with self._lock:
            for seq_start, item in list(self._inflight.items()):
                if now - item.sent_at < self._ack_timeout_s:
                    break  # ordered by send time
                if item.attempts < 2 and socket is not None and self._send(socket, item.header, item.body):
                    item.attempts += 1
                    item.sent_at = now
                    self._inflight.move_to_end(seq_start)
                    self.stats.batches_resent += 1
                else:
                    del self._inflight[seq_start]
                    self._spill(item.header, item.body, item.n_events)
                    self._degraded = True

    def _spill(self, header: bytes, body: bytes, n_events: int) -> None:
        try:
            if self._spool is None:
                self._spool = JournalWriter(self._layout.spool(self._rank, self._stream))
            self._spool.append(header, body)
            self._spool.flush()
            self.stats.batches_spilled += 1
            self.stats.events_spilled += n_events
        except OSError as exc:  # a full disk: say so loudly, once per failure
            log.error("yprov: could not spill %d events to the spool: %s", n_events, exc)

    def _finish(self, socket: Any) -> None:
        self._send_buffer(socket)
        deadline = time.monotonic() + self._end_timeout_s
        while socket is not None and (self._inflight or self.buffer) and not self._degraded:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            self._receive_acks(socket, min(left, POLL_S))
            self._send_buffer(socket)
            self._check_timeouts(socket, time.monotonic())
        with self._lock:
            for item in self._inflight.values():
                self._spill(item.header, item.body, item.n_events)
            self._inflight.clear()
            while self.buffer:  # appended during the wait by another thread
                self._spill(*self._cut_batch())
            if self._spool is not None:
                self._spool.close()
        self._closed.set()
