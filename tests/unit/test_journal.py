"""Journals: frames round-trip; torn tails and corruption are cut at read time, never raised."""

from __future__ import annotations

from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from yprov_hpc.wire.journal import MAGIC, JournalWriter, ReadReport, read_frame_at, read_frames


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
    return len(MAGIC) + sum(12 + len(h) + len(b) for h, b in frames[: i + 1])


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


def test_flipped_byte_stops_reading_at_the_bad_frame(tmp_path: Path) -> None:
    """A corrupted frame fails its checksum: the frames before it are kept, the reason is given."""
    path = tmp_path / "c.journal"
    _write(path, [(b"h1", b"first"), (b"h2", b"second"), (b"h3", b"third")])
    data = bytearray(path.read_bytes())
    data[data.index(b"second")] ^= 0xFF
    path.write_bytes(bytes(data))
    report = ReadReport(path)
    assert [h for _, h, _ in read_frames(path, report)] == [b"h1"]
    assert report.reason == "checksum mismatch" and report.torn_bytes > 0
