"""Metric blocks (wire.blocks): runs of metric events packed as columns read back exactly, cut
exactly, and every hostile column is refused with a reason that names it."""

from __future__ import annotations

import json
import math
import struct
from pathlib import Path
from typing import Any

import msgpack
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from yprov_hpc.core.errors import DecodeError
from yprov_hpc.merge import merge_run
from yprov_hpc.wire.blocks import (
    MIN_BLOCK_EVENTS,
    block_tail,
    check_block,
    drop_leading,
    event_count,
    expand,
    pack_items,
    read_block,
    tail_metrics,
)
from yprov_hpc.wire.codec import decode_body, decode_header, encode_batch
from yprov_hpc.wire.journal import JournalWriter
from yprov_hpc.wire.records import Kind

T0 = 1_780_000_000_000_000_000
METRICS = int(Kind.METRICS)

metric_events = st.tuples(
    st.just(int(Kind.METRIC)),
    st.integers(0, 2**63 - 1),
    st.sampled_from(["loss", "acc", "lr", "ñ-metric"]),
    st.floats(),
    st.none() | st.sampled_from(["training", "validation"]),
    st.none() | st.integers(-(2**63), 2**63 - 1),
)
other_events = st.tuples(
    st.just(int(Kind.MARK)), st.integers(0, 2**62), st.just("epoch"), st.none(), st.integers(0, 9)
)
bodies = st.lists(metric_events | other_events, min_size=1, max_size=60)


def _same(got: list[Any], sent: list[Any]) -> bool:
    """Event lists equal, NaN equal to NaN."""
    if len(got) != len(sent):
        return False
    for g, s in zip(got, sent, strict=True):
        g, s = list(g), list(s)
        if g[0] == int(Kind.METRIC) and math.isnan(g[3]) and math.isnan(s[3]):
            g[3] = s[3] = 0.0
        if g != s:
            return False
    return True


def _block(n: int = 10, **columns: Any) -> list[Any]:
    events = [(int(Kind.METRIC), T0 + i, "loss", float(i), "training", i) for i in range(n)]
    item = msgpack.unpackb(msgpack.packb(pack_items(events, min_block=2)))[0]  # as the wire carries it
    assert item[0] == METRICS
    fields = ["kind", "ts", "names", "values", "contexts", "steps", "marks"]
    if "marks" in columns:
        item.append(None)
    for name, value in columns.items():
        item[fields.index(name)] = value
    return list(item)


@given(bodies)
def test_any_body_round_trips_through_blocks(events: list[tuple[Any, ...]]) -> None:
    """Metric runs become blocks, other events stay; decoding and expanding gives the events back."""
    header, body = encode_batch("r", 0, "n", 1, 0, events, 0)
    items = decode_body(body, decode_header(header))
    assert event_count(items) == len(events)
    assert _same(expand(items), [list(e) for e in events])


@given(bodies, st.integers(0, 70))
def test_dropping_leading_events_cuts_blocks_exactly(events: list[tuple[Any, ...]], k: int) -> None:
    """What another copy already delivered is cut event by event, inside a block too."""
    items = msgpack.unpackb(msgpack.packb(pack_items(events, min_block=2)))  # blocks of any size
    rest = drop_leading(items, k)
    assert event_count(rest) == max(0, len(events) - k)
    assert _same(expand(rest), [list(e) for e in events[k:]])


@given(bodies, st.integers(1, 40))
def test_the_tail_of_a_body_is_its_last_metric_events(events: list[tuple[Any, ...]], k: int) -> None:
    """The live view's tail reads the same last metric events from blocks as from single events."""
    items = msgpack.unpackb(msgpack.packb(pack_items(events, min_block=2)))  # blocks of any size
    want = [list(e) for e in events if e[0] == int(Kind.METRIC)][-k:]
    tail = tail_metrics(items, k)
    got = [
        [int(Kind.METRIC), t, n, v, c, s]
        for t, n, v, c, s in zip(
            tail.ts_ns, tail.names, tail.values, [w[4] for w in want], tail.steps, strict=True
        )
    ]
    assert _same(got, want)


