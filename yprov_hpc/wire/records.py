"""The event schema as code: one typed record per event kind, and the one decoder that checks them.

A *batch* is two ZeroMQ frames (and one journal frame): a small header and a body.

header: ``[version, MSG_BATCH, run_id, rank, node, stream, seq_start, n_events, sent_ts_ns]``
(``rank`` is -1 for a node's own stream of samples, since version 2)
body:   ``[event, ...]``; every event is an array whose first item is its ``Kind``, laid out
as the record of that kind below (a ``NamedTuple`` packs as a msgpack array, so the record *is*
the wire layout; the rank's hot path builds the same tuple literally, pinned by a test).

``stream`` is a random 63-bit id of the sending logger instance (a forked child gets its own),
and events are numbered ``seq_start .. seq_start + n_events - 1`` within their stream. The merge
de-duplicates on ``(rank, stream, seq)`` and reports gaps per stream.

A *reply* is one frame: an ack ``[version, MSG_ACK, stream, seq_start, n_events]`` ("this batch
is in the journal"), or, since version 2, a refusal ``[version, MSG_NACK, stream, seq_start,
n_events, reason]`` ("this batch breaks the schema and was not journaled; do not resend").

Everything that crosses a process boundary is untrusted: ``decode_event`` is the only way the
sidecar and the merge read an event, and it raises ``EventError`` (with the reason) for an
event whose fields have the wrong types or are out of range.
"""

from __future__ import annotations

import reprlib
from collections.abc import Callable
from dataclasses import dataclass
from enum import IntEnum
from typing import Any, NamedTuple

SCHEMA_VERSION = 4
BLOCKS_VERSION = 3  # what a batch without marks in its blocks says (an older sidecar takes it)
SUPPORTED_VERSIONS = frozenset({1, 2, 3, 4})
# Version 2 adds node streams: a batch with rank NODE_RANK carries the sidecar's own events
# (samples of the node). Version 1 batches always have rank >= 0.
# Version 3 adds metric blocks (wire.blocks): one body item for a run of metric events, so a
# body may hold fewer items than the header's n_events. Replies did not change: they keep
# version 2, which every reader since version 2 accepts.
# Version 4 lets a metric block carry mark events too (a 7th item: their positions), so that
# frequent marks do not cut a rank's metrics into runs too short to be blocks.
REPLY_VERSION = 2
NODE_RANK = -1

MSG_BATCH = 1
MSG_ACK = 2
MSG_NACK = 3

# --- bounds (docs/event-protocol.md) ----------------------------------------------------------
INT64_MAX = 2**63 - 1
MAX_RANK = 2**20 - 1  # a million ranks: far beyond any job, small enough to index safely
MAX_WORLD_SIZE = MAX_RANK + 1
MAX_PID = 2**31 - 1
MAX_NAME_CHARS = 1024  # metric, param, artifact, dataset, model names and contexts
MAX_TEXT_CHARS = 1 << 20  # a param value or any string inside an info dict
MAX_INFO_ITEMS = 10_000  # keys of an info dict, items of a list inside one (per level)
MAX_INFO_DEPTH = 8


class Kind(IntEnum):
    """Event kinds; the layout of each is the record class of the same name below."""

    RUN_START = 1
    RUN_END = 2
    PARAM = 3
    METRIC = 4
    ARTIFACT = 5
    MODEL_VERSION = 6
    DATASET = 7
    MARK = 8
    SAMPLE = 9
    EXEC_TIME = 10
    HELLO = 11
    BYE = 12
    ENVIRONMENT = 13
    MODEL = 14
    METRICS = 15  # a block of metric events as columns (wire.blocks), since version 3


class RunStart(NamedTuple):
    kind: int
    ts_ns: int
    info: dict[str, Any]  # run_id, namespace, experiment, rank, world_size, node, launcher, ...


class RunEnd(NamedTuple):
    kind: int
    ts_ns: int
    status: str
    flags: dict[str, Any]  # create_graph, create_svg


class Param(NamedTuple):
    kind: int
    ts_ns: int
    key: str
    value: Any  # a str, int, float, bool or None (others are stored as their JSON text)
    type_name: str


