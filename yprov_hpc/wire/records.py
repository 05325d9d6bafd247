"""The event schema: the one source of truth for what travels from a rank to the sidecar.

A *batch* is two ZeroMQ frames (and one journal frame): a small header and a body.

header: ``[version, MSG_BATCH, run_id, rank, node, stream, seq_start, n_events, sent_ts_ns]``
(``rank`` is -1 for a node's own stream of samples, since version 2)
body:   ``[event, ...]``; every event is an array whose first item is its ``Kind``.

``stream`` is a random 63-bit id of the sending logger instance (a forked child gets its own),
and events are numbered ``seq_start .. seq_start + n_events - 1`` within their stream. The merge
de-duplicates on ``(rank, stream, seq)`` and reports gaps per stream.

An *ack* is one frame: ``[version, MSG_ACK, stream, seq_start, n_events]``.

Event layouts (version 1). ``ts_ns`` is wall-clock time in nanoseconds since the epoch.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum
from typing import Any

SCHEMA_VERSION = 2
SUPPORTED_VERSIONS = frozenset({1, 2})
# Version 2 adds node streams: a batch with rank NODE_RANK carries the sidecar's own events
# (samples of the node). Version 1 batches always have rank >= 0.
NODE_RANK = -1

MSG_BATCH = 1
MSG_ACK = 2


class Kind(IntEnum):
    """Event kinds, with the layout of each event array."""

    RUN_START = 1  # [kind, ts_ns, info: dict]
    RUN_END = 2  # [kind, ts_ns, status: str, stats: dict]
    PARAM = 3  # [kind, ts_ns, key, value, type_name: str]
    METRIC = 4  # [kind, ts_ns, key, value: float, context | None, step | None]
    ARTIFACT = 5  # [kind, ts_ns, key, context | None, step | None, info: dict]
    MODEL_VERSION = 6  # [kind, ts_ns, name, context | None, step | None, info: dict]
    DATASET = 7  # [kind, ts_ns, label, context | None, info: dict]
    MARK = 8  # [kind, ts_ns, what: "system" | "carbon", context | None, step | None]
    SAMPLE = 9  # [kind, ts_ns, source: "system" | "rapl" | "nvml", values: dict]  (node streams)
    EXEC_TIME = 10  # [kind, ts_ns, label, seconds: float, context | None, step | None]
    HELLO = 11  # [kind, ts_ns, info: dict]  (pid, world_size, local_rank, launcher)
    BYE = 12  # [kind, ts_ns, stats: dict]
    ENVIRONMENT = 13  # [kind, ts_ns, info: dict]
    MODEL = 14  # [kind, ts_ns, label, context | None, step | None, info: dict]


@dataclass(frozen=True, slots=True)
class BatchHeader:
    """The routing part of a batch: enough to journal, ack and index it without the body."""

    version: int
    run_id: str
    rank: int
    node: str
    stream: int
    seq_start: int
    n_events: int
    sent_ts_ns: int

    @property
    def seq_end(self) -> int:
        """Last sequence number in the batch (inclusive)."""
        return self.seq_start + self.n_events - 1


Event = tuple[Any, ...]