@given(st.lists(metric_events, min_size=1, max_size=60), st.integers(1, 60))
def test_the_fast_tail_of_a_block_is_the_tail(events: list[tuple[Any, ...]], k: int) -> None:
    """The live status's shortcut for a body ending in a plain block gives the same names,
    values, last step and latest time as the general tail."""
    item = msgpack.unpackb(msgpack.packb(pack_items(events, min_block=1)))[-1]
    assume(len(item) == 6 and len(item[2]) >= k)  # the shortcut is for such a block only
    names, values, step, last_ns = block_tail(item, k)
    tail = tail_metrics([item], k)
    assert names == tail.names and _same(
        [[4, 0, "", v, None, None] for v in values], [[4, 0, "", v, None, None] for v in tail.values]
    )
    assert step == next((s for s in reversed(tail.steps) if s is not None), None)
    assert last_ns == max(tail.ts_ns)


def test_short_runs_and_non_float_values_stay_single_events() -> None:
    """Fewer than MIN_BLOCK_EVENTS metrics, or an int value, are not packed into a block."""
    short = [(int(Kind.METRIC), T0, "a", 1.0, None, None)] * (MIN_BLOCK_EVENTS - 1)
    assert pack_items(short) == short
    with_int = [(int(Kind.METRIC), T0, "a", 1.0, None, None)] * 20 + [
        (int(Kind.METRIC), T0, "a", 1, None, None)
    ]
    assert all(item[0] == int(Kind.METRIC) for item in pack_items(with_int))


def test_a_bad_event_is_never_packed_with_good_ones() -> None:
    """An event the reader would refuse (empty name) keeps the run as single events, so only it
    is refused later."""
    events = [(int(Kind.METRIC), T0 + i, "loss", 1.0, None, i) for i in range(20)]
    events[7] = (int(Kind.METRIC), T0, "", 1.0, None, 7)
    assert all(item[0] == int(Kind.METRIC) for item in pack_items(events))


@pytest.mark.parametrize(
    ("columns", "words"),
    [
        ({"ts": b"\x00" * 7}, "timestamps must be 80 bytes"),
        ({"ts": struct.pack("<10q", *([-1] * 10))}, "timestamps must be >= 0"),
        ({"ts": [T0] * 10}, "timestamps must be 80 bytes"),
        ({"names": []}, "names must be a non-empty array"),
        ({"names": "loss"}, "names must be a non-empty array"),
        ({"names": ["loss"] * 9 + [""]}, "names: '' is not a str"),
        ({"names": ["loss"] * 9 + ["x" * 1025]}, "is not a str of 1 to 1024 chars"),
        ({"names": ["loss"] * 9 + [7]}, "names: 7 is not a str"),
        ({"names": ["loss"] * 9 + [[1]]}, "names holds an item that is not a str"),
        ({"values": b"\x00" * 81}, "values must be 80 bytes"),
        ({"values": [1.0] * 10}, "values must be 80 bytes"),
        ({"contexts": [None] * 9}, "contexts must be an array of 10 items"),
        ({"contexts": [None] * 9 + [3]}, "contexts: 3 is not a str"),
        ({"steps": b"\x00" * 8}, "steps must be 80 bytes"),
        ({"steps": [1.5] * 10}, "steps must be nil, 80 bytes or an array"),
        ({"steps": [None] * 9 + [2**63]}, "steps must be int64"),
        ({"kind": int(Kind.METRIC)}, "a metric block is an array of 6 or 7 items"),
        ({"marks": []}, "marks must be a non-empty array"),
        ({"marks": "0"}, "marks must be a non-empty array"),
        ({"marks": [3, 2]}, "strictly increasing positions in 0..9"),
        ({"marks": [2, 2]}, "strictly increasing positions"),
        ({"marks": [-1]}, "strictly increasing positions"),
        ({"marks": [10]}, "positions in 0..9"),
        ({"marks": [True]}, "marks must be"),
        ({"marks": [1.0]}, "marks must be"),
        ({"marks": [[1]]}, "marks must be"),
    ],
)
def test_a_hostile_block_is_refused_naming_the_column(columns: dict[str, Any], words: str) -> None:
    """Every column of a block is checked against its count and type; the reason names it, the
    same from the sidecar's check (which builds no columns) as from the merge's reader."""
    from yprov_hpc.wire.records import EventError

    for reader in (read_block, check_block):
        with pytest.raises(EventError, match=words.replace("(", r"\(").replace("[", r"\[")):
            reader(_block(**columns))


