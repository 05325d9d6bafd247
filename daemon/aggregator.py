"""The aggregator end of the node links, and the forwarding end in each sidecar.

A sidecar that forwards sends every batch it journaled (the ranks' and its own samples) to the
aggregator over tcp, authenticated and encrypted with the job's CURVE keys, keeps each until the
aggregator acks it, and resends after a timeout: a lost link that comes back (ZeroMQ reconnects)
loses nothing, and the sidecar's own journal holds everything regardless. The aggregator writes
each node's stream to ``journal/agg-<node>.journal`` before acking, with the same
journal-then-ack policy as the sidecar (``ingest.JournalSink``: a full disk is counted and not
acked, never fatal); the merge reads these copies beside the node journals and de-duplicates.
"""

from __future__ import annotations

import contextlib
import logging
import struct
import time
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import zmq

from yprov_hpc.core.errors import DecodeError
from yprov_hpc.core.keys import client_keys, keys_dir, server_keys
from yprov_hpc.core.layout import RunLayout, safe_name
from yprov_hpc.wire.codec import decode_header
from yprov_hpc.wire.journal import JournalWriter
from yprov_hpc.wire.records import MAX_NAME_CHARS

from .ingest import DRAIN_MAX, DRAIN_MAX_BYTES, DRAIN_MAX_S, SOCKET_MAX_MESSAGE_BYTES, JournalSink

log = logging.getLogger("yprov_daemon")

FORWARD = b"YPFWD1"
RESEND_AFTER_S = 2.0
MAX_PENDING = 10_000
MAX_NODES = 4096  # node journals one aggregator keeps open (one descriptor each)
_ID = struct.Struct("<Q")


class AggregatorEndpoint:
    """ROUTER on tcp, CURVE server; admits only the job's sidecar key."""

    def __init__(self, ctx: zmq.Context[Any], layout: RunLayout, endpoint: str) -> None:
        self.layout = layout
        from zmq.auth.thread import ThreadAuthenticator  # asyncio and threads: only an aggregator

        self.auth = ThreadAuthenticator(ctx)
        self.auth.start()
        self.auth.configure_curve(domain="*", location=str(keys_dir(layout) / "clients"))
        public, secret = server_keys(layout)
        self.socket: Any = ctx.socket(zmq.ROUTER)
        self.socket.setsockopt(zmq.LINGER, 1000)
        self.socket.curve_server = True
        self.socket.curve_publickey = public
        self.socket.curve_secretkey = secret
        self.socket.setsockopt(zmq.MAXMSGSIZE, SOCKET_MAX_MESSAGE_BYTES)
        self.socket.bind(endpoint)
        self._journals: dict[str, JournalSink] = {}
        self.open_writer: Callable[[Path], JournalWriter] = JournalWriter  # a seam for disk-fault tests
        self.frames = 0
        self.malformed = 0
        self.not_journaled = 0
        self.last_message = time.monotonic()  # when a forwarder last sent anything

    def _journal(self, node: str) -> JournalSink | None:
        sink = self._journals.get(node)
        if sink is None and len(self._journals) < MAX_NODES:
            path = self.layout.journal_dir / f"agg-{safe_name(node)}.journal"
            what = f"the aggregator's copy of node {node}"
            sink = self._journals[node] = JournalSink(path, what, self.open_writer)
        return sink

    def drain(self) -> None:
        """Journal what the forwarders sent (bounded like the sidecar's drain), a node's copies
        with one grouped write, then ack what each node's journal took."""
        deadline = time.monotonic() + DRAIN_MAX_S
        received = 0
        by_sink: dict[int, tuple[JournalSink, list[list[bytes]]]] = {}
        for _ in range(DRAIN_MAX):
            try:
                msg = self.socket.recv_multipart(flags=zmq.NOBLOCK)
            except zmq.Again:
                break
            received += sum(len(part) for part in msg)
            self.last_message = time.monotonic()
            sink = self._vet(msg)
            if sink is not None:
                by_sink.setdefault(id(sink), (sink, []))[1].append(msg)
            if received >= DRAIN_MAX_BYTES or time.monotonic() >= deadline:
                break
        for sink, msgs in by_sink.values():
            written = sink.append_many([(m[3], m[4]) for m in msgs])
            acked = msgs[:written] if written and sink.commit() else []
            self.not_journaled += len(msgs) - len(acked)
            for msg in acked:
                self._ack(msg[0], msg[5])

    def _ack(self, identity: bytes, fid: bytes) -> None:
        self.frames += 1
        with contextlib.suppress(zmq.ZMQError):  # the forwarder resends; the copy is journaled
            self.socket.send_multipart([identity, fid], flags=zmq.NOBLOCK)

    def _vet(self, msg: list[bytes]) -> JournalSink | None:
        """The journal for a well-formed forwarded batch, or None (counted as malformed)."""
        if len(msg) != 6 or msg[1] != FORWARD or len(msg[5]) != _ID.size:
            self.malformed += 1
            return None
        try:
            decode_header(msg[3])
            node = msg[2].decode()
        except (DecodeError, UnicodeDecodeError):
            self.malformed += 1
            return None
        if not node or len(node) > MAX_NAME_CHARS:
            self.malformed += 1
            return None
        return self._journal(node)

    def linger(self, quiet_s: float = 1.0, max_s: float = 5.0) -> None:
        """At stop, keep taking forwarded batches until the links have been quiet for
        ``quiet_s`` (at most ``max_s``): the other nodes' sidecars stop at the same moment and
        forward their last batches (a final sample) on their way out."""
        start = last = time.monotonic()
        while time.monotonic() - last < quiet_s and time.monotonic() - start < max_s:
            if self.socket.poll(100, zmq.POLLIN):
                before = self.frames
                self.drain()
                if self.frames != before:
                    last = time.monotonic()

    def close(self) -> None:
        for journal in self._journals.values():
            journal.close()
        self.socket.close()
        self.auth.stop()


