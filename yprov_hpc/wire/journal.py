"""Append-only journals of batches: the sidecar's node journal, the aggregator's copies, each rank's spool.

File (version 2): the 8-byte magic ``YPJRNL\\x00\\x02``, then frames. A frame is a 20-byte prefix
``<u32 FRAME_MAGIC><u32 header_len><u32 body_len><u32 crc32(header + body)><u32 crc32(prefix[:16])>``
(little endian) followed by the header and body bytes of one batch (see ``records``).

A frame is written whole or not at all: one ``writev`` of prefix, header and body on an
unbuffered descriptor, and on any error the file is cut back to where the frame started. The
reader resynchronises past corruption: at a bad prefix, a failed checksum or an impossible
length it scans forward for the next frame magic whose prefix checksum and body checksum hold,
and reports the bytes it skipped. A torn tail (no whole frame after the damage) is reported and
cut. Reading never raises on content. Version-1 journals (``YPJRNL\\x00\\x01``, a 12-byte prefix
without magic, no resync) are still read.
"""

from __future__ import annotations

import contextlib
import errno
import os
import struct
import time
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

from yprov_hpc.wire.codec import MAX_MESSAGE_BYTES

MAGIC = b"YPJRNL\x00\x02"
MAGIC_V1 = b"YPJRNL\x00\x01"
FRAME_MAGIC = b"\xf7YPf"
MAX_FRAME_BYTES = MAX_MESSAGE_BYTES + (64 << 10)  # header + body of one frame
MAX_GROUP_FRAMES = 300  # frames per gathering write (3 buffers each; IOV_MAX is 1,024)
_PREFIX = struct.Struct("<4sIIII")
_PREFIX_V1 = struct.Struct("<III")
_MAX_FRAME_BYTES_V1 = 256 * 1024 * 1024
_SCAN_CHUNK = 1 << 20

__all__ = [
    "FRAME_MAGIC",
    "MAGIC",
    "MAX_FRAME_BYTES",
    "FrameTooLarge",
    "JournalError",
    "JournalWriter",
    "ReadReport",
    "encode_frame_prefix",
    "read_frame_at",
    "read_frames",
]


class JournalError(ValueError):
    """``read_frame_at`` found no frame at ``offset`` of ``path`` (the reason says why)."""

    def __init__(self, path: Path, offset: int, reason: str) -> None:
        super().__init__(f"{path} at offset {offset}: {reason}")
        self.path, self.offset, self.reason = path, offset, reason


class FrameTooLarge(OSError):
    """A frame over ``MAX_FRAME_BYTES`` is never written (the reader would take it for damage).

    An ``OSError`` (``EFBIG``) so that every caller's "the journal cannot take this" path
    handles it: the batch is not acked, or not spilled, and counted."""

    def __init__(self, size: int) -> None:
        super().__init__(
            errno.EFBIG, f"a frame of {size} bytes is over the journal's limit of {MAX_FRAME_BYTES}"
        )
        self.size = size


def encode_frame_prefix(header: bytes, body: bytes) -> bytes:
    """The 20-byte prefix of the frame that holds ``header`` and ``body``."""
    head = _PREFIX.pack(FRAME_MAGIC, len(header), len(body), zlib.crc32(body, zlib.crc32(header)), 0)[:16]
    return head + struct.pack("<I", zlib.crc32(head))


