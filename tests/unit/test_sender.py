"""The rank's sender against real ZeroMQ peers: the buffer bound, refusals, flow control, spills."""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest
import zmq

from yprov_hpc.core.layout import RunLayout
from yprov_hpc.rank.batching import INITIAL_BYTES_PER_EVENT, BufferBound, Cutter
from yprov_hpc.rank.sender import Sender
from yprov_hpc.rank.window import Window
from yprov_hpc.wire.codec import MAX_MESSAGE_BYTES, decode_header, encode_ack, encode_nack
from yprov_hpc.wire.journal import read_frames
from yprov_hpc.wire.records import Kind

NODE = "n1"
_METRIC = int(Kind.METRIC)


class FakeSidecar:
    """A real ROUTER socket in a thread that answers batches by a policy, with a ready file
    naming this process, as the sidecar writes it."""

    def __init__(self, layout: RunLayout, reply: str, delay_s: float = 0.0, reason: str = "") -> None:
        self.endpoint = f"ipc://{layout.journal_dir}/fake.sock"
        self.reply, self.delay_s, self.reason = reply, delay_s, reason
        self.received: list[tuple[int, int, int]] = []  # (stream, seq_start, n_events)
        self._stop = threading.Event()
        self._ctx = zmq.Context()
        self._sock = self._ctx.socket(zmq.ROUTER)
        self._sock.bind(self.endpoint)
        me = psutil.Process()
        info = {"endpoint": self.endpoint, "pid": me.pid, "pid_create_time": me.create_time()}
        layout.sidecar_info(NODE).write_text(json.dumps(info))
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        due: list[tuple[float, bytes, bytes]] = []
        while not self._stop.is_set():
            if self._sock.poll(5):
                identity, header, _body = self._sock.recv_multipart()
                h = decode_header(header)
                self.received.append((h.stream, h.seq_start, h.n_events))
                if self.reply == "ack":
                    ack = encode_ack(h.stream, h.seq_start, h.n_events)
                    due.append((time.monotonic() + self.delay_s, identity, ack))
                elif self.reply == "nack":
                    nack = encode_nack(h.stream, h.seq_start, h.n_events, self.reason)
                    due.append((time.monotonic(), identity, nack))
            while due and due[0][0] <= time.monotonic():
                _, identity, frame = due.pop(0)
                self._sock.send_multipart([identity, frame])
        self._sock.close(linger=0)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self._ctx.term()


@pytest.fixture
def layout(tmp_path: Path) -> RunLayout:
    return RunLayout.create(tmp_path / "prov", "exp", "run1")


def make_sender(layout: RunLayout, locate: object, **kwargs: object) -> Sender:
    settings: dict[str, object] = {
        "layout": layout,
        "run_id": "run1",
        "rank": 0,
        "node": NODE,
        "stream": 7,
        "batch_events": 10,
        "flush_interval_s": 0.05,
        "ack_timeout_s": 0.1,
        "max_inflight_batches": 64,
        "locate": locate,
    }
    settings.update(kwargs)
    return Sender(**settings)  # type: ignore[arg-type]


def log_metrics(sender: Sender, n: int, start: int = 0) -> None:
    """The Run's hot path, exactly: append, then relieve past the limit."""
    buf = sender.buffer
    for i in range(start, start + n):
        buf.append((_METRIC, time.time_ns(), "loss", float(i), None, i))
        if len(buf) > sender.limit:
            sender.relieve()


def spooled_events(layout: RunLayout) -> int:
    """Events in the rank's spool files."""
    return sum(n for _, n in _ranges(layout, "spool-*"))


def _ranges(layout: RunLayout, pattern: str) -> list[tuple[int, int]]:
    """(seq_start, n_events) of every batch in the journals matching ``pattern``."""
    out = []
    for path in layout.journal_dir.glob(pattern):
        for _, header, _ in read_frames(path):
            h = decode_header(header)
            if h.rank == 0:
                out.append((h.seq_start, h.n_events))
    return out


def covered_seqs(layout: RunLayout) -> set[int]:
    """Sequence numbers held by the node journal and the spools together."""
    return {s + i for s, n in _ranges(layout, "*.journal") for i in range(n)}