class Metric(NamedTuple):
    kind: int
    ts_ns: int
    key: str
    value: float
    context: str | None
    step: int | None


class Artifact(NamedTuple):
    kind: int
    ts_ns: int
    key: str
    context: str | None
    step: int | None
    info: dict[str, Any]  # source, stored, size_bytes, sha256, is_dir, revision, ...


class ModelVersion(NamedTuple):
    kind: int
    ts_ns: int
    name: str
    context: str | None
    step: int | None
    info: dict[str, Any]


class Dataset(NamedTuple):
    kind: int
    ts_ns: int
    label: str
    context: str | None
    info: dict[str, Any]


class Mark(NamedTuple):
    kind: int
    ts_ns: int
    what: str  # "system" | "carbon"
    context: str | None
    step: int | None


class Sample(NamedTuple):
    kind: int
    ts_ns: int
    source: str  # "system" | "rapl" | "nvml"
    values: dict[str, Any]


class ExecTime(NamedTuple):
    kind: int
    ts_ns: int
    label: str
    seconds: float
    context: str | None
    step: int | None


class Hello(NamedTuple):
    kind: int
    ts_ns: int
    info: dict[str, Any]  # pid, world_size, local_rank, local_world_size, forked, GPU hints


class Bye(NamedTuple):
    kind: int
    ts_ns: int
    stats: dict[str, Any]  # pid


class Environment(NamedTuple):
    kind: int
    ts_ns: int
    info: dict[str, Any]


class Model(NamedTuple):
    kind: int
    ts_ns: int
    label: str
    context: str | None
    step: int | None
    info: dict[str, Any]


Record = (
    RunStart
    | RunEnd
    | Param
    | Metric
    | Artifact
    | ModelVersion
    | Dataset
    | Mark
    | Sample
    | ExecTime
    | Hello
    | Bye
    | Environment
    | Model
)
RECORD_OF_KIND: dict[int, type[Any]] = {
    Kind.RUN_START: RunStart,
    Kind.RUN_END: RunEnd,
    Kind.PARAM: Param,
    Kind.METRIC: Metric,
    Kind.ARTIFACT: Artifact,
    Kind.MODEL_VERSION: ModelVersion,
    Kind.DATASET: Dataset,
    Kind.MARK: Mark,
    Kind.SAMPLE: Sample,
    Kind.EXEC_TIME: ExecTime,
    Kind.HELLO: Hello,
    Kind.BYE: Bye,
    Kind.ENVIRONMENT: Environment,
    Kind.MODEL: Model,
}

Event = tuple[Any, ...]
"""What the rank's buffer holds: a record, or the same fields as a plain tuple."""


_PREVIEW = reprlib.Repr()
_PREVIEW.maxlevel = 3  # a bounded, non-recursive repr: untrusted values may nest 1,000 deep
_PREVIEW.maxstring = _PREVIEW.maxother = 60
_PREVIEW.maxlist = _PREVIEW.maxtuple = _PREVIEW.maxdict = _PREVIEW.maxset = 6


def preview(value: Any) -> str:
    """A short repr of an untrusted value, for error reasons (never recursion-deep, never long)."""
    try:
        return _PREVIEW.repr(value)[:80]
    except Exception:  # a repr that fails: its type is enough
        return f"<{type(value).__name__}>"