class JournalWriter:
    """Appends whole frames to one journal file. Not thread-safe: one owner thread.

    ``append`` either puts the whole frame in the file (handed to the OS: it survives a crash of
    this process) or raises ``OSError`` with the file cut back to the frame's start."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC | os.O_NOFOLLOW, 0o600)
        try:
            self._size = self._prepare()
        except BaseException:
            os.close(self._fd)
            raise
        self.frames_written = 0
        self.failed_truncates = 0

    def _prepare(self) -> int:
        """Start a new file with the magic; an existing file of another format is moved aside
        (the merge reads it under its new name) so that formats are never mixed in one file."""
        size = os.fstat(self._fd).st_size
        if size:
            head = os.pread(self._fd, len(MAGIC), 0)
            if head == MAGIC:
                return size
            if MAGIC.startswith(head):  # a magic cut short by a crash: nothing else is in it
                os.ftruncate(self._fd, 0)
            else:
                os.close(self._fd)
                aside = self.path.with_name(f"{self.path.stem}.old-{time.time_ns()}{self.path.suffix}")
                os.rename(self.path, aside)
                flags = os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_APPEND | os.O_CLOEXEC | os.O_NOFOLLOW
                self._fd = os.open(self.path, flags, 0o600)
        self._write_whole([MAGIC], 0)
        return len(MAGIC)

    @property
    def size(self) -> int:
        """The file's length as this writer left it (the offset of the next frame)."""
        return self._size

    def append(self, header: bytes, body: bytes) -> int:
        """Append one whole frame and return its offset; ``FrameTooLarge`` or ``OSError`` (then
        nothing of the frame stays in the file, unless even the cut-back failed)."""
        return self.append_many([(header, body)])

    def append_many(self, frames: list[tuple[bytes, bytes]]) -> int:
        """Append whole frames (header, body) with one gathering write; return the offset of
        the first. All of them or, on ``OSError``, none of them stay in the file (as ``append``).
        At most ``MAX_GROUP_FRAMES`` frames: a gathering write takes at most 1,024 buffers."""
        if len(frames) > MAX_GROUP_FRAMES:
            raise ValueError(f"{len(frames)} frames in one write; at most {MAX_GROUP_FRAMES}")
        buffers: list[bytes] = []
        for header, body in frames:
            if len(header) + len(body) > MAX_FRAME_BYTES:
                raise FrameTooLarge(len(header) + len(body))
            buffers += (encode_frame_prefix(header, body), header, body)
        start = self._size
        self._write_whole(buffers, start)
        self.frames_written += len(frames)
        return start

    def _writev(self, buffers: list[bytes]) -> int:
        """One gathering write (a seam for tests that inject a full disk)."""
        return os.writev(self._fd, buffers)

    def _write_whole(self, buffers: list[bytes], start: int) -> None:
        total = sum(len(b) for b in buffers)
        try:
            written = self._writev(buffers)
            if written < total:  # a short write: the rest, in order (O_APPEND keeps it contiguous)
                rest = memoryview(b"".join(buffers))[written:]
                while rest:
                    n = os.write(self._fd, rest)
                    if n <= 0:
                        raise OSError(errno.EIO, "journal write made no progress")
                    rest = rest[n:]
        except OSError:
            self._cut_back(start)
            raise
        self._size = start + total

    def _cut_back(self, start: int) -> None:
        try:
            os.ftruncate(self._fd, start)
        except OSError:
            # the reader resynchronises past the partial frame; count it, keep the writer usable
            self.failed_truncates += 1
            with contextlib.suppress(OSError):
                self._size = os.fstat(self._fd).st_size

    def vanished(self) -> bool:
        """True when the file was deleted or replaced under the writer (its directory removed, say)."""
        try:
            mine = os.fstat(self._fd)
            there = os.stat(self.path, follow_symlinks=False)
        except OSError:
            return True
        return mine.st_nlink == 0 or (mine.st_dev, mine.st_ino) != (there.st_dev, there.st_ino)

    def flush(self) -> None:
        """Kept for callers: every ``append`` already hands its frame to the OS."""

    def sync(self) -> None:
        """fsync (survives a crash of the machine)."""
        os.fsync(self._fd)

    def close(self) -> None:
        """Sync (best effort) and close; idempotent."""
        if self._fd < 0:
            return
        fd, self._fd = self._fd, -1
        try:
            os.fsync(fd)
        except OSError:
            pass  # a full or vanished disk: the frames are with the OS already; close anyway
        finally:
            os.close(fd)


@dataclass
class ReadReport:
    """What reading one journal found: whole frames, bytes skipped to resynchronise, a torn tail."""

    path: Path
    frames: int = 0
    torn_bytes: int = 0  # bytes cut from the end (a torn tail: no whole frame after them)
    bad_magic: bool = False
    reason: str = ""  # why the tail was cut ("" when nothing was)
    version: int = 0
    skipped_bytes: int = 0  # bytes of damage between whole frames, skipped by resynchronising
    resyncs: int = 0
    skips: list[tuple[int, int, str]] = field(default_factory=list)  # (offset, length, reason)

    def skip(self, offset: int, length: int, reason: str) -> None:
        """Record ``length`` bytes of damage at ``offset`` that the reader skipped."""
        self.resyncs += 1
        self.skipped_bytes += length
        if len(self.skips) < 1000:  # bounded however damaged the file is
            self.skips.append((offset, length, reason))


def read_frames(path: Path, report: ReadReport | None = None) -> Iterator[tuple[int, bytes, bytes]]:
    """Yield (offset, header, body) for each intact frame of a journal, in order."""
    rep = report if report is not None else ReadReport(path)
    with open(path, "rb") as f:
        size = os.fstat(f.fileno()).st_size
        magic = f.read(len(MAGIC))
        if magic == MAGIC_V1:
            rep.version = 1
            yield from _read_v1(f, size, rep)
            return
        rep.version = 2
        if magic != MAGIC:
            rep.bad_magic = True
            if len(magic) < len(MAGIC):
                rep.torn_bytes, rep.reason = size, "empty" if not magic else "torn magic"
                return
            # a damaged magic: whatever whole frames follow are still found by resynchronising
            yield from _read_v2(f, size, 0, rep, "not a yprov journal (bad magic)")
            return
        yield from _read_v2(f, size, len(MAGIC), rep, "")