def wait_until(condition: object, timeout_s: float = 20.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():  # type: ignore[operator]
        assert time.monotonic() < deadline, "condition not reached"
        time.sleep(0.01)


@pytest.fixture
def stalled() -> Iterator[threading.Event]:
    """A release switch for a sender thread held in its locate callback."""
    release = threading.Event()
    yield release
    release.set()


def test_relieve_returns_while_the_sender_thread_is_stalled(
    layout: RunLayout, stalled: threading.Event
) -> None:
    """Past the limit the hot path returns without spilling itself: nothing is spilled until the
    stalled sender thread runs."""
    sender = make_sender(layout, lambda: stalled.wait() and None, max_buffer_events=50)
    sender.start()
    log_metrics(sender, 500)
    assert sender.stats.buffer_overflows == 1 and len(sender.buffer) == 500
    assert not list(layout.journal_dir.glob("spool-*"))
    stalled.set()
    stats = sender.close(5.0)
    assert stats.events_spilled == 500 and spooled_events(layout) == 500


def test_past_the_hard_cap_new_events_are_dropped_and_counted(
    layout: RunLayout, stalled: threading.Event
) -> None:
    """A sender that cannot keep up: the buffer stops at its hard cap and the rest is counted lost."""
    sender = make_sender(layout, lambda: stalled.wait() and None, max_buffer_events=10)
    sender.start()
    cap = sender._bound.hard_cap  # test reads the bound it asserts on
    log_metrics(sender, cap + 25)
    assert len(sender.buffer) == cap
    stalled.set()
    stats = sender.close(5.0)
    assert stats.events_lost == 25 and stats.events_spilled == cap


def test_the_limit_starts_conservative_and_follows_measured_events() -> None:
    """Before any batch the limit assumes large events; small events raise it, large ones lower it."""
    bound = BufferBound(max_bytes=1 << 20)
    assert bound.limit == (1 << 20) // INITIAL_BYTES_PER_EVENT
    bound.observe(100_000, 100_000 * 40)
    small = bound.limit
    assert small > (1 << 20) // INITIAL_BYTES_PER_EVENT
    bound.observe(10_000, 10_000 * 4000)
    assert bound.limit < small


def test_an_oversized_batch_is_split_below_the_message_limit() -> None:
    """Events over MAX_MESSAGE_BYTES together become several batches with contiguous sequences."""
    bound = BufferBound(max_bytes=1 << 30)
    cutter = Cutter("run1", 0, NODE, 7, 1024, bound)
    big = "x" * (1 << 20)
    buf = deque((int(Kind.PARAM), 1, f"p{i}", big, "str") for i in range(70))
    fits, oversized = cutter.cut(buf, 70)
    assert not oversized and len(fits) > 1
    assert all(len(p.body) <= MAX_MESSAGE_BYTES for p in fits)
    seqs = [(p.seq_start, p.n_events) for p in fits]
    assert [s for s, _ in seqs] == [sum(n for _, n in seqs[:i]) for i in range(len(seqs))]
    assert sum(n for _, n in seqs) == 70 and cutter.next_seq == 70


def test_a_single_event_larger_than_a_message_is_spilled_not_sent(layout: RunLayout) -> None:
    """An event that cannot fit any message goes to the spool; the sidecar never sees it."""
    peer = FakeSidecar(layout, "ack")
    try:
        sender = make_sender(layout, lambda: peer.endpoint)
        sender.start()
        sender.buffer.append((int(Kind.PARAM), 1, "huge", b"x" * (MAX_MESSAGE_BYTES + 1), "bytes"))
        log_metrics(sender, 20, start=1)
        stats = sender.close(5.0)
    finally:
        peer.close()
    assert stats.events_spilled == 1 and spooled_events(layout) == 1
    assert sum(n for _, _, n in peer.received) == 20


def test_a_refusal_is_counted_and_not_resent(layout: RunLayout) -> None:
    """A batch the sidecar refuses is counted with its reason and never sent again, nor spilled."""
    peer = FakeSidecar(layout, "nack", reason="event 3: step out of range")
    try:
        sender = make_sender(layout, lambda: peer.endpoint)
        sender.start()
        log_metrics(sender, 10)
        wait_until(lambda: sender.stats.batches_refused >= 1)
        time.sleep(1.0)  # ten ack timeouts in which a resend would show
        stats = sender.close(5.0)
    finally:
        peer.close()
    assert peer.received == [(7, 0, 10)]
    assert stats.events_refused == 10 and stats.refusals == ["event 3: step out of range"]
    assert stats.events_spilled == 0 and stats.batches_resent == 0


def test_no_resend_while_slow_acks_keep_coming(layout: RunLayout) -> None:
    """Acks that come 3x later than ack_timeout_s, but keep coming: nothing is resent or spilled."""
    peer = FakeSidecar(layout, "ack", delay_s=0.3)
    try:
        sender = make_sender(layout, lambda: peer.endpoint)
        sender.start()
        for step in range(20):
            log_metrics(sender, 10, start=10 * step)
            time.sleep(0.05)
        stats = sender.close(10.0)
    finally:
        peer.close()
    assert stats.batches_resent == 0 and stats.events_spilled == 0
    assert stats.batches_acked == stats.batches and sum(n for _, _, n in peer.received) == 200


def _start_real_sidecar(layout: RunLayout) -> tuple[subprocess.Popen[bytes], str]:
    root = Path(__file__).resolve().parents[2]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(root), os.environ.get("PYTHONPATH", "")])}
    cmd = [sys.executable, "-m", "yprov_daemon", "--run-dir", str(layout.root), "--node", NODE]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    ready = layout.sidecar_info(NODE)
    wait_until(ready.exists)
    return proc, str(json.loads(ready.read_text())["endpoint"])


