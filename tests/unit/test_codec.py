"""The codec: round trips, and typed errors (never crashes) on anything else."""

from __future__ import annotations

import contextlib
import math

import msgpack
import pytest
from hypothesis import given
from hypothesis import strategies as st

from yprov_hpc.core.errors import DecodeError
from yprov_hpc.wire.blocks import expand
from yprov_hpc.wire.codec import decode_ack, decode_body, decode_header, encode_ack, encode_batch
from yprov_hpc.wire.records import SCHEMA_VERSION, Kind


def test_batch_round_trip_keeps_every_field() -> None:
    """A batch decodes to the header fields and events it was encoded from, NaN included."""
    events = [
        (int(Kind.METRIC), 5, "loss", math.nan, "training", 3),
        (int(Kind.PARAM), 6, "lr", 0.1, "float"),
    ]
    header, body = encode_batch("run1", 3, "node-a", 77, 10, events, 123)
    h = decode_header(header)
    assert (h.run_id, h.rank, h.node, h.stream, h.seq_start, h.n_events, h.sent_ts_ns) == (
        "run1",
        3,
        "node-a",
        77,
        10,
        2,
        123,
    )
    assert h.seq_end == 11
    decoded = decode_body(body, h)
    assert decoded[1] == [int(Kind.PARAM), 6, "lr", 0.1, "float"]
    assert math.isnan(decoded[0][3])


def test_unknown_version_is_a_decode_error() -> None:
    """A header of a schema version this build does not know is refused by name."""
    header = msgpack.packb([SCHEMA_VERSION + 98, 1, "r", 0, "n", 1, 0, 1, 0])
    with pytest.raises(DecodeError, match="unknown schema version"):
        decode_header(header)


def test_body_that_disagrees_with_header_is_refused() -> None:
    """A body whose event count differs from the header's is a decode error."""
    header, _ = encode_batch("r", 0, "n", 1, 0, [(4, 1, "a", 1.0, None, None)], 0)
    other = msgpack.packb([[4, 1, "a", 1.0, None, None], [4, 1, "b", 1.0, None, None]])
    with pytest.raises(DecodeError, match="2 events"):
        decode_body(other, decode_header(header))


def test_ack_round_trip() -> None:
    """An ack names the stream and batch it acknowledges."""
    assert decode_ack(encode_ack(5, 100, 7)) == (5, 100, 7)


@given(st.binary(max_size=300))
def test_garbage_headers_give_decode_error_only(data: bytes) -> None:
    """Random bytes either decode to a valid header or raise DecodeError, nothing else."""
    try:
        h = decode_header(data)
    except DecodeError:
        return
    assert h.n_events >= 1 and h.rank >= (-1 if h.version >= 2 else 0)


@given(st.binary(max_size=300))
def test_garbage_acks_and_bodies_give_decode_error_only(data: bytes) -> None:
    """Random bytes as an ack or a body raise DecodeError or decode; never another exception."""
    header = decode_header(encode_batch("r", 0, "n", 1, 0, [(4, 1, "a", 1.0, None, None)], 0)[0])
    for decode in (decode_ack, lambda d: decode_body(d, header)):
        with contextlib.suppress(DecodeError):
            decode(data)


@given(
    st.lists(
        st.tuples(
            st.just(4),
            st.integers(0, 2**62),
            st.text(min_size=1, max_size=40),
            st.floats(),
            st.none() | st.text(min_size=1, max_size=40),
            st.none() | st.integers(-(2**62), 2**62),
        ),
        min_size=1,
        max_size=50,
    )
)
def test_any_metric_batch_round_trips(events: list[tuple[object, ...]]) -> None:
    """Any batch of metric events survives encode/decode, as single events or as a block
    (floats bit-exact, NaN as NaN)."""
    header, body = encode_batch("run", 0, "n", 1, 0, events, 0)
    decoded = expand(decode_body(body, decode_header(header)))
    for got, sent in zip(decoded, events, strict=True):
        assert got[:3] == list(sent[:3]) and got[4:] == list(sent[4:])
        assert (math.isnan(got[3]) and math.isnan(sent[3])) or got[3] == sent[3]  # type: ignore[arg-type]


def test_node_streams_need_version_2() -> None:
    """rank -1 (a node's own stream) decodes in version 2 and is refused in version 1."""
    assert decode_header(encode_batch("r", -1, "n", 1, 0, [(9, 1, "system", {})], 0)[0]).rank == -1
    with pytest.raises(DecodeError, match="out of range"):
        decode_header(msgpack.packb([1, 1, "r", -1, "n", 1, 0, 1, 0]))
    assert decode_header(msgpack.packb([1, 1, "r", 0, "n", 1, 0, 1, 0])).version == 1  # v1 still reads


def test_a_body_with_a_huge_nested_array_is_refused_before_it_is_built() -> None:
    """A hostile body (one event holding 5 million empty arrays) is refused by the decoder's
    container limits, without building the objects."""
    import msgpack

    header_bytes, _ = encode_batch("r", 0, "n", 1, 0, [(4, 1, "x", 1.0, None, None)], 1)
    body = msgpack.packb([[4, 1, "x", 1.0, None, [[]] * 5_000_000]])
    with pytest.raises(DecodeError, match="max_array_len"):
        decode_body(body, decode_header(header_bytes))
