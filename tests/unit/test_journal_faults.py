"""Journal faults: failed writes, bit flips and truncations lose only the frames they physically touch."""

from __future__ import annotations

import contextlib
import errno
import os
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from yprov_hpc.wire.journal import FRAME_MAGIC, JournalWriter, ReadReport, read_frame_at, read_frames


class _FailingDisk(JournalWriter):
    """The real writer on a disk that fails chosen writes after writing part of the frame."""

    def __init__(self, path: Path, fail: dict[int, int], truncate_fails: bool = False) -> None:
        self.fail = fail  # index of the write -> bytes that reach the file before ENOSPC
        self.truncate_fails = truncate_fails
        self.calls = 0
        super().__init__(path)

    def _writev(self, buffers: list[bytes]) -> int:
        call, self.calls = self.calls, self.calls + 1
        if call in self.fail:
            data = b"".join(buffers)
            os.write(self._fd, data[: min(self.fail[call], len(data) - 1)])
            raise OSError(errno.ENOSPC, "No space left on device")
        return super()._writev(buffers)

    def _cut_back(self, start: int) -> None:
        if self.truncate_fails:
            self.failed_truncates += 1
            self._size = os.fstat(self._fd).st_size
            return
        super()._cut_back(start)


def _batches(n: int) -> list[tuple[bytes, bytes]]:
    return [(b"header-%d" % i, (b"body-%d|" % i) * (1 + i % 7)) for i in range(n)]


def _write_with_failures(
    path: Path, batches: list[tuple[bytes, bytes]], fail: dict[int, int], truncate_fails: bool
) -> dict[int, tuple[int, int]]:
    """Append every batch; the acked ones: batch index -> (offset, end offset) of its frame."""
    writer = _FailingDisk(path, {k + 1: v for k, v in fail.items()}, truncate_fails)  # write 0: magic
    acked: dict[int, tuple[int, int]] = {}
    for i, (header, body) in enumerate(batches):
        try:
            offset = writer.append(header, body)
        except OSError:
            continue
        acked[i] = (offset, writer.size)
    writer.close()
    return acked


@settings(suppress_health_check=[HealthCheck.function_scoped_fixture], max_examples=150, deadline=None)
@given(
    n=st.integers(min_value=1, max_value=30),
    fail=st.dictionaries(st.integers(0, 29), st.integers(0, 200), max_size=6),
    truncate_fails=st.booleans(),
    flips=st.lists(st.tuples(st.floats(0, 1, exclude_max=True), st.integers(0, 7)), max_size=4),
    cut=st.none() | st.floats(0, 1),
)
def test_every_acked_frame_not_destroyed_is_read_back(
    tmp_path: Path,
    n: int,
    fail: dict[int, int],
    truncate_fails: bool,
    flips: list[tuple[float, int]],
    cut: float | None,
) -> None:
    """Under write failures, bit flips and a truncation, every acked batch whose bytes are intact is read."""
    path = tmp_path / "f.journal"
    path.unlink(missing_ok=True)
    batches = _batches(n)
    acked = _write_with_failures(path, batches, fail, truncate_fails)
    data = bytearray(path.read_bytes())
    flipped = []
    for where, bit in flips:
        at = int(where * len(data))
        data[at] ^= 1 << bit
        flipped.append(at)
    size = len(data) if cut is None else int(cut * len(data))
    path.write_bytes(bytes(data[:size]))
    report = ReadReport(path)
    got = {header: (offset, body) for offset, header, body in read_frames(path, report)}
    for i, (start, end) in acked.items():
        destroyed = end > size or any(start <= at < end for at in flipped)
        if not destroyed:
            assert got.get(batches[i][0]) == (start, batches[i][1]), f"acked batch {i} was lost"
    unacked = {batches[i][0] for i in range(n) if i not in acked}
    assert not unacked & set(got), "a frame whose write failed was read back"
    assert report.frames == len(got)


def test_a_failed_write_leaves_the_file_as_it_was(tmp_path: Path) -> None:
    """ENOSPC in the middle of a frame: the writer raises and cuts the file back to the frame's start."""
    path = tmp_path / "enospc.journal"
    writer = _FailingDisk(path, {2: 15})
    writer.append(b"h0", b"b0")
    size = path.stat().st_size
    with pytest.raises(OSError) as err:
        writer.append(b"h1", b"b1" * 100)
    assert err.value.errno == errno.ENOSPC
    assert path.stat().st_size == size == writer.size
    writer.append(b"h2", b"b2")
    writer.close()
    assert [h for _, h, _ in read_frames(path)] == [b"h0", b"h2"]


def test_a_partial_frame_left_by_a_failed_cut_back_is_skipped(tmp_path: Path) -> None:
    """If even the truncate fails, the reader skips the partial frame and reports it, and reads on."""
    path = tmp_path / "partial.journal"
    writer = _FailingDisk(path, {2: 30}, truncate_fails=True)
    for i in range(3):
        with contextlib.suppress(OSError):
            writer.append(b"h%d" % i, b"x" * 50)
    writer.close()
    report = ReadReport(path)
    assert [h for _, h, _ in read_frames(path, report)] == [b"h0", b"h2"]
    assert report.resyncs == 1 and report.skipped_bytes == 30 and report.torn_bytes == 0


def test_a_writer_after_a_torn_tail_appends_readable_frames(tmp_path: Path) -> None:
    """A journal cut mid-frame by a crash and reopened: the torn frame is skipped, the new ones are read."""
    path = tmp_path / "reopen.journal"
    w = JournalWriter(path)
    w.append(b"h0", b"b0")
    w.append(b"h1", b"b1" * 40)
    w.close()
    path.write_bytes(path.read_bytes()[:-10])
    w = JournalWriter(path)
    w.append(b"h2", b"b2")
    w.close()
    report = ReadReport(path)
    assert [h for _, h, _ in read_frames(path, report)] == [b"h0", b"h2"]
    assert report.resyncs == 1


def test_a_damaged_file_magic_still_yields_the_frames(tmp_path: Path) -> None:
    """A flipped bit in the file magic is reported, and the frames after it are still found."""
    path = tmp_path / "magic.journal"
    w = JournalWriter(path)
    for i in range(3):
        w.append(b"h%d" % i, b"b")
    w.close()
    data = bytearray(path.read_bytes())
    data[2] ^= 1
    path.write_bytes(bytes(data))
    report = ReadReport(path)
    assert [h for _, h, _ in read_frames(path, report)] == [b"h0", b"h1", b"h2"]
    assert report.bad_magic


def test_a_fake_frame_magic_in_garbage_is_not_taken_for_a_frame(tmp_path: Path) -> None:
    """Garbage that contains the frame magic but no valid prefix checksum is skipped as damage."""
    path = tmp_path / "fake.journal"
    w = JournalWriter(path)
    w.append(b"h0", b"b0")
    w.close()
    with open(path, "ab") as f:
        f.write(b"junk" + FRAME_MAGIC + b"\x05\x00\x00\x00" * 4 + b"more junk")
    w = JournalWriter(path)
    offset = w.append(b"h1", b"b1")
    w.close()
    report = ReadReport(path)
    got = list(read_frames(path, report))
    assert [h for _, h, _ in got] == [b"h0", b"h1"] and got[1][0] == offset
    assert read_frame_at(path, offset) == (b"h1", b"b1")
    assert report.skipped_bytes == 4 + len(FRAME_MAGIC) + 16 + len(b"more junk")