def test_spill_when_the_sidecar_process_is_gone(layout: RunLayout, caplog: pytest.LogCaptureFixture) -> None:
    """After kill -9 of a real sidecar the sender sees its process gone and spills; every
    event is acked or spilled."""
    proc, endpoint = _start_real_sidecar(layout)
    try:
        sender = make_sender(layout, lambda: endpoint, ack_timeout_s=0.2)
        sender.start()
        log_metrics(sender, 10)
        wait_until(lambda: sender.stats.batches_acked >= 1)
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
        with caplog.at_level(logging.WARNING, logger="yprov_hpc"):
            log_metrics(sender, 100, start=10)
            wait_until(lambda: sender.stats.sidecar_lost)
            stats = sender.close(5.0)
    finally:
        proc.kill()
        proc.wait(10)
    assert any("its process is gone" in r.getMessage() for r in caplog.records)
    assert covered_seqs(layout) == set(range(stats.events)) and stats.events == 110


def test_an_event_of_the_connect_hook_joins_a_bye_logged_while_connecting(layout: RunLayout) -> None:
    """A run logged whole before the sidecar connects ships as one batch, with the event the
    on_connected hook adds: nothing trails the bye to a sidecar that may stop after it."""
    peer = FakeSidecar(layout, "ack")
    release = threading.Event()
    try:

        def locate() -> str:
            release.wait(10)
            return peer.endpoint

        sender = make_sender(layout, locate)
        sender._on_connected = lambda: sender.buffer.append((int(Kind.ENVIRONMENT), 1, {}))
        sender.start()
        log_metrics(sender, 5)
        sender.buffer.append((int(Kind.BYE), 2, {"pid": 1}))
        release.set()
        stats = sender.close(5.0)
    finally:
        peer.close()
    assert peer.received == [(7, 0, 7)] and stats.batches_acked == 1


def test_events_that_cannot_be_spilled_are_counted_lost(layout: RunLayout) -> None:
    """With no sidecar and a spool that cannot be written, every event is counted in events_lost."""
    layout.spool(0, 7).mkdir()  # a directory where the spool file would be: open() fails
    sender = make_sender(layout, lambda: None)
    sender.start()
    log_metrics(sender, 30)
    stats = sender.close(5.0)
    assert stats.events_lost == 30 and stats.events_spilled == 0


def test_the_window_is_full_by_bytes_as_well_as_by_batches() -> None:
    """Large batches fill the window by their bytes long before its batch count; an ack frees them."""
    window = Window(ack_timeout_s=1.0, max_batches=100, now=0.0, max_bytes=10 << 20)
    window.add(0, b"h", b"x" * (6 << 20), 1, now=0.0)
    assert not window.full()
    window.add(1, b"h", b"x" * (6 << 20), 1, now=0.0)
    assert window.full() and len(window) == 2
    window.reply(0, now=0.1)
    assert not window.full() and window.bytes == 6 << 20