class EventError(ValueError):
    """An event that breaks the schema; ``reason`` says which field and why."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class UnknownKind(EventError):
    """An event of a kind this version does not know (a newer writer made it)."""

    def __init__(self, kind: int) -> None:
        super().__init__(f"unknown event kind {kind}")
        self.kind = kind


# --- checks ------------------------------------------------------------------------------------
def _int_in(value: Any, low: int, high: int, what: str) -> int:
    if type(value) is not int or not low <= value <= high:
        raise EventError(f"{what} must be an int in [{low}, {high}], got {preview(value)}")
    return value


def _name(value: Any, what: str) -> str:
    if type(value) is not str or not value or len(value) > MAX_NAME_CHARS:
        raise EventError(
            f"{what} must be a non-empty str of at most {MAX_NAME_CHARS} chars, got {preview(value)}"
        )
    return value


def _opt_name(value: Any, what: str) -> str | None:
    return None if value is None else _name(value, what)


def _opt_step(value: Any) -> int | None:
    if value is None:
        return None
    return _int_in(value, -INT64_MAX - 1, INT64_MAX, "step")


def _number(value: Any, what: str) -> float:
    if type(value) is float:
        return value
    if type(value) is int and abs(value) <= 2**53:
        return float(value)
    raise EventError(f"{what} must be a float, got {preview(value)}")


def check_plain(value: Any, what: str, depth: int = 0) -> None:
    """A JSON-like value of bounded size: str, int (int64), float, bool, None, list, dict[str, ...]."""
    t = type(value)
    if t is str:
        if len(value) > MAX_TEXT_CHARS:
            raise EventError(f"{what}: a string of {len(value)} chars is over {MAX_TEXT_CHARS}")
    elif t is int:
        if not -INT64_MAX - 1 <= value <= 2**64 - 1:
            raise EventError(f"{what}: integer {value} does not fit 64 bits")
    elif t is float or t is bool or value is None or (t is bytes and len(value) <= MAX_TEXT_CHARS):
        return
    elif t is list or t is tuple:
        if depth >= MAX_INFO_DEPTH or len(value) > MAX_INFO_ITEMS:
            raise EventError(f"{what}: a list nested too deep or with more than {MAX_INFO_ITEMS} items")
        for item in value:
            check_plain(item, what, depth + 1)
    elif t is dict:
        if depth >= MAX_INFO_DEPTH or len(value) > MAX_INFO_ITEMS:
            raise EventError(f"{what}: a map nested too deep or with more than {MAX_INFO_ITEMS} keys")
        for key, item in value.items():
            if type(key) is not str or len(key) > MAX_NAME_CHARS:
                raise EventError(
                    f"{what}: map keys must be str of at most {MAX_NAME_CHARS} chars, got {preview(key)}"
                )
            check_plain(item, what, depth + 1)
    else:
        raise EventError(f"{what}: a {t.__name__} is not a plain value")


def _info(value: Any, what: str) -> dict[str, Any]:
    if type(value) is not dict:
        raise EventError(f"{what} must be a map, got {type(value).__name__}")
    check_plain(value, what)
    return value


def _hello_info(value: Any) -> dict[str, Any]:
    info = _info(value, "hello info")
    if "pid" in info:
        _int_in(info["pid"], 1, MAX_PID, "hello pid")
    if "world_size" in info:
        _int_in(info["world_size"], 1, MAX_WORLD_SIZE, "hello world_size")
    if info.get("local_world_size") is not None:
        _int_in(info["local_world_size"], 1, MAX_WORLD_SIZE, "hello local_world_size")
    if info.get("local_rank") is not None:
        _int_in(info["local_rank"], 0, MAX_RANK, "hello local_rank")
    return info


def _start_info(value: Any) -> dict[str, Any]:
    info = _info(value, "run start info")
    for key, high in (("rank", MAX_RANK), ("world_size", MAX_WORLD_SIZE)):
        if key in info:
            _int_in(info[key], 0 if key == "rank" else 1, high, f"run start {key}")
    return info


def decode_event(raw: Any) -> Record:
    """Check one decoded event array and return its typed record; ``EventError`` if it is bad."""
    if (type(raw) is not list and type(raw) is not tuple) or len(raw) < 2:
        raise EventError(f"an event is an array of at least 2 items, got {preview(raw)}")
    kind, ts = raw[0], raw[1]
    if type(kind) is not int:
        raise EventError(f"event kind must be an int, got {preview(kind)}")
    cls = RECORD_OF_KIND.get(kind)
    if cls is None:
        if kind == Kind.METRICS:
            raise EventError("a metric block is many events: wire.blocks.read_block reads it")
        raise UnknownKind(kind)
    if len(raw) != len(cls._fields):
        raise EventError(f"a {Kind(kind).name} event has {len(cls._fields)} fields, got {len(raw)}")
    _int_in(ts, 0, INT64_MAX, "ts_ns")
    if kind == Kind.METRIC:
        if type(raw[2]) is not str or type(raw[3]) is not float:  # the common case, checked fast
            _name(raw[2], "metric name")
            return Metric(
                kind,
                ts,
                raw[2],
                _number(raw[3], "metric value"),
                _opt_name(raw[4], "context"),
                _opt_step(raw[5]),
            )
        if len(raw[2]) > MAX_NAME_CHARS or not raw[2]:
            _name(raw[2], "metric name")
        return Metric(kind, ts, raw[2], raw[3], _opt_name(raw[4], "context"), _opt_step(raw[5]))
    if kind == Kind.SAMPLE:
        return Sample(kind, ts, _name(raw[2], "sample source"), _info(raw[3], "sample values"))
    if kind == Kind.MARK:
        return Mark(kind, ts, _name(raw[2], "mark"), _opt_name(raw[3], "context"), _opt_step(raw[4]))
    if kind == Kind.EXEC_TIME:
        return ExecTime(
            kind,
            ts,
            _name(raw[2], "label"),
            _number(raw[3], "seconds"),
            _opt_name(raw[4], "context"),
            _opt_step(raw[5]),
        )
    if kind == Kind.PARAM:
        check_plain(raw[3], "param value")
        return Param(kind, ts, _name(raw[2], "param name"), raw[3], _name(raw[4], "param type"))
    if kind in (Kind.ARTIFACT, Kind.MODEL_VERSION, Kind.MODEL):
        fields = (
            _name(raw[2], "name"),
            _opt_name(raw[3], "context"),
            _opt_step(raw[4]),
            _info(raw[5], "info"),
        )
        record: Record = cls(kind, ts, *fields)
        return record
    if kind == Kind.DATASET:
        return Dataset(
            kind, ts, _name(raw[2], "dataset label"), _opt_name(raw[3], "context"), _info(raw[4], "info")
        )
    if kind == Kind.RUN_END:
        return RunEnd(kind, ts, _name(raw[2], "status"), _info(raw[3], "run end flags"))
    if kind == Kind.RUN_START:
        return RunStart(kind, ts, _start_info(raw[2]))
    if kind == Kind.HELLO:
        return Hello(kind, ts, _hello_info(raw[2]))
    plain: Record = cls(kind, ts, _info(raw[2], Kind(kind).name.lower()))  # Bye, Environment
    return plain


def check_events(events: list[Any], read_block: Callable[[Any], Any] | None = None) -> str | None:
    """The reason the first bad event of a batch is bad (with its index), or None if all are good.

    The sidecar's check before journaling: metric events (nearly all of them) are checked inline
    without building records; a metric block goes to ``read_block`` (``wire.blocks``, which
    imports this module); every other event goes through ``decode_event``."""
    metric, low, high, max_name = int(Kind.METRIC), -INT64_MAX - 1, INT64_MAX, MAX_NAME_CHARS
    for i, ev in enumerate(events):
        if (
            type(ev) is list
            and len(ev) == 6
            and type(ev[0]) is int
            and ev[0] == metric
            and type(ev[1]) is int
            and type(ev[2]) is str
            and type(ev[3]) is float
            and 0 < len(ev[2]) <= max_name
            and 0 <= ev[1] <= high
            and (ev[4] is None or (type(ev[4]) is str and 0 < len(ev[4]) <= max_name))
            and (ev[5] is None or (type(ev[5]) is int and low <= ev[5] <= high))
        ):
            continue
        try:
            if (
                read_block is not None
                and type(ev) is list
                and ev
                and type(ev[0]) is int
                and ev[0] == Kind.METRICS
            ):
                read_block(ev)
            else:
                decode_event(ev)
        except UnknownKind:
            continue  # a newer writer's kind: journaled as it is, reported by the merge
        except EventError as exc:
            return f"event {i}: {exc.reason}"
        except RecursionError:  # defence in depth: no reason may take the sidecar down
            return f"event {i}: nested too deep"
    return None


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


@dataclass(frozen=True, slots=True)
class Reply:
    """The sidecar's answer to one batch: acked (journaled) or refused with a reason."""

    stream: int
    seq_start: int
    n_events: int
    refused: str | None = None  # None for an ack
