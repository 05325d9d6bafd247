"""Metric blocks: a run of metric events packed as columns, one body item for many events.

Since schema version 3 a batch body item may be a *block* instead of one event:

``[Kind.METRICS, ts_ns, names, values, contexts, steps]`` or, since version 4,
``[Kind.METRICS, ts_ns, names, values, contexts, steps, marks]``

- ``ts_ns``: ``bin``, n little-endian int64 (each >= 0);
- ``names``: array of n str (1..MAX_NAME_CHARS chars);
- ``values``: ``bin``, n little-endian float64 (NaN and inf kept);
- ``contexts``: array of n items, each nil or a str (1..MAX_NAME_CHARS chars);
- ``steps``: nil (no event has a step), ``bin`` of n little-endian int64, or an array of n items,
  each nil or an int64;
- ``marks`` (version 4, optional): array of the positions, strictly increasing, each in
  ``0 .. n - 1``, of the events that are ``Kind.MARK`` events (a system or carbon mark): their
  name is the mark's ``what``, their value is NaN and means nothing.

A block of n events stands for the events ``seq .. seq + n - 1`` in body order, exactly as n
``Kind.METRIC`` (and ``Kind.MARK``) items would: the header's ``n_events`` counts events, not
body items. Marks ride in blocks so that a mark every few steps (``log_system_metrics``) does
not cut a rank's metrics into runs too short to be blocks. Packing and
checking columns costs a fraction of per-event arrays, on the rank's sender thread (C loops:
``zip``, ``array``), in the sidecar's check and in the merge's fold.

Everything here reads untrusted bytes: ``read_block`` checks every column and raises
``EventError`` naming what is wrong.
"""

from __future__ import annotations

import sys
from array import array
from bisect import bisect_left
from collections.abc import Sequence
from itertools import compress, repeat
from operator import itemgetter
from struct import unpack_from
from typing import Any, NamedTuple

from yprov_hpc.wire.records import INT64_MAX, MAX_NAME_CHARS, EventError, Kind, check_events, preview

__all__ = [
    "MIN_BLOCK_EVENTS",
    "Block",
    "Tail",
    "block_tail",
    "check_block",
    "check_items",
    "drop_leading",
    "event_count",
    "expand",
    "has_blocks",
    "is_block",
    "pack_body",
    "pack_items",
    "read_block",
    "tail_metrics",
]

# shorter runs of metric events stay single events: a block's fixed cost (~4 µs to check and
# fold) is not worth it below (measured: 9-event blocks 633 ns per event, single events 431)
MIN_BLOCK_EVENTS = 16
_METRIC = int(Kind.METRIC)
_MARK = int(Kind.MARK)
_METRICS = int(Kind.METRICS)
_ROW_KINDS = frozenset({_METRIC, _MARK})  # the kinds a block holds
_NAN = float("nan")
_BIG_ENDIAN = sys.byteorder == "big"
_kind_of = itemgetter(0)
_NONE_TYPE = type(None)
_STEP_TYPES = frozenset({int, _NONE_TYPE})


class Block(NamedTuple):
    """A checked block's columns, one item per event."""

    ts_ns: array[int]
    names: list[str]
    values: array[float]
    contexts: list[str | None]
    steps: list[int | None]
    marks: list[int]  # positions of the mark events (their value is NaN), strictly increasing


def _int64_bytes(values: Any) -> bytes:
    arr = array("q", values)
    if _BIG_ENDIAN:
        arr.byteswap()
    return arr.tobytes()


def _float64_bytes(values: Any) -> bytes:
    arr = array("d", values)
    if _BIG_ENDIAN:
        arr.byteswap()
    return arr.tobytes()


def _block(
    events: Sequence[Any],
    trusted: bool,
    columns: list[tuple[Any, ...]] | None = None,
    marks: list[int] | None = None,
) -> list[Any] | None:
    """One block of metric event tuples, or None if they do not make a block its reader accepts
    (the caller then sends them as single events, each checked on its own: nothing is coerced,
    and one bad event never takes good ones down with it). ``trusted``: every field was checked
    when the event was made (``Run.log_metric``); only the column types are left to ``array``."""
    try:
        cols = columns or list(zip(*events, strict=False))
        _, ts, names, values, contexts, steps = cols  # 6 columns, each as long as the shortest event
        if not trusted:
            if set(map(len, events)) != {6} or set(map(type, ts)) != {int} or min(ts) < 0:
                return None  # zip would cut a longer event short; array("q") takes a bool
            if set(map(type, values)) != {float} or not set(map(type, steps)) <= _STEP_TYPES:
                return None  # array("d") would coerce an int, array("q") a bool
            _check_names(names, len(names), "names", optional=False)
            _check_names(contexts, len(names), "contexts", optional=True)
        block = [
            _METRICS,
            _int64_bytes(ts),
            names,
            _float64_bytes(values),
            contexts,
            _step_column(steps, trusted),
        ]
        return [*block, marks] if marks else block
    except (TypeError, ValueError, OverflowError):  # EventError is a ValueError
        return None


