"""The one codec: msgpack bytes <-> batches and replies (acks, refusals), with version checks.

Decoding never trusts its input: garbage, unknown versions and wrong shapes raise
``DecodeError``; nothing else escapes.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import msgpack

from yprov_hpc.core.errors import DecodeError
from yprov_hpc.wire.blocks import event_count, has_blocks, is_block, pack_body
from yprov_hpc.wire.records import (
    BLOCKS_VERSION,
    INT64_MAX,
    MAX_INFO_ITEMS,
    MAX_NAME_CHARS,
    MAX_RANK,
    MAX_TEXT_CHARS,
    MSG_ACK,
    MSG_BATCH,
    MSG_NACK,
    NODE_RANK,
    REPLY_VERSION,
    SCHEMA_VERSION,
    SUPPORTED_VERSIONS,
    BatchHeader,
    Event,
    Reply,
    preview,
)

__all__ = [
    "MAX_BATCH_EVENTS",
    "MAX_MESSAGE_BYTES",
    "decode_ack",
    "decode_body",
    "decode_header",
    "decode_reply",
    "encode_ack",
    "encode_batch",
    "encode_nack",
]

_HEADER_LEN = 9
_MAX_HEADER_BYTES = 4096
MAX_BATCH_EVENTS = 1 << 16  # events in one batch
MAX_MESSAGE_BYTES = 64 << 20  # one batch body; the sidecar's socket refuses larger messages
_MAX_REASON_CHARS = 500


def encode_batch(
    run_id: str,
    rank: int,
    node: str,
    stream: int,
    seq_start: int,
    events: Sequence[Event],
    sent_ts_ns: int,
    *,
    trusted: bool = False,
) -> tuple[bytes, bytes]:
    """Pack a batch into its (header, body) frames (``trusted``: see ``blocks.pack_items``).
    The header says version 4 only when a block carries marks, else 3: a sidecar of the
    previous release still takes every other batch."""
    items, marked = pack_body(events, trusted=trusted)  # metric runs as blocks
    version = SCHEMA_VERSION if marked else BLOCKS_VERSION
    header = msgpack.packb(
        [version, MSG_BATCH, run_id, rank, node, stream, seq_start, len(events), sent_ts_ns]
    )
    return header, msgpack.packb(items, use_bin_type=True)


# what one container of a body may hold: msgpack refuses more before building it, so a hostile
# body cannot make the decoder build gigabytes of Python objects (records.check_plain, after
# decoding, holds every value to the tighter bounds of the schema)
_BODY_LIMITS = {
    "max_array_len": MAX_BATCH_EVENTS,
    "max_map_len": MAX_INFO_ITEMS,
    "max_str_len": 4 * MAX_TEXT_CHARS,  # bytes of UTF-8 for MAX_TEXT_CHARS characters
    "max_bin_len": MAX_TEXT_CHARS,
}


def _unpack(data: bytes, what: str, limits: dict[str, int] | None = None) -> Any:
    try:
        return msgpack.unpackb(data, raw=False, strict_map_key=False, **(limits or {}))
    except Exception as exc:  # msgpack raises several unrelated types on garbage
        raise DecodeError(f"{what} is not msgpack ({type(exc).__name__}: {exc})") from None


def decode_header(data: bytes) -> BatchHeader:
    """Decode and check a batch header."""
    if len(data) > _MAX_HEADER_BYTES:
        raise DecodeError(f"header of {len(data)} bytes is larger than {_MAX_HEADER_BYTES}")
    obj = _unpack(data, "header")
    if not isinstance(obj, list) or len(obj) < 2:
        raise DecodeError(f"header is a {type(obj).__name__}, not an array")
    version, msg = obj[0], obj[1]
    if version not in SUPPORTED_VERSIONS:
        raise DecodeError(
            f"unknown schema version {preview(version)} (supported: {sorted(SUPPORTED_VERSIONS)})"
        )
    if msg != MSG_BATCH:
        raise DecodeError(f"message type {preview(msg)} is not a batch")
    if len(obj) != _HEADER_LEN:
        raise DecodeError(f"batch header has {len(obj)} fields, expected {_HEADER_LEN}")
    _, _, run_id, rank, node, stream, seq_start, n_events, sent = obj
    ints = (rank, stream, seq_start, n_events, sent)
    if not (isinstance(run_id, str) and isinstance(node, str)) or not all(type(i) is int for i in ints):
        raise DecodeError("batch header fields have wrong types")
    min_rank = NODE_RANK if version >= 2 else 0
    if (
        not min_rank <= rank <= MAX_RANK
        or not 0 <= stream <= INT64_MAX
        or not 0 <= seq_start <= INT64_MAX - MAX_BATCH_EVENTS
        or not 1 <= n_events <= MAX_BATCH_EVENTS
        or not 0 <= sent <= INT64_MAX
    ):
        raise DecodeError(f"batch header out of range (rank={rank}, seq={seq_start}, n={n_events})")
    if not run_id or len(run_id) > MAX_NAME_CHARS or not node or len(node) > MAX_NAME_CHARS:
        raise DecodeError("batch header run id or node is empty or too long")
    return BatchHeader(version, run_id, rank, node, stream, seq_start, n_events, sent)


# Bodies up to this size decode as they are: a byte of msgpack becomes at most ~72 bytes of
# Python objects (an empty array), so at most ~75 MB. Larger bodies decode with a count of every
# object built, stopped past OBJECTS_PER_EVENT per event of the header plus OBJECTS_FIXED.
PLAIN_DECODE_BYTES = 1 << 20
OBJECTS_PER_EVENT = 16
OBJECTS_FIXED = 1_000_000


class _TooManyObjects(Exception):
    pass


def _counting_hooks(budget: int) -> dict[str, Any]:
    """msgpack hooks that count the objects of every array and map as it is built, and stop
    the decoder once ``budget`` is spent (one container of at most ``max_array_len`` items is
    the most built beyond it)."""
    left = [budget]

    def count(container: Any) -> Any:
        left[0] -= len(container) + 1
        if left[0] < 0:
            raise _TooManyObjects
        return container

    return {"list_hook": count, "object_hook": count}


def decode_body(data: bytes, header: BatchHeader) -> list[list[Any]]:
    """Decode a batch body and check it against its header."""
    if len(data) <= PLAIN_DECODE_BYTES:
        obj = _unpack(data, "body", _BODY_LIMITS)
    else:
        budget = OBJECTS_PER_EVENT * header.n_events + OBJECTS_FIXED
        try:
            obj = msgpack.unpackb(
                data, raw=False, strict_map_key=False, **_BODY_LIMITS, **_counting_hooks(budget)
            )
        except _TooManyObjects:
            raise DecodeError(
                f"body of {len(data)} bytes holds more than {budget} objects for {header.n_events} events"
            ) from None
        except Exception as exc:  # msgpack raises several unrelated types on garbage
            raise DecodeError(f"body is not msgpack ({type(exc).__name__}: {exc})") from None
    if not isinstance(obj, list):
        raise DecodeError(f"body is a {type(obj).__name__}, not an array")
    if header.version < 3:
        if len(obj) != header.n_events:
            raise DecodeError(f"body has {len(obj)} events, header says {header.n_events}")
        if has_blocks(obj):
            raise DecodeError("metric blocks need schema version 3")
    elif len(obj) > header.n_events or event_count(obj) != header.n_events:
        raise DecodeError(f"body holds {event_count(obj)} events, header says {header.n_events}")
    elif header.version < 4 and has_blocks(obj) and any(is_block(i) and len(i) == 7 for i in obj):
        raise DecodeError("marks in metric blocks need schema version 4")
    return obj


def encode_ack(stream: int, seq_start: int, n_events: int) -> bytes:
    """Pack the ack of one batch."""
    packed: bytes = msgpack.packb([REPLY_VERSION, MSG_ACK, stream, seq_start, n_events])
    return packed


def encode_nack(stream: int, seq_start: int, n_events: int, reason: str) -> bytes:
    """Pack the refusal of one batch (not journaled: it breaks the schema), with the reason."""
    packed: bytes = msgpack.packb(
        [REPLY_VERSION, MSG_NACK, stream, seq_start, n_events, reason[:_MAX_REASON_CHARS]]
    )
    return packed


def decode_reply(data: bytes) -> Reply:
    """Decode the sidecar's reply to a batch: an ack, or a refusal with its reason."""
    if len(data) > _MAX_HEADER_BYTES:
        raise DecodeError(f"reply of {len(data)} bytes is larger than {_MAX_HEADER_BYTES}")
    obj = _unpack(data, "reply")
    if not isinstance(obj, list) or len(obj) < 5 or obj[0] not in SUPPORTED_VERSIONS:
        raise DecodeError(f"not a reply: {preview(obj)}")
    if not all(type(i) is int for i in obj[2:5]):
        raise DecodeError(f"reply fields have wrong types: {preview(obj)}")
    if obj[1] == MSG_ACK and len(obj) == 5:
        return Reply(obj[2], obj[3], obj[4])
    if obj[1] == MSG_NACK and len(obj) == 6 and isinstance(obj[5], str):
        return Reply(obj[2], obj[3], obj[4], refused=obj[5][:_MAX_REASON_CHARS] or "refused")
    raise DecodeError(f"not a reply: {preview(obj)}")


def decode_ack(data: bytes) -> tuple[int, int, int]:
    """Decode an ack into (stream, seq_start, n_events)."""
    obj = _unpack(data, "ack")
    if (
        not isinstance(obj, list)
        or len(obj) != 5
        or obj[0] not in SUPPORTED_VERSIONS
        or obj[1] != MSG_ACK
        or not all(type(i) is int for i in obj[2:])
    ):
        raise DecodeError(f"not an ack: {preview(obj)}")
    return obj[2], obj[3], obj[4]