def _frame_at(f: BinaryIO, pos: int, size: int) -> tuple[int, bytes, bytes] | str:
    """The frame at ``pos`` as (length, header, body), or the reason there is none."""
    if size - pos < _PREFIX.size:
        return "torn frame prefix"
    f.seek(pos)
    prefix = f.read(_PREFIX.size)
    magic, hlen, blen, crc, pcrc = _PREFIX.unpack(prefix)
    if magic != FRAME_MAGIC:
        return "no frame magic"
    if zlib.crc32(prefix[:16]) != pcrc:
        return "frame prefix checksum mismatch"
    if hlen + blen > MAX_FRAME_BYTES:
        return "frame length over the limit"
    if pos + _PREFIX.size + hlen + blen > size:
        return "torn frame"
    header = f.read(hlen)
    body = f.read(blen)
    if zlib.crc32(body, zlib.crc32(header)) != crc:
        return "checksum mismatch"
    return _PREFIX.size + hlen + blen, header, body


def _next_frame(f: BinaryIO, start: int, size: int) -> tuple[int, tuple[int, bytes, bytes]] | None:
    """The first whole frame that starts at or after ``start``: (offset, frame), or None."""
    pos = start
    while pos < size:
        f.seek(pos)
        chunk = f.read(_SCAN_CHUNK + len(FRAME_MAGIC) - 1)
        i = chunk.find(FRAME_MAGIC)
        while i >= 0:
            found = _frame_at(f, pos + i, size)
            if not isinstance(found, str):
                return pos + i, found
            i = chunk.find(FRAME_MAGIC, i + 1)
        pos += _SCAN_CHUNK
    return None


def _read_v2(
    f: BinaryIO, size: int, pos: int, rep: ReadReport, reason: str
) -> Iterator[tuple[int, bytes, bytes]]:
    while pos < size:
        found = _frame_at(f, pos, size)
        if isinstance(found, str):
            reason = reason or found
            nxt = _next_frame(f, pos + 1, size)
            if nxt is None:
                rep.torn_bytes, rep.reason = size - pos, reason
                return
            rep.skip(pos, nxt[0] - pos, reason)
            pos, found = nxt
        reason = ""
        length, header, body = found
        rep.frames += 1
        yield pos, header, body
        pos += length


def _read_v1(f: BinaryIO, size: int, rep: ReadReport) -> Iterator[tuple[int, bytes, bytes]]:
    """Version 1: no frame magic, so the first bad frame ends the readable part."""
    offset = len(MAGIC_V1)
    while offset < size:
        prefix = f.read(_PREFIX_V1.size)
        if len(prefix) < _PREFIX_V1.size:
            rep.reason = "torn frame prefix"
            break
        hlen, blen, crc = _PREFIX_V1.unpack(prefix)
        if hlen + blen > _MAX_FRAME_BYTES_V1 or offset + _PREFIX_V1.size + hlen + blen > size:
            rep.reason = "torn frame"
            break
        header = f.read(hlen)
        body = f.read(blen)
        if zlib.crc32(body, zlib.crc32(header)) != crc:
            rep.reason = "checksum mismatch"
            break
        rep.frames += 1
        yield offset, header, body
        offset += _PREFIX_V1.size + hlen + blen
    rep.torn_bytes = size - offset


def read_frame_at(path: Path, offset: int) -> tuple[bytes, bytes]:
    """Read the (header, body) of the frame at a known offset (from an earlier ``read_frames``).

    A version-2 frame starts with ``FRAME_MAGIC``; anything else is read as a version-1 frame
    (whose first field, a header length of at most a few KiB, never looks like the magic)."""
    with open(path, "rb") as f:
        f.seek(offset)
        start = f.read(_PREFIX.size)
        if start[:4] == FRAME_MAGIC and len(start) == _PREFIX.size:
            _, hlen, blen, _, _ = _PREFIX.unpack(start)
            f.seek(offset + _PREFIX.size)
        elif len(start) >= _PREFIX_V1.size:
            hlen, blen, _ = _PREFIX_V1.unpack(start[: _PREFIX_V1.size])
            f.seek(offset + _PREFIX_V1.size)
        else:
            raise JournalError(path, offset, "no frame prefix (past the end of the file)")
        if hlen + blen > _MAX_FRAME_BYTES_V1:
            raise JournalError(path, offset, f"frame lengths {hlen}+{blen} are over the limit")
        header, body = f.read(hlen), f.read(blen)
        if len(header) != hlen or len(body) != blen:
            raise JournalError(path, offset, "frame cut short")
        return header, body