def _step_column(steps: tuple[Any, ...], trusted: bool) -> Any:
    if steps[0] is not None:
        try:
            return _int64_bytes(steps)  # every step given (the common case)
        except TypeError:  # a None further on
            pass
    if steps.count(None) == len(steps):
        return None
    return list(steps) if trusted else _steps(list(steps), len(steps))


def pack_items(
    events: Sequence[Any], *, trusted: bool = False, min_block: int = MIN_BLOCK_EVENTS
) -> Sequence[Any]:
    """The body items for ``events`` (tuples laid out as records): runs of at least
    ``min_block`` metric and mark events, at least one a metric, become blocks; every other
    event stays as it is. ``trusted``: the events come from the rank's own checked verbs (see
    ``_block``)."""
    return pack_body(events, trusted=trusted, min_block=min_block)[0]


def pack_body(
    events: Sequence[Any], *, trusted: bool = False, min_block: int = MIN_BLOCK_EVENTS
) -> tuple[Sequence[Any], bool]:
    """``pack_items``, and whether a block carries marks (the body then needs version 4)."""
    n = len(events)
    if n < min_block:
        return events, False
    cols = list(zip(*events, strict=False))
    if len(cols) == 6 and cols[0].count(_METRIC) == n:  # the common case: nothing but metrics
        block = _block(events, trusted, cols)
        return (events, False) if block is None else ([block], False)
    kinds = list(map(_kind_of, events))
    items: list[Any] = []
    marked = False
    start = 0
    while start < n:
        if kinds[start] not in _ROW_KINDS:
            items.append(events[start])
            start += 1
            continue
        end = start
        while end < n and kinds[end] in _ROW_KINDS:
            end += 1
        run = events[start:end]
        block = _mixed_block(run, kinds[start:end], trusted) if end - start >= min_block else None
        if block is None:
            items.extend(run)
        else:
            items.append(block)
            marked = marked or len(block) == 7
        start = end
    return items, marked


def _mixed_block(run: Sequence[Any], kinds: list[int], trusted: bool) -> list[Any] | None:
    """A block of a run of metric and mark events (None: see ``_block``); each mark, as
    ``(kind, ts, what, context, step)``, takes a NaN value in the values column."""
    marks = list(compress(range(len(kinds)), map(_MARK.__eq__, kinds)))
    if len(marks) == len(kinds):
        return None  # marks alone: no metric to carry
    if not marks:
        return _block(run, trusted)
    rows = list(run)
    for i in marks:
        mark = rows[i]
        if len(mark) != 5:
            return None
        rows[i] = (_METRIC, mark[1], mark[2], _NAN, mark[3], mark[4])
    return _block(rows, trusted, marks=marks)


def _column(data: Any, n: int, code: str, what: str) -> array[Any]:
    if type(data) is not bytes or len(data) != 8 * n:
        raise EventError(f"metric block {what} must be {8 * n} bytes (n={n}), got {type(data).__name__}")
    arr = array(code)
    arr.frombytes(data)
    if _BIG_ENDIAN:
        arr.byteswap()
    return arr


def _check_names(values: Any, n: int, what: str, *, optional: bool) -> None:
    if (type(values) is not list and type(values) is not tuple) or len(values) != n:
        raise EventError(f"metric block {what} must be an array of {n} items")
    try:
        distinct = set(values)
    except TypeError:  # an unhashable item: certainly not a str
        raise EventError(f"metric block {what} holds an item that is not a str") from None
    for s in distinct:
        if type(s) is str and 0 < len(s) <= MAX_NAME_CHARS:
            continue
        if optional and s is None:
            continue
        raise EventError(f"metric block {what}: {preview(s)} is not a str of 1 to {MAX_NAME_CHARS} chars")