class Forwarder:
    """DEALER on tcp, CURVE client with the job's sidecar key; at-least-once with acks."""

    def __init__(self, ctx: zmq.Context[Any], layout: RunLayout, node: str, endpoint: str) -> None:
        public, secret, server_public = client_keys(layout)
        self.socket: Any = ctx.socket(zmq.DEALER)
        self.socket.setsockopt(zmq.LINGER, 0)
        self.socket.curve_publickey = public
        self.socket.curve_secretkey = secret
        self.socket.curve_serverkey = server_public
        self.socket.connect(endpoint)
        self._node = node.encode()
        self._next = 0
        self._pending: OrderedDict[int, tuple[bytes, bytes, float]] = OrderedDict()
        self.forwarded = 0
        self.acked = 0
        self.resent = 0
        self.dropped = 0

    def submit(self, header: bytes, body: bytes) -> None:
        if len(self._pending) >= MAX_PENDING:  # the node journal keeps it; say so at stop
            self.dropped += 1
            return
        fid = self._next
        self._next += 1
        self._pending[fid] = (header, body, time.monotonic())
        self._send(fid, header, body)
        self.forwarded += 1

    def _send(self, fid: int, header: bytes, body: bytes) -> None:
        with contextlib.suppress(zmq.ZMQError):  # resent after the timeout
            self.socket.send_multipart([FORWARD, self._node, header, body, _ID.pack(fid)], flags=zmq.NOBLOCK)

    def poll(self) -> None:
        while True:
            try:
                frame = self.socket.recv(flags=zmq.NOBLOCK)
            except zmq.Again:
                break
            if len(frame) == _ID.size and self._pending.pop(_ID.unpack(frame)[0], None) is not None:
                self.acked += 1
        now = time.monotonic()
        for fid, (header, body, sent) in list(self._pending.items()):
            if now - sent < RESEND_AFTER_S:
                break
            self._pending[fid] = (header, body, now)
            self._pending.move_to_end(fid)
            self._send(fid, header, body)
            self.resent += 1

    def finish(self, timeout_s: float) -> int:
        """Wait (bounded) for the last acks; the number still unacked."""
        deadline = time.monotonic() + timeout_s
        while self._pending and time.monotonic() < deadline:
            if self.socket.poll(50, zmq.POLLIN):
                self.poll()
            else:
                self.poll()
        self.socket.close()
        return len(self._pending)
