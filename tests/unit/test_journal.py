"""Journals: frames round-trip; torn tails are cut and corruption is skipped at read time, never raised."""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from yprov_hpc.wire.journal import (
    MAGIC,
    MAX_FRAME_BYTES,
    FrameTooLarge,
    JournalWriter,
    ReadReport,
    read_frame_at,
    read_frames,
)

_PREFIX_BYTES = 20


def _write(path: Path, frames: list[tuple[bytes, bytes]]) -> None:
    w = JournalWriter(path)
    for h, b in frames:
        w.append(h, b)
    w.close()


def test_frames_round_trip_in_order(tmp_path: Path) -> None:
    """What was appended is read back, in order, with offsets that re-read the same frame."""
    path = tmp_path / "j.journal"
    frames = [(b"h%d" % i, b"body" * i) for i in range(10)]
    _write(path, frames)
    got = list(read_frames(path))
    assert [(h, b) for _, h, b in got] == frames
    assert read_frame_at(path, got[7][0]) == frames[7]


def test_reopening_appends_without_a_second_magic(tmp_path: Path) -> None:
    """A writer that reopens an existing journal appends frames after the old ones."""
    path = tmp_path / "j.journal"
    _write(path, [(b"a", b"1")])
    _write(path, [(b"b", b"2")])
    assert [h for _, h, _ in read_frames(path)] == [b"a", b"b"]
    assert path.read_bytes().count(MAGIC) == 1


@settings(suppress_health_check=[HealthCheck.function_scoped_fixture], max_examples=60)
@given(
    frames=st.lists(
        st.tuples(st.binary(min_size=1, max_size=40), st.binary(max_size=80)), min_size=1, max_size=8
    ),
    cut=st.integers(min_value=0, max_value=10_000),
)
def test_torn_tail_yields_a_prefix_of_whole_frames(
    tmp_path: Path, frames: list[tuple[bytes, bytes]], cut: int
) -> None:
    """Truncating a journal anywhere yields exactly the frames that were whole, and reports the cut."""
    path = tmp_path / "t.journal"
    path.unlink(missing_ok=True)
    _write(path, frames)
    data = path.read_bytes()
    cut = min(cut, len(data))
    path.write_bytes(data[:cut])
    report = ReadReport(path)
    got = [(h, b) for _, h, b in read_frames(path, report)]
    assert got == frames[: len(got)]
    whole = sum(1 for i in range(len(frames)) if _end_of(frames, i) <= cut)
    assert len(got) == whole if cut >= len(MAGIC) else got == []
    if cut >= len(MAGIC):
        assert report.torn_bytes == cut - (_end_of(frames, whole - 1) if whole else len(MAGIC))


def _end_of(frames: list[tuple[bytes, bytes]], i: int) -> int:
    return len(MAGIC) + sum(_PREFIX_BYTES + len(h) + len(b) for h, b in frames[: i + 1])


@settings(suppress_health_check=[HealthCheck.function_scoped_fixture], max_examples=60)
@given(data=st.binary(max_size=400))
def test_random_bytes_never_raise(tmp_path: Path, data: bytes) -> None:
    """A file of random bytes (with or without the magic) reads as some frames or none, never an error."""
    for content in (data, MAGIC + data):
        path = tmp_path / "r.journal"
        path.write_bytes(content)
        report = ReadReport(path)
        frames = list(read_frames(path, report))
        assert report.frames == len(frames)


def test_flipped_byte_loses_only_its_frame(tmp_path: Path) -> None:
    """A corrupted frame fails its checksum: it is skipped and reported, the frames around it are kept."""
    path = tmp_path / "c.journal"
    _write(path, [(b"h1", b"first"), (b"h2", b"second"), (b"h3", b"third")])
    data = bytearray(path.read_bytes())
    at = data.index(b"second")
    data[at] ^= 0xFF
    path.write_bytes(bytes(data))
    report = ReadReport(path)
    assert [h for _, h, _ in read_frames(path, report)] == [b"h1", b"h3"]
    assert report.resyncs == 1 and report.torn_bytes == 0
    offset, length, reason = report.skips[0]
    assert offset < at < offset + length and length == report.skipped_bytes
    assert reason == "checksum mismatch"


def test_flipped_length_resynchronises_on_the_next_frame_magic(tmp_path: Path) -> None:
    """A flipped bit in a frame's length field is caught by the prefix checksum; the next frame is found."""
    path = tmp_path / "l.journal"
    _write(path, [(b"h1", b"a" * 100), (b"h2", b"b" * 100), (b"h3", b"c" * 100)])
    offsets = [o for o, _, _ in read_frames(path)]
    data = bytearray(path.read_bytes())
    data[offsets[1] + 4] ^= 0x40  # header_len of the second frame
    path.write_bytes(bytes(data))
    report = ReadReport(path)
    assert [h for _, h, _ in read_frames(path, report)] == [b"h1", b"h3"]
    assert report.skips == [(offsets[1], offsets[2] - offsets[1], "frame prefix checksum mismatch")]


def test_version_1_journal_is_still_read(tmp_path: Path) -> None:
    """A journal in the old format (12-byte prefix, no frame magic) reads back, also by offset."""
    path = tmp_path / "v1.journal"
    frames = [(b"h1", b"one"), (b"h2", b"two")]
    data = b"YPJRNL\x00\x01" + b"".join(
        struct.pack("<III", len(h), len(b), zlib.crc32(b, zlib.crc32(h))) + h + b for h, b in frames
    )
    path.write_bytes(data)
    report = ReadReport(path)
    got = list(read_frames(path, report))
    assert [(h, b) for _, h, b in got] == frames and report.version == 1
    assert read_frame_at(path, got[1][0]) == frames[1]


def test_writer_moves_an_old_format_journal_aside(tmp_path: Path) -> None:
    """Appending to a version-1 journal never mixes formats: the old file is kept under a new name."""
    path = tmp_path / "node-n0.journal"
    path.write_bytes(b"YPJRNL\x00\x01")
    _write(path, [(b"h", b"b")])
    aside = [p for p in tmp_path.iterdir() if p != path]
    assert len(aside) == 1 and aside[0].suffix == ".journal"
    assert aside[0].read_bytes() == b"YPJRNL\x00\x01"
    assert [h for _, h, _ in read_frames(path)] == [b"h"]


def test_a_frame_over_the_limit_is_never_written(tmp_path: Path) -> None:
    """An oversized frame raises FrameTooLarge (an OSError) and leaves the journal as it was."""
    path = tmp_path / "big.journal"
    w = JournalWriter(path)
    w.append(b"h", b"ok")
    size = path.stat().st_size
    with pytest.raises(FrameTooLarge) as err:
        w.append(b"h", bytes(MAX_FRAME_BYTES))
    assert isinstance(err.value, OSError) and err.value.size == MAX_FRAME_BYTES + 1
    w.close()
    assert path.stat().st_size == size