def _steps(data: Any, n: int) -> list[int | None]:
    if data is None:
        return list(repeat(None, n))
    if type(data) is bytes:
        return _column(data, n, "q", "steps").tolist()
    if type(data) is not list or len(data) != n or not set(map(type, data)) <= _STEP_TYPES:
        raise EventError(f"metric block steps must be nil, {8 * n} bytes or an array of {n} ints or nils")
    ints = [s for s in data if s is not None]
    if ints and (min(ints) < -INT64_MAX - 1 or max(ints) > INT64_MAX):
        raise EventError("metric block steps must be int64")
    return data


def _check(raw: Any) -> tuple[int, array[int]]:
    """Every check of a block item but the steps', in the reader's order: (n, the timestamps).
    The values column is checked by its length only: any float64 is a value (NaN and inf too)."""
    if not is_block(raw):
        raise EventError(f"a metric block is an array of 6 or 7 items, got {preview(raw)}")
    names = raw[2]
    n = len(names) if type(names) is list else 0
    if n < 1:
        raise EventError("metric block names must be a non-empty array")
    ts = _column(raw[1], n, "q", "timestamps")
    if min(ts) < 0:
        raise EventError("metric block timestamps must be >= 0")
    _check_names(names, n, "names", optional=False)
    if type(raw[3]) is not bytes or len(raw[3]) != 8 * n:
        raise EventError(f"metric block values must be {8 * n} bytes (n={n}), got {type(raw[3]).__name__}")
    _check_names(raw[4], n, "contexts", optional=True)
    return n, ts


def read_block(raw: Any) -> Block:
    """The checked columns of one block item (``EventError`` naming what is wrong)."""
    n, ts = _check(raw)
    values = _column(raw[3], n, "d", "values")
    return Block(ts, raw[2], values, raw[4], _steps(raw[5], n), _marks(raw[6], n) if len(raw) == 7 else [])


def check_block(raw: Any) -> None:
    """``read_block``'s checks, without building the columns it does not need to look at (the
    sidecar's check before journaling): a steps column of bytes is checked by its length."""
    n, _ = _check(raw)
    steps = raw[5]
    if type(steps) is bytes:
        if len(steps) != 8 * n:
            raise EventError(f"metric block steps must be {8 * n} bytes (n={n}), got bytes")
    else:
        _steps(steps, n)
    if len(raw) == 7:
        _marks(raw[6], n)


def _marks(data: Any, n: int) -> list[int]:
    if (
        type(data) is not list
        or not data
        or set(map(type, data)) != {int}
        or data[0] < 0
        or data[-1] >= n
        or sorted(set(data)) != data
    ):
        raise EventError(
            f"metric block marks must be a non-empty array of strictly increasing positions in 0..{n - 1}"
        )
    return data


def is_block(item: Any) -> bool:
    """True for a body item that claims to be a metric block (checked or not)."""
    return type(item) is list and 6 <= len(item) <= 7 and type(item[0]) is int and item[0] == _METRICS


def _size(item: Any) -> int:
    """Events one body item stands for (a bad block whose names are no array counts one:
    ``read_block`` refuses it anyway)."""
    if is_block(item) and type(item[2]) is list:
        return max(1, len(item[2]))
    return 1


def has_blocks(items: list[Any]) -> bool:
    """True if any item may be a metric block: one C pass over the items' kinds when every
    item is indexable (a str or a map item falls to the exact check)."""
    try:
        kinds = list(map(_kind_of, items))
    except (TypeError, IndexError, KeyError):
        return any(map(is_block, items))
    return _METRICS in kinds and any(map(is_block, items))


def event_count(items: list[Any]) -> int:
    """Events a body's items stand for: a block counts its events, anything else one."""
    return sum(map(_size, items)) if has_blocks(items) else len(items)


def drop_leading(items: list[Any], k: int) -> list[Any]:
    """``items`` without their first ``k`` events (a block is cut inside, column by column): the
    part of a batch that another copy already delivered."""
    if k <= 0:
        return items
    seen = 0
    for i, item in enumerate(items):
        size = _size(item)
        if seen + size <= k:
            seen += size
            continue
        rest = items[i + 1 :]
        if seen == k:
            return [item, *rest]
        try:
            block = read_block(item)
        except EventError:
            return [item, *rest]  # a bad block is bad wherever it is cut: its reader reports it
        return [_cut(block, k - seen), *rest]
    return []


class Tail(NamedTuple):
    """The last metric events of a body, as columns (oldest first)."""

    names: list[str]
    values: list[float]
    steps: list[int | None]
    ts_ns: list[int]