def test_a_good_block_reads_back_its_columns() -> None:
    """A block's columns come back as the events' own values, steps with their gaps."""
    events = [
        (int(Kind.METRIC), T0 + i, f"m{i % 3}", i / 3, None if i % 2 else "training", i if i % 4 else None)
        for i in range(12)
    ]
    block = read_block(msgpack.unpackb(msgpack.packb(pack_items(events, min_block=2)))[0])
    assert list(block.ts_ns) == [e[1] for e in events]
    assert block.names == [e[2] for e in events] and list(block.values) == [e[3] for e in events]
    assert block.contexts == [e[4] for e in events] and block.steps == [e[5] for e in events]


def test_version_rules_for_item_counts() -> None:
    """A version 2 body needs one item per event; a version 3 body may hold blocks, and its
    events must add up to the header's count exactly."""
    events = [(int(Kind.METRIC), T0 + i, "loss", 1.0, None, i) for i in range(20)]
    header, body = encode_batch("r", 0, "n", 1, 0, events, 0)
    v2 = msgpack.packb([2, *msgpack.unpackb(header)[1:]])
    with pytest.raises(DecodeError, match="body has 1 events, header says 20"):
        decode_body(body, decode_header(v2))
    short = msgpack.packb([3, *msgpack.unpackb(header)[1:7], 21, 0])
    with pytest.raises(DecodeError, match="holds 20 events, header says 21"):
        decode_body(body, decode_header(short))


def test_marks_ride_in_blocks_only_from_version_4() -> None:
    """Metrics with a mark every few events make one block that carries the marks' positions
    (version 4); the same body under a version 3 header is refused."""
    events: list[tuple[Any, ...]] = []
    for i in range(40):
        events.append((int(Kind.METRIC), T0 + i, "loss", 1.0, "training", i))
        if i % 5 == 4:
            events.append((int(Kind.MARK), T0 + i, ("system", "carbon")[i % 2], "training", i))
    header, body = encode_batch("r", 0, "n", 1, 0, events, 0)
    items = decode_body(body, decode_header(header))
    assert len(items) == 1 and items[0][0] == METRICS and len(items[0][6]) == 8
    assert read_block(items[0]).marks == [i for i, e in enumerate(events) if e[0] == int(Kind.MARK)]
    assert decode_header(header).version == 4
    v3 = msgpack.packb([3, *msgpack.unpackb(header)[1:]])
    with pytest.raises(DecodeError, match="marks in metric blocks need schema version 4"):
        decode_body(body, decode_header(v3))
    metrics_only = [e for e in events if e[0] == int(Kind.METRIC)]
    assert (
        decode_header(encode_batch("r", 0, "n", 1, 0, metrics_only, 0)[0]).version == 3
    )  # an older sidecar takes it


def test_a_bad_mark_keeps_its_run_single_events() -> None:
    """A mark the reader would refuse (a bool step, an empty name, a missing field) is never
    packed: the run stays single events and only that event is refused later."""
    good = [(int(Kind.METRIC), T0 + i, "m", 1.0, None, i) for i in range(20)]
    for bad in (
        (int(Kind.MARK), T0, "system", None, True),
        (int(Kind.MARK), T0, "", None, 1),
        (int(Kind.MARK), T0, "system", None),
        (int(Kind.MARK), -1, "system", None, 1),
    ):
        events = [*good[:10], bad, *good[10:]]
        assert all(not (type(item) is list and item[0] == METRICS) for item in pack_items(events))


