"""Journal-then-ack under disk trouble: nothing is acked that is not in the journal, nothing dies."""

from __future__ import annotations

import errno
import logging
import os
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import zmq

from yprov_daemon.aggregator import AggregatorEndpoint, Forwarder
from yprov_daemon.ingest import BatchIngest, JournalSink
from yprov_hpc.core.keys import make_keys
from yprov_hpc.core.layout import RunLayout
from yprov_hpc.wire.codec import decode_header, decode_reply, encode_batch
from yprov_hpc.wire.journal import MAX_GROUP_FRAMES, JournalWriter, ReadReport, read_frames


class _Disk:
    """A switch for a disk that is full or has room; writers opened through it obey it."""

    def __init__(self) -> None:
        self.full = False

    def writer(self, path: Path) -> JournalWriter:
        disk = self

        class _Writer(JournalWriter):
            def _writev(self, buffers: list[bytes]) -> int:
                if disk.full:
                    os.write(self._fd, b"".join(buffers)[:7])  # part of the frame reaches the file
                    raise OSError(errno.ENOSPC, "No space left on device")
                return super()._writev(buffers)

        return _Writer(path)


@pytest.fixture
def pair() -> Iterator[tuple[Any, Any]]:
    ctx = zmq.Context()
    router, dealer = ctx.socket(zmq.ROUTER), ctx.socket(zmq.DEALER)
    router.bind("inproc://sidecar")
    dealer.connect("inproc://sidecar")
    yield router, dealer
    for sock in (router, dealer):
        sock.close(linger=0)
    ctx.term()


def _send(dealer: Any, router: Any, seq: int) -> None:
    dealer.send_multipart(encode_batch("r1", 0, "n0", 1, seq, [(4, 1 + seq, "loss", 0.5, None, seq)], 1))
    assert router.poll(2000)


def test_no_ack_for_a_batch_that_could_not_be_journaled(tmp_path: Path, pair: tuple[Any, Any]) -> None:
    """Over real sockets: with the disk full the rank gets no ack; with room again, acks flow."""
    router, dealer = pair
    disk = _Disk()
    path = tmp_path / "node-n0.journal"
    ingest = BatchIngest(JournalSink(path, "the node journal", disk.writer), lambda *_: None)
    disk.full = True
    _send(dealer, router, 0)
    ingest.drain(router)
    assert ingest.stats.not_journaled == 1 and ingest.sink.failed_writes == 1
    assert not dealer.poll(300), "a batch that is not on disk must not be acked"
    disk.full = False
    _send(dealer, router, 1)
    ingest.drain(router)
    assert dealer.poll(2000), "once the journal can be written, acks flow again"
    assert decode_reply(dealer.recv()).seq_start == 1


def test_a_failed_write_leaves_no_partial_frame(tmp_path: Path, pair: tuple[Any, Any]) -> None:
    """The bytes of a frame that failed halfway are cut back: the journal reads without any skip."""
    router, dealer = pair
    disk = _Disk()
    path = tmp_path / "node-n0.journal"
    ingest = BatchIngest(JournalSink(path, "the node journal", disk.writer), lambda *_: None)
    for seq in range(6):
        disk.full = seq % 2 == 1
        _send(dealer, router, seq)
        ingest.drain(router)
    ingest.sink.close()
    report = ReadReport(path)
    seqs = [decode_header(h).seq_start for _, h, _ in read_frames(path, report)]
    assert seqs == [0, 2, 4] and report.skipped_bytes == 0 and report.torn_bytes == 0


