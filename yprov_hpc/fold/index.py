"""The merge's first stage: index every journal and spool frame by frame, decoding only headers.

Memory stays bounded by the number of frames actually on disk: a frame records where it is and
which (rank, stream, seq) range it claims, never the events. ``read_batch`` is the one way a
frame is read back and decoded.
"""

from __future__ import annotations

import struct
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from yprov_hpc.core.errors import DecodeError
from yprov_hpc.core.layout import safe_name
from yprov_hpc.wire.codec import decode_body, decode_header
from yprov_hpc.wire.journal import ReadReport, read_frame_at, read_frames
from yprov_hpc.wire.records import NODE_RANK

__all__ = ["Frame", "JournalIndex", "index_journals", "journal_group", "read_batch"]


@dataclass(frozen=True, slots=True)
class Frame:
    """Where one batch lies, and the sequence range its header claims."""

    path: Path
    offset: int
    node: str
    stream: int
    seq_start: int
    n_events: int


@dataclass
class JournalIndex:
    """Every frame of a run, by rank and by node (the nodes' own sample streams)."""

    ranks: dict[int, list[Frame]] = field(default_factory=dict)
    nodes: dict[str, list[Frame]] = field(default_factory=dict)
    reports: list[ReadReport] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    malformed_frames: int = 0

    def node_of(self, rank: int) -> str | None:
        """The node named in the header of the rank's first batch."""
        frames = self.ranks.get(rank)
        return frames[0].node if frames else None


def journal_group(path: Path) -> str | None:
    """The node whose merge part reads a journal file (its file-name-safe name): the node in the
    name of a sidecar's or the aggregator's journal (``node-<n>``, ``agg-<n>``), else the node in
    the header of the file's first intact frame (a rank's spool), else None (the join's own)."""
    for prefix in ("node-", "agg-"):
        if path.name.startswith(prefix) and path.name.endswith(".journal"):
            return path.name[len(prefix) : -len(".journal")]
    try:
        for _offset, header_bytes, _body in read_frames(path):
            try:
                return safe_name(decode_header(header_bytes).node)
            except DecodeError:
                continue
    except OSError:
        return None
    return None


def index_journals(journal_dir: Path, paths: list[Path] | None = None) -> JournalIndex:
    """Read every ``*.journal`` file's headers (checksums checked, torn tails cut and reported);
    only ``paths`` (files of that directory) when given."""
    ranks: dict[int, list[Frame]] = defaultdict(list)
    nodes: dict[str, list[Frame]] = defaultdict(list)
    index = JournalIndex()
    for path in sorted(journal_dir.glob("*.journal")) if paths is None else sorted(paths):
        report = ReadReport(path)
        try:
            for offset, header_bytes, _body in read_frames(path, report):
                try:
                    h = decode_header(header_bytes)
                except DecodeError:
                    index.malformed_frames += 1
                    continue
                frame = Frame(path, offset, h.node, h.stream, h.seq_start, h.n_events)
                if h.rank == NODE_RANK:
                    nodes[h.node].append(frame)
                else:
                    ranks[h.rank].append(frame)
        except OSError as exc:  # unreadable file: report it, merge the others
            index.problems.append(f"{path.name}: could not be read ({exc.strerror or exc})")
            continue
        index.reports.append(report)
        if report.torn_bytes:
            index.problems.append(f"{path.name}: cut {report.torn_bytes} bytes ({report.reason})")
    index.ranks = dict(ranks)
    index.nodes = dict(nodes)
    return index


def read_batch(frame: Frame) -> list[Any] | None:
    """The events of one indexed frame (raw arrays, not yet checked), or None if it is unreadable."""
    try:
        header_bytes, body_bytes = read_frame_at(frame.path, frame.offset)
        return decode_body(body_bytes, decode_header(header_bytes))
    except (DecodeError, OSError, struct.error):  # a file changed or cut since the index pass
        return None