def _journal(root: Path, frames: list[tuple[bytes, bytes]]) -> None:
    (root / "journal").mkdir(parents=True)
    writer = JournalWriter(root / "journal" / "node-0.journal")
    for h, b in frames:
        writer.append(h, b)
    writer.close()


def test_the_merge_of_blocks_equals_the_merge_of_single_events(tmp_path: Path) -> None:
    """The same events sent as blocks (version 3) or one by one (version 2) merge to the same
    series file and rank document."""
    start = (
        int(Kind.RUN_START),
        T0,
        {
            "run_id": "r1",
            "namespace": "http://x.org/",
            "experiment": "e",
            "rank": 0,
            "world_size": 1,
            "node": "n0",
        },
    )
    metrics: list[tuple[Any, ...]] = [
        (int(Kind.METRIC), T0 + 1 + i, ("loss", "acc")[i % 2], 1 / (i + 1), "training", i // 2)
        for i in range(500)
    ]
    for i in range(450, 0, -50):  # marks inside the metric runs: they ride in the blocks too
        metrics.insert(i, (int(Kind.MARK), T0 + 1 + i, ("system", "carbon")[i % 100 // 50], "training", i))
    end = (int(Kind.RUN_END), T0 + 10**9, "finished", {})
    events = [start, *metrics, end]
    as_blocks, one_by_one = [], []
    for s in range(0, len(events), 100):
        chunk = events[s : s + 100]
        header, body = encode_batch("r1", 0, "n0", 5, s, chunk, T0)
        as_blocks.append((header, body))
        assert len(chunk) < MIN_BLOCK_EVENTS or len(msgpack.unpackb(body)) < len(chunk)  # blocks made
        v2 = msgpack.packb([2, *msgpack.unpackb(header)[1:]])
        one_by_one.append((v2, msgpack.packb(chunk)))
    _journal(tmp_path / "a" / "e_r1", as_blocks)
    _journal(tmp_path / "b" / "e_r1", one_by_one)
    for root in (tmp_path / "a" / "e_r1", tmp_path / "b" / "e_r1"):
        merge_run(root, create_svg=False)
    a, b = tmp_path / "a" / "e_r1", tmp_path / "b" / "e_r1"
    assert (a / "metrics" / "rank0.parquet").read_bytes() == (b / "metrics" / "rank0.parquet").read_bytes()
    doc_a, doc_b = (
        json.loads((a / "prov_e_rank0.json").read_text()),
        json.loads((b / "prov_e_rank0.json").read_text()),
    )
    assert doc_a["entity"] == doc_b["entity"]


@given(bodies)
def test_the_trusted_packing_of_checked_events_is_the_same(events: list[tuple[Any, ...]]) -> None:
    """The rank's trusted packing (no field checks) gives the same bytes as the checked one for
    events its verbs made."""
    trusted = pack_items(events, trusted=True, min_block=2)
    assert msgpack.packb(trusted) == msgpack.packb(pack_items(events, min_block=2))


def test_untrusted_packing_never_makes_a_bad_event_good() -> None:
    """A 7-field metric event or a bool step or timestamp is not cut or coerced into a block."""
    good = [(int(Kind.METRIC), T0 + i, "m", 1.0, None, i) for i in range(20)]
    longer = [*good[:10], (int(Kind.METRIC), T0, "m", 1.0, None, 10, "extra"), *good[11:]]
    bool_step = [*good[:10], (int(Kind.METRIC), T0, "m", 1.0, None, True), *good[11:]]
    bool_ts = [*good[:10], (int(Kind.METRIC), True, "m", 1.0, None, 10), *good[11:]]
    for events in (longer, bool_step, bool_ts):
        assert all(item[0] == int(Kind.METRIC) for item in pack_items(events))


def _frames_journal(root: Path, name: str, frames: list[tuple[bytes, bytes]]) -> None:
    (root / "journal").mkdir(parents=True, exist_ok=True)
    writer = JournalWriter(root / "journal" / name)
    for h, b in frames:
        writer.append(h, b)
    writer.close()


def _fold(root: Path) -> tuple[Any, Any]:
    from yprov_hpc.fold.index import index_journals
    from yprov_hpc.fold.rankfold import fold_rank

    index = index_journals(root / "journal")
    return fold_rank(0, index.ranks[0], None)


def _metrics(seq: int, n: int) -> list[tuple[Any, ...]]:
    return [(int(Kind.METRIC), T0 + seq + i, "m", float(seq + i), None, seq + i) for i in range(n)]


def test_a_bad_event_is_reported_at_its_sequence_number_behind_blocks(tmp_path: Path) -> None:
    """The seq named for a bad event counts the events of the blocks before it."""
    bad = [int(Kind.METRIC), T0, "", 1.0, None, None]
    body = msgpack.packb(
        [*pack_items(_metrics(0, 10), min_block=2), bad, *pack_items(_metrics(11, 9), min_block=2), bad]
    )
    header = encode_batch("r1", 0, "n0", 5, 0, [(0,)] * 21, T0)[0]
    _frames_journal(tmp_path, "node-n0.journal", [(header, body)])
    fold, delivery = _fold(tmp_path)
    assert fold.events == 19 and delivery.bad_events == 2
    assert [r.split(":")[0] for r in delivery.bad_reasons] == ["stream 5 seq 10", "stream 5 seq 20"]


def test_a_bad_block_cut_by_a_duplicate_copy_is_reported(tmp_path: Path) -> None:
    """Events 0-4 arrive good; a copy of 3-12 holds a bad block: its events are reported bad, not
    dropped unseen with the duplicates."""
    first = encode_batch("r1", 0, "n0", 5, 0, _metrics(0, 5), T0)
    block = msgpack.unpackb(msgpack.packb(pack_items(_metrics(3, 10), min_block=2)))[0]
    block[1] = b"\x00" * 7  # timestamps of the wrong length
    second = (encode_batch("r1", 0, "n0", 5, 3, _metrics(3, 10), T0)[0], msgpack.packb([block]))
    _frames_journal(tmp_path, "node-n0.journal", [first, second])
    fold, delivery = _fold(tmp_path)
    assert fold.events == 5 and delivery.bad_events == 10 and delivery.bad_reasons


def test_an_unreadable_frame_does_not_hide_good_copies_of_its_range(tmp_path: Path) -> None:
    """A frame claiming 0-19 whose body does not decode (the aggregator's journal, say) leaves
    the readable copies of 0-9 and 10-19 to be folded: all 20 events, no gap."""
    good = [encode_batch("r1", 0, "n0", 5, s, _metrics(s, 10), T0) for s in (0, 10)]
    broken = (encode_batch("r1", 0, "n0", 5, 0, _metrics(0, 20), T0)[0], b"\xc1garbage")
    _frames_journal(tmp_path, "node-n0.journal", good)
    _frames_journal(tmp_path, "agg-n0.journal", [broken])
    fold, delivery = _fold(tmp_path)
    assert fold.events == 20 and delivery.gaps == [] and delivery.malformed_batches == 1


def test_an_unreadable_frame_with_no_other_copy_is_a_gap(tmp_path: Path) -> None:
    """What no readable frame covers is reported as a gap, at the end of the stream too."""
    frames = [encode_batch("r1", 0, "n0", 5, 0, _metrics(0, 10), T0)]
    frames.append((encode_batch("r1", 0, "n0", 5, 10, _metrics(10, 10), T0)[0], b"\xc1garbage"))
    _frames_journal(tmp_path, "node-n0.journal", frames)
    fold, delivery = _fold(tmp_path)
    assert fold.events == 10 and delivery.gaps == [(5, 10, 19)]
