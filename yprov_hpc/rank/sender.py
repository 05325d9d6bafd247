"""The rank's sender: one background thread that owns the ZeroMQ socket.

The training thread only appends event tuples to ``buffer`` (a deque) and, when the buffer is
longer than ``limit`` (derived from a byte bound, see ``batching``), calls ``relieve``, which
never blocks: it wakes this thread, and past the hard cap it drops the newest event and
counts it (``events_lost``). This thread wakes on a short tick, cuts the buffer into
sequenced batches once ``batch_events`` are buffered or the flush interval has passed,
sends them to the node's sidecar and keeps each one until its reply arrives. Flow control
(``window``) decides when a batch is resent or spilled to the rank's own spool file: not on
a fixed timeout, but when the sidecar is dead or unreachable. A refused batch is counted and
never resent. The merge reads journals and spools alike, so by the time ``close`` returns
every batch is acked (in the sidecar's journal), spilled (in the spool), refused or counted
as lost. Nothing here raises into training: problems are counted in ``SenderStats``.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any

from yprov_hpc.core.errors import DecodeError
from yprov_hpc.core.layout import RunLayout
from yprov_hpc.rank.batching import DEFAULT_MAX_BUFFER_BYTES, BufferBound, Cutter, Piece
from yprov_hpc.rank.delivery_stats import MAX_REFUSALS_KEPT, SenderStats
from yprov_hpc.rank.spool import Spool
from yprov_hpc.rank.window import Peer, Verdict, Window
from yprov_hpc.wire.codec import decode_reply
from yprov_hpc.wire.records import Event, Kind

log = logging.getLogger("yprov_hpc")

__all__ = ["MAX_BATCH_EVENTS", "Sender", "SenderStats"]

# A batch carries at most this many events (or batch_events if larger). Packing one holds the
# GIL in C for ~0.1 ms; the sender offers the GIL back to training after each.
MAX_BATCH_EVENTS = 1024
_BYE = int(Kind.BYE)
TICK_S = 0.02  # how often the thread looks at the buffer; acks arriving do not cut batches
# close() waits while replies keep coming; it gives up after timeout_s without one, and
# after this many times timeout_s in all.
CLOSE_MAX_FACTOR = 3.0


class Sender:
    """Batches, sends, tracks replies and spills the events of one rank's stream."""

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
        max_buffer_bytes: int = DEFAULT_MAX_BUFFER_BYTES,
        max_buffer_events: int | None = None,
    ) -> None:
        self.buffer: deque[Event] = deque()
        self.stats = SenderStats()
        self._bound = BufferBound(max_buffer_bytes, max_buffer_events)
        self.limit = self._bound.limit  # read by the training thread on every append
        self._hard_cap = self._bound.hard_cap
        self._layout = layout
        self._rank = rank
        self._node = node
        self._stream = stream
        self._batch_events = batch_events
        max_batch = max(batch_events, MAX_BATCH_EVENTS)
        self._cutter = Cutter(run_id, rank, node, stream, max_batch, self._bound)
        self._flush_interval_s = flush_interval_s
        self._ack_timeout_s = ack_timeout_s
        self._max_inflight = max_inflight_batches
        self._window = Window(ack_timeout_s, max_inflight_batches, time.monotonic())
        self._peer: Peer | None = None
        self._locate = locate
        self._on_connected = on_connected
        self._spool = Spool(layout.spool(rank, stream))
        self._lock = threading.Lock()  # guards cutting batches (seq) and the spool
        self._wake = threading.Event()
        self._relief_asked = False
        self._closing = threading.Event()
        self._closed = threading.Event()
        self._degraded = False
        self._dropped = 0  # events dropped at the hard cap, by the training thread
        self._lost_reported = 0
        self._end_timeout_s = 10.0
        self._thread = threading.Thread(target=self._run, name="yprov-sender", daemon=True)

    # --- called from the training thread -------------------------------------------------
    def start(self) -> None:
        self._thread.start()

    def relieve(self) -> None:
        """The buffer is over ``limit``: wake the sender thread, which spills from there. Never
        blocks; past the hard cap the newest event is dropped and counted (``events_lost``)."""
        if len(self.buffer) > self._hard_cap:
            try:
                self.buffer.pop()
                self._dropped += 1  # only this thread writes it
            except IndexError:  # the sender emptied it meanwhile
                pass
        if not self._relief_asked:
            self._relief_asked = True
            self.stats.buffer_overflows += 1
            self._wake.set()

    def close(self, timeout_s: float) -> SenderStats:
        """Send what is buffered, wait (bounded) for replies, spill the rest; idempotent."""
        self._end_timeout_s = timeout_s
        self._closing.set()
        self._wake.set()
        if self._thread.is_alive():
            self._thread.join(timeout_s * CLOSE_MAX_FACTOR + 5.0)
        if not self._closed.is_set():  # the thread could not finish: make the data durable here
            with self._lock:
                self._spill_all_inflight()
                self._spill_buffer(len(self.buffer))
                self._spool.close()
            self._closed.set()
        self._report_lost()
        return self.stats

    # --- the sender thread ----------------------------------------------------------------
    def _run(self) -> None:
        cpu0 = time.thread_time()
        socket = None
        try:
            socket = self._open()
            if self._ending():  # the whole run was logged while connecting: one last batch
                self._connected()
                self._ship(socket)
            else:
                self._ship(socket)  # what was logged while connecting ships at once
                self._connected()  # e.g. the environment capture, after the first send
            self.stats.sender_startup_cpu_s = time.thread_time() - cpu0
            last_cut = time.monotonic()
            while not self._closing.is_set():
                self._wait(socket, TICK_S)
                now = time.monotonic()
                if self._relief_asked:
                    self._relieve_here(socket)
                    last_cut = now
                elif len(self.buffer) >= self._batch_events or (
                    self.buffer and now - last_cut >= self._flush_interval_s
                ):
                    self._ship(socket)
                    self._update_limit()
                    last_cut = now
                self._check_window(socket, now)
                self._report_lost()
            self._finish(socket)
        except Exception:  # a bug here must not lose data: close() spills what is left
            log.exception("yprov: sender thread failed; remaining events will be spilled")
        finally:
            if socket is not None:
                socket.close(linger=0)
            self._update_stats(time.thread_time() - cpu0)

    def _ending(self) -> bool:
        """True when the run's bye is already buffered: a late event after it would reach an
        embedded sidecar that may have stopped (it stops soon after the last bye)."""
        return self._closing.is_set() or bool(self.buffer and self.buffer[-1][0] == _BYE)

    def _connected(self) -> None:
        if self._on_connected is not None:
            try:
                self._on_connected()
            except Exception:  # a failing hook must not stop delivery
                log.exception("yprov: the sender's on_connected hook failed; delivery goes on")

    def _open(self) -> Any:
        endpoint = None
        try:
            endpoint = self._locate()
        except Exception as exc:  # never let discovery kill delivery: fall back to spool
            log.warning("yprov: could not reach or start a sidecar (%s); spooling", exc)
        if not endpoint:
            self._degraded = True
            return None
        import zmq

        sock: Any = zmq.Context.instance().socket(zmq.DEALER)
        sock.setsockopt(zmq.LINGER, 0)
        sock.setsockopt(zmq.SNDHWM, self._max_inflight * 2)
        sock.connect(endpoint)
        self.stats.sidecar = endpoint
        self._peer = Peer(self._layout.sidecar_info(self._node), endpoint)
        self._window.last_reply_at = time.monotonic()
        return sock

    def _wait(self, socket: Any, wait_s: float, *, closing: bool = False) -> None:
        """Sleep one tick, taking replies as they come (they do not end the tick early; a
        relief request or close does, unless ``closing``: then close is what we wait in)."""
        if socket is None:
            self._wake.wait(wait_s)
            self._wake.clear()
            return
        deadline = time.monotonic() + wait_s
        while True:
            if closing:
                if not len(self._window):
                    return  # everything sent is answered: close need not wait out the tick
            elif self._relief_asked or self._closing.is_set():
                return
            left = deadline - time.monotonic()
            if left <= 0 or not socket.poll(max(1, int(left * 1000))):
                return
            self._receive(socket)

    def _receive(self, socket: Any) -> None:
        import zmq

        while True:
            try:
                frame = socket.recv(flags=zmq.NOBLOCK)
            except zmq.Again:
                return
            try:
                reply = decode_reply(frame)
            except DecodeError:
                self.stats.bad_acks += 1
                continue
            if reply.stream != self._stream:
                self.stats.bad_acks += 1
                continue
            item = self._window.reply(reply.seq_start, time.monotonic())
            self._degraded = False
            if item is None:
                continue
            if reply.refused is None:
                self.stats.batches_acked += 1
            else:
                self._refused(item.n_events, reply.refused)

    def _refused(self, n_events: int, reason: str) -> None:
        self.stats.batches_refused += 1
        self.stats.events_refused += n_events
        if len(self.stats.refusals) < MAX_REFUSALS_KEPT:
            self.stats.refusals.append(reason)
        if self.stats.batches_refused == 1:
            log.error("yprov: the sidecar refused a batch of %d events: %s", n_events, reason)

    def _ship(self, socket: Any, max_events: int | None = None) -> None:
        """Cut what is buffered now into batches and send them while the window has room."""
        with self._lock:
            todo = len(self.buffer) if max_events is None else min(max_events, len(self.buffer))
            while todo > 0:
                if socket is None or (self._degraded and len(self._window)):
                    self._spill_buffer(todo)  # nobody to send to; in degraded mode one probe flies
                    return
                if self._window.full():
                    return  # a healthy, busy sidecar: wait for acks; the bounded buffer holds the rest
                n = self._cutter.batch_size(todo)
                fits, oversized = self._cutter.cut(self.buffer, n)
                todo -= n  # popped: sent, spilled, or (could not be encoded) counted as lost
                for piece in fits:
                    self._send_new(socket, piece)
                for piece in oversized:
                    self._spill(piece.header, piece.body, piece.n_events)
                time.sleep(0)  # offer the GIL to the training thread between batches

    def _send_new(self, socket: Any, piece: Piece) -> None:
        self.stats.events += piece.n_events
        self.stats.batches += 1
        if self._send(socket, piece.header, piece.body):
            self._window.add(piece.seq_start, piece.header, piece.body, piece.n_events, time.monotonic())
        else:
            self._spill(piece.header, piece.body, piece.n_events)

    def _send(self, socket: Any, header: bytes, body: bytes) -> bool:
        import zmq

        try:
            socket.send_multipart([header, body], flags=zmq.NOBLOCK, copy=False)
            return True
        except zmq.ZMQError:
            self.stats.send_failures += 1
            return False

    def _relieve_here(self, socket: Any) -> None:
        """The buffer reached its bound: send what the window takes, spill down to half the limit."""
        self._relief_asked = False
        self._ship(socket)
        excess = len(self.buffer) - self.limit // 2
        if excess > 0:
            with self._lock:
                if self.stats.events_spilled == 0:
                    log.warning(
                        "yprov: the event buffer reached its bound (%d events, ~%.0f MiB);"
                        " spilling to the spool until the sidecar catches up",
                        self.limit,
                        self.limit * self._bound.bytes_per_event / 2**20,
                    )
                self._spill_buffer(excess)
        self._update_limit()

    def _check_window(self, socket: Any, now: float) -> None:
        verdict = self._window.check(now)
        if verdict is Verdict.WAIT:
            return
        with self._lock:
            if verdict is Verdict.SUSPECT:
                alive = self._peer.alive() if self._peer is not None else None
                if alive is False:
                    self._lose_sidecar("its process is gone")
                elif socket is not None and self._window.may_probe(now):
                    self._window.last_probe_at = now
                    self._resend_oldest(socket, now)
            elif verdict is Verdict.RESEND_OLDEST and socket is not None:
                self._resend_oldest(socket, now)
            elif verdict is Verdict.SPILL_OLDEST:
                _, item = self._window.take_oldest()
                self._spill(item.header, item.body, item.n_events)
            elif verdict is Verdict.SPILL_ALL:
                self._lose_sidecar(f"no reply for {now - self._window.last_reply_at:.1f} s")

    def _resend_oldest(self, socket: Any, now: float) -> None:
        seq_start, item = next(iter(self._window.items.items()))
        if self._send(socket, item.header, item.body):
            self._window.resent(seq_start, now)
            self.stats.batches_resent += 1
        else:
            self._window.take_oldest()
            self._spill(item.header, item.body, item.n_events)

    def _lose_sidecar(self, why: str) -> None:
        if not self._degraded:
            log.warning(
                "yprov: rank %d: the sidecar is unreachable (%s: stopped, gone, or of an older release "
                "that cannot read this schema version); %d unacked batches go to the spool",
                self._rank,
                why,
                len(self._window),
            )
        self.stats.sidecar_lost = True
        self._degraded = True
        self._spill_all_inflight()

    def _spill_all_inflight(self) -> None:
        for item in self._window.take_all():
            self._spill(item.header, item.body, item.n_events)

    def _spill_buffer(self, n_events: int) -> None:
        """Cut up to ``n_events`` buffered events into batches and spill them (lock held)."""
        todo = min(n_events, len(self.buffer))
        while todo > 0:
            n = self._cutter.batch_size(todo)
            fits, oversized = self._cutter.cut(self.buffer, n)
            todo -= n
            for piece in fits + oversized:
                self.stats.events += piece.n_events
                self.stats.batches += 1
                self._spill(piece.header, piece.body, piece.n_events)

    def _spill(self, header: bytes, body: bytes, n_events: int) -> None:
        self._spool.write(header, body, n_events)
        self.stats.batches_spilled = self._spool.batches
        self.stats.events_spilled = self._spool.events

    def _finish(self, socket: Any) -> None:
        """Ship everything, wait while replies keep coming (bounded), spill what is left."""
        start = last_progress = time.monotonic()
        idle_s = self._end_timeout_s
        while socket is not None and not self._degraded and (len(self._window) or self.buffer):
            self._ship(socket)
            now = time.monotonic()
            last_progress = max(last_progress, self._window.last_reply_at)
            if now - last_progress > idle_s or now - start > idle_s * CLOSE_MAX_FACTOR:
                break
            self._wait(socket, TICK_S, closing=True)
            self._check_window(socket, time.monotonic())
        with self._lock:
            self._spill_all_inflight()
            self._spill_buffer(len(self.buffer))  # appended during the wait by another thread
            self._spool.close()
        self._closed.set()

    def _update_limit(self) -> None:
        self.limit = self._bound.limit
        self._hard_cap = self._bound.hard_cap

    def _update_stats(self, cpu_s: float) -> None:
        self._update_limit()
        self.stats.sender_cpu_s = cpu_s
        self.stats.pack_s = self._cutter.pack_s
        self.stats.ack_latency_s = self._window.latency_s or 0.0
        self.stats.bytes_per_event = round(self._bound.bytes_per_event, 1)
        self.stats.buffer_limit = self.limit

    def _report_lost(self) -> None:
        lost = self.stats.events_lost = self._dropped + self._spool.events_lost + self._cutter.unencodable
        if lost > self._lost_reported:
            if self._lost_reported == 0:
                log.error(
                    "yprov: rank %d: %d events could not be kept (buffer past its hard cap of %d"
                    " events, the spool could not be written, or an event could not be encoded);"
                    " they are counted in events_lost",
                    self._rank,
                    lost,
                    self._hard_cap,
                )
            self._lost_reported = lost