def tail_metrics(items: list[Any], k: int) -> Tail:
    """The last ``k`` metric events of a body that was already checked (what a live view shows),
    read from the ends of the blocks' columns only."""
    chunks: list[tuple[list[Any], list[Any], list[Any], list[Any]]] = []
    got = 0
    for item in reversed(items):
        if got >= k:
            break
        if is_block(item):
            chunk = _block_tail(item, k - got)
            chunks.append(chunk)
            got += len(chunk[0])
        elif type(item[0]) is int and item[0] == _METRIC:
            chunks.append(([item[2]], [item[3]], [item[5]], [item[1]]))
            got += 1
    tail = Tail([], [], [], [])
    for names, values, steps, ts in reversed(chunks):
        tail.names.extend(names)
        tail.values.extend(values)
        tail.steps.extend(steps)
        tail.ts_ns.extend(ts)
    return tail


def block_tail(item: list[Any], k: int) -> tuple[list[str], tuple[float, ...], int | None, int]:
    """The live view of a checked block of at least ``k`` events and no marks: its last ``k``
    names and values, its last step (None if it has none) and its latest time, read from the
    ends of its columns only."""
    n, at = len(item[2]), 8 * (len(item[2]) - k)
    steps = item[5]
    if type(steps) is bytes:
        step: int | None = unpack_from("<q", steps, 8 * (n - 1))[0]
    elif steps is None:
        step = None
    else:
        step = next((s for s in reversed(steps[-k:]) if s is not None), None)
    return item[2][-k:], unpack_from(f"<{k}d", item[3], at), step, max(unpack_from(f"<{k}q", item[1], at))


def _block_tail(item: list[Any], want: int) -> tuple[list[Any], list[Any], list[Any], list[Any]]:
    """The last ``want`` metric events of a checked block (fewer if it holds fewer), as
    (names, values, steps, ts_ns): the ends of its columns, its marks left out."""
    n = len(item[2])
    marks: list[int] = item[6] if len(item) == 7 else []
    want = min(want, n - len(marks))
    m, inside = want, 0  # the shortest end of the block that holds `want` metrics
    while True:
        inside = len(marks) - bisect_left(marks, n - m)
        if m - inside >= want:
            break
        m = want + inside
    if m == 0:
        return [], [], [], []
    at, steps = 8 * (n - m), item[5]
    if type(steps) is bytes:
        steps = list(unpack_from(f"<{m}q", steps, at))
    elif steps is None:
        steps = [None] * m
    else:
        steps = steps[-m:]
    cols = (
        item[2][-m:],
        list(unpack_from(f"<{m}d", item[3], at)),
        steps,
        list(unpack_from(f"<{m}q", item[1], at)),
    )
    if not inside:
        return cols
    keep = [True] * m
    for p in marks[len(marks) - inside :]:
        keep[p - (n - m)] = False
    names, values, steps, ts = (list(compress(col, keep)) for col in cols)
    return names, values, steps, ts


def _cut(block: Block, k: int) -> list[Any]:
    steps = block.steps[k:]
    step_col: Any = list(steps) if None in steps else _int64_bytes(steps)
    cut = [
        _METRICS,
        _int64_bytes(block.ts_ns[k:]),
        block.names[k:],
        _float64_bytes(block.values[k:]),
        block.contexts[k:],
        step_col,
    ]
    marks = [p - k for p in block.marks if p >= k]
    return [*cut, marks] if marks else cut


def expand(items: list[Any]) -> list[Any]:
    """The body as single events (blocks turned back into metric event arrays); a bad block is
    left as it is, for the reader's own check to report."""
    out: list[Any] = []
    for item in items:
        if is_block(item):
            try:
                b = read_block(item)
            except EventError:
                out.append(item)
                continue
            rows = zip(b.ts_ns, b.names, b.values, b.contexts, b.steps, strict=True)
            events: list[Any] = [[_METRIC, t, name, v, c, s] for t, name, v, c, s in rows]
            for i in b.marks:
                t, name, _, c, s = events[i][1:]
                events[i] = [_MARK, t, name, c, s]
            out.extend(events)
        else:
            out.append(item)
    return out


def check_items(items: list[Any]) -> str | None:
    """The reason the first bad item of a body is bad, or None: ``records.check_events`` with
    blocks checked by ``check_block``."""
    return check_events(items, check_block)