def test_a_lasting_failure_is_logged_once_not_per_batch(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Hundreds of failed writes in a row give one error line (then at most one a minute)."""
    disk = _Disk()
    disk.full = True
    sink = JournalSink(tmp_path / "j.journal", "the node journal", disk.writer)
    with caplog.at_level(logging.ERROR, logger="yprov_daemon"):
        for i in range(300):
            sink.append(b"h%d" % i, b"body")
    assert sink.failed_writes == 300 and sink.outages == 1
    assert len([r for r in caplog.records if r.levelno == logging.ERROR]) == 1


def test_a_deleted_journal_is_not_acked_and_is_reopened(tmp_path: Path, pair: tuple[Any, Any]) -> None:
    """A journal deleted under the sidecar: what went to it is not acked; a new file takes the next batch."""
    router, dealer = pair
    path = tmp_path / "node-n0.journal"
    ingest = BatchIngest(JournalSink(path, "the node journal"), lambda *_: None)
    _send(dealer, router, 0)
    ingest.drain(router)
    assert dealer.poll(2000)
    dealer.recv()
    path.unlink()
    _send(dealer, router, 1)
    ingest.drain(router)
    assert ingest.sink.vanished == 1 and ingest.sink.lost_frames == 1
    assert not dealer.poll(300), "a batch written to a deleted file must not be acked"
    _send(dealer, router, 2)
    ingest.drain(router)
    assert dealer.poll(2000) and decode_reply(dealer.recv()).seq_start == 2
    ingest.sink.close()
    assert [decode_header(h).seq_start for _, h, _ in read_frames(path)] == [2]


def test_a_removed_directory_is_reported_and_retried(tmp_path: Path) -> None:
    """With its directory gone the sink refuses appends; once the directory is back it writes again."""
    directory = tmp_path / "journal"
    directory.mkdir()
    sink = JournalSink(directory / "j.journal", "the node journal")
    assert sink.append(b"h", b"b") and sink.commit()
    shutil.rmtree(directory)
    assert sink.append(b"h", b"b") and not sink.commit()
    assert not sink.append(b"h", b"b")
    directory.mkdir()
    time.sleep(0.6)  # the sink retries opening at most twice a second
    assert sink.append(b"h", b"c") and sink.commit()
    sink.close()
    assert [b for _, _, b in read_frames(directory / "j.journal")] == [b"c"]


def test_the_aggregator_survives_a_full_disk(tmp_path: Path) -> None:
    """ENOSPC on the aggregator's copy: no ack to the forwarder, no crash; with room again it acks."""
    layout = RunLayout.create(tmp_path, "e", "r1")
    make_keys(layout)
    ctx: zmq.Context[Any] = zmq.Context()
    disk = _Disk()
    aggregator = AggregatorEndpoint(ctx, layout, "tcp://127.0.0.1:*")
    endpoint = aggregator.socket.getsockopt_string(zmq.LAST_ENDPOINT)
    aggregator.open_writer = disk.writer
    forwarder = Forwarder(ctx, layout, "n1", endpoint)
    try:
        for seq, full in ((0, False), (1, True), (2, False)):
            disk.full = full
            forwarder.submit(*encode_batch("r1", 0, "n1", 1, seq, [(4, 1, "loss", 0.5, None, seq)], 1))
            assert aggregator.socket.poll(5000)
            aggregator.drain()
        assert aggregator.not_journaled == 1 and aggregator.frames == 2
        deadline = time.monotonic() + 5
        while forwarder.acked < 2 and time.monotonic() < deadline:
            forwarder.socket.poll(100)
            forwarder.poll()
        assert forwarder.acked == 2 and sorted(forwarder._pending) == [1]
    finally:
        forwarder.finish(0)
        aggregator.close()
        ctx.term()


class _FailingWrite:
    """A disk on which the n-th gathering write (from 1) fails after a few bytes reach the file."""

    def __init__(self, failing: int) -> None:
        self.failing = failing
        self.writes = 0

    def writer(self, path: Path) -> JournalWriter:
        disk = self

        class _Writer(JournalWriter):
            def _writev(self, buffers: list[bytes]) -> int:
                disk.writes += 1
                if disk.writes == disk.failing:
                    os.write(self._fd, b"".join(buffers)[:7])
                    raise OSError(errno.ENOSPC, "No space left on device")
                return super()._writev(buffers)

        return _Writer(path)


def test_frames_go_in_groups_and_a_failed_group_leaves_nothing(tmp_path: Path) -> None:
    """700 frames are written in groups (one gathering write each, after the magic's); when the
    second group's write fails, the first group is in the journal whole, nothing after it is,
    and every frame not written is counted."""
    disk = _FailingWrite(failing=3)  # write 1: the file's magic; 2: the first group; 3: the second
    path = tmp_path / "j.journal"
    sink = JournalSink(path, "the node journal", disk.writer)
    frames = [(b"h%d" % i, b"body %d" % i) for i in range(700)]
    assert sink.append_many(frames) == MAX_GROUP_FRAMES
    assert sink.failed_writes == 700 - MAX_GROUP_FRAMES and sink.commit()
    sink.close()
    report = ReadReport(path)
    bodies = [b for _, _, b in read_frames(path, report)]
    assert bodies == [b"body %d" % i for i in range(MAX_GROUP_FRAMES)]
    assert report.skipped_bytes == 0 and report.torn_bytes == 0


def test_a_drain_acks_only_the_batches_its_group_write_journaled(
    tmp_path: Path, pair: tuple[Any, Any]
) -> None:
    """Ten batches in one drain with the disk full: none is acked and all ten are counted; sent
    again with room, all ten are acked and journaled once each."""
    router, dealer = pair
    disk = _Disk()
    path = tmp_path / "node-n0.journal"
    ingest = BatchIngest(JournalSink(path, "the node journal", disk.writer), lambda *_: None)
    batches = [encode_batch("r1", 0, "n0", 1, s, [(4, 1 + s, "loss", 0.5, None, s)], 1) for s in range(10)]
    for full in (True, False):
        disk.full = full
        for batch in batches:
            dealer.send_multipart(batch)
        deadline = time.monotonic() + 5
        while (
            ingest.stats.batches + ingest.stats.not_journaled < (10 if full else 20)
            and time.monotonic() < deadline
        ):
            router.poll(100)
            ingest.drain(router)
        if full:
            assert ingest.stats.not_journaled == 10 and not dealer.poll(300)
    acked = set()
    while dealer.poll(1000):
        acked.add(decode_reply(dealer.recv()).seq_start)
    ingest.sink.close()
    assert acked == set(range(10))
    assert sorted(decode_header(h).seq_start for _, h, _ in read_frames(path)) == list(range(10))


def test_a_group_write_is_bounded(tmp_path: Path) -> None:
    """One gathering write takes at most MAX_GROUP_FRAMES frames (the system's limit on buffers)."""
    writer = JournalWriter(tmp_path / "j.journal")
    with pytest.raises(ValueError, match="at most 300"):
        writer.append_many([(b"h", b"b")] * (MAX_GROUP_FRAMES + 1))
    writer.close()


def test_a_write_that_finds_the_journal_gone_refuses_only_its_own_group(
    tmp_path: Path, pair: tuple[Any, Any]
) -> None:
    """The journal deleted and the next write failing: that batch gets no ack; once there is room,
    the next batch, written whole to the re-opened journal, is acked at once (not refused as
    part of the lost group, which made the rank resend it and the journal hold it twice)."""
    router, dealer = pair
    disk = _Disk()
    path = tmp_path / "node-n0.journal"
    ingest = BatchIngest(JournalSink(path, "the node journal", disk.writer), lambda *_: None)
    _send(dealer, router, 0)
    ingest.drain(router)
    assert dealer.poll(2000) and decode_reply(dealer.recv()).seq_start == 0
    path.unlink()
    disk.full = True
    _send(dealer, router, 1)
    ingest.drain(router)
    assert not dealer.poll(300), "a batch that was not written must not be acked"
    disk.full = False
    _send(dealer, router, 2)
    ingest.drain(router)
    assert dealer.poll(2000) and decode_reply(dealer.recv()).seq_start == 2
    ingest.sink.close()
    assert [decode_header(h).seq_start for _, h, _ in read_frames(path)] == [2]
    assert ingest.sink.lost_frames == 0


def test_the_sidecars_own_samples_are_journaled_after_the_journal_came_back(tmp_path: Path) -> None:
    """The samples' path (append, then commit): after a failed write to a deleted journal, the
    next sample batch is in the re-opened journal and reported as journaled."""
    disk = _Disk()
    path = tmp_path / "node-n0.journal"
    sink = JournalSink(path, "the node journal", disk.writer)
    path.unlink()
    disk.full = True
    assert not (sink.append(b"h1", b"b1") and sink.commit())
    disk.full = False
    assert sink.append(b"h2", b"b2") and sink.commit()
    sink.close()
    assert [b for _, _, b in read_frames(path)] == [b"b2"]


def test_the_aggregator_journals_each_copy_once_when_its_journal_vanishes_in_a_drain(
    tmp_path: Path,
) -> None:
    """Three forwarded copies in one drain; the journal is deleted and the write of the second
    fails: none written to the lost file is acked, and after the forwarder resends, the
    re-opened journal holds each copy exactly once (a copy written after the failure was once
    refused with the lost ones, resent, and journaled twice)."""
    layout = RunLayout.create(tmp_path, "e", "r1")
    make_keys(layout)
    path = layout.journal_dir / "agg-n1.journal"
    batches = [encode_batch("r1", 0, "n1", 1, seq, [(4, 1, "loss", 0.5, None, seq)], 1) for seq in range(3)]
    marker = batches[1][0]
    failed = []

    def writer(journal: Path) -> JournalWriter:
        class _Writer(JournalWriter):
            def _writev(self, buffers: list[bytes]) -> int:
                if not failed and marker in buffers:  # the file is deleted, the disk is full
                    failed.append(True)
                    journal.unlink()
                    raise OSError(errno.ENOSPC, "No space left on device")
                return super()._writev(buffers)

        return _Writer(journal)

    ctx: zmq.Context[Any] = zmq.Context()
    aggregator = AggregatorEndpoint(ctx, layout, "tcp://127.0.0.1:*")
    endpoint = aggregator.socket.getsockopt_string(zmq.LAST_ENDPOINT)
    aggregator.open_writer = writer
    forwarder = Forwarder(ctx, layout, "n1", endpoint)
    try:
        for batch in batches:
            forwarder.submit(*batch)
        deadline = time.monotonic() + 10
        while forwarder.acked < 3 and time.monotonic() < deadline:
            if aggregator.socket.poll(100):
                time.sleep(0.05)  # let all three arrive: one drain
                aggregator.drain()
            forwarder.socket.poll(10)
            forwarder.poll()
        assert failed and forwarder.acked == 3
        assert sorted(decode_header(h).seq_start for _, h, _ in read_frames(path)) == [0, 1, 2]
    finally:
        forwarder.finish(0)
        aggregator.close()
        ctx.term()
