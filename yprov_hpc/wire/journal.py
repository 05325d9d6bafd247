"""Append-only journals of batches: the sidecar's node journal and each rank's spool.

File: an 8-byte magic, then frames. A frame is a 12-byte prefix
``<u32 header_len><u32 body_len><u32 crc32(header + body)>`` followed by the header and body
bytes of one batch (see ``events``). A torn tail (a frame cut short by a crash or a full disk)
or a frame whose checksum fails ends the readable part; the reader reports where and how
many bytes it cut, and never raises on content.
"""

from __future__ import annotations

import os
import struct
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

MAGIC = b"YPJRNL\x00\x01"
_PREFIX = struct.Struct("<III")
_MAX_FRAME_BYTES = 256 * 1024 * 1024

__all__ = ["MAGIC", "JournalWriter", "ReadReport", "read_frames"]


class JournalWriter:
    """Appends frames to one journal file. Not thread-safe: one owner thread."""

    def __init__(self, path: Path) -> None:
        self.path = path
        new = not path.exists() or path.stat().st_size == 0
        self._file: BinaryIO = open(path, "ab")  # noqa: SIM115  (lives as long as the writer)
        if new:
            self._file.write(MAGIC)
            self._file.flush()
        self.frames_written = 0

    def append(self, header: bytes, body: bytes) -> None:
        """Append one frame (buffered; call ``flush`` to hand it to the OS)."""
        crc = zlib.crc32(body, zlib.crc32(header))
        self._file.write(_PREFIX.pack(len(header), len(body), crc))
        self._file.write(header)
        self._file.write(body)
        self.frames_written += 1

    def flush(self) -> None:
        """Hand buffered frames to the OS (survives a crash of this process)."""
        self._file.flush()

    def sync(self) -> None:
        """Flush and fsync (survives a crash of the machine)."""
        self._file.flush()
        os.fsync(self._file.fileno())

    def close(self) -> None:
        """Sync and close; idempotent."""
        if not self._file.closed:
            self.sync()
            self._file.close()


@dataclass
class ReadReport:
    """What reading one journal found."""

    path: Path
    frames: int = 0
    torn_bytes: int = 0  # bytes cut from the end (torn tail or a bad frame and all after it)
    bad_magic: bool = False
    reason: str = ""


def read_frames(path: Path, report: ReadReport | None = None) -> Iterator[tuple[int, bytes, bytes]]:
    """Yield (offset, header, body) for each intact frame of a journal, in order."""
    rep = report if report is not None else ReadReport(path)
    size = path.stat().st_size
    with open(path, "rb") as f:
        magic = f.read(len(MAGIC))
        if magic != MAGIC:
            rep.bad_magic = True
            rep.torn_bytes = size
            rep.reason = "not a yprov journal (bad magic)" if len(magic) == len(MAGIC) else "empty"
            return
        offset = len(MAGIC)
        while offset < size:
            prefix = f.read(_PREFIX.size)
            if len(prefix) < _PREFIX.size:
                rep.reason = "torn frame prefix"
                break
            hlen, blen, crc = _PREFIX.unpack(prefix)
            if hlen + blen > _MAX_FRAME_BYTES or offset + _PREFIX.size + hlen + blen > size:
                rep.reason = "torn frame"
                break
            header = f.read(hlen)
            body = f.read(blen)
            if zlib.crc32(body, zlib.crc32(header)) != crc:
                rep.reason = "checksum mismatch"
                break
            rep.frames += 1
            yield offset, header, body
            offset += _PREFIX.size + hlen + blen
        rep.torn_bytes = size - offset


def read_frame_at(path: Path, offset: int) -> tuple[bytes, bytes]:
    """Read the (header, body) of the frame at a known offset (from an earlier ``read_frames``)."""
    with open(path, "rb") as f:
        f.seek(offset)
        hlen, blen, _ = _PREFIX.unpack(f.read(_PREFIX.size))
        return f.read(hlen), f.read(blen)
