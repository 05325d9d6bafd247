"""The merge's second stage for one rank: its batches, de-duplicated on (stream, seq), folded
into summaries' inputs and series columns.

Every event is checked (``decode_event``, with an inline check of the common metric event, and
``wire.blocks.read_block`` for a block of metric events, whose columns are folded whole);
a bad event is skipped, counted and its reason kept (the first few), and the fold goes on. An
event of a kind this version does not know is counted by kind.
"""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass, field
from operator import itemgetter
from typing import Any

from yprov_hpc.fold.index import Frame, read_batch
from yprov_hpc.fold.markers import RankMarker
from yprov_hpc.fold.series import MARK, METRIC, MarkColumns, SeriesColumns
from yprov_hpc.wire.blocks import Block, drop_leading, event_count, is_block, read_block
from yprov_hpc.wire.records import (
    INT64_MAX,
    MAX_NAME_CHARS,
    Artifact,
    Bye,
    Dataset,
    Environment,
    EventError,
    ExecTime,
    Hello,
    Kind,
    Mark,
    Metric,
    Model,
    ModelVersion,
    Param,
    Record,
    RunEnd,
    RunStart,
    Sample,
    UnknownKind,
    decode_event,
)

__all__ = ["MAX_REASONS", "RankDelivery", "RankFold", "fold_rank"]

MAX_REASONS = 5  # first reasons kept per rank for bad events


@dataclass
class RankFold:
    """Everything the merge learns about one rank from its events."""

    rank: int
    start: dict[str, Any] = field(default_factory=dict)
    start_ns: int | None = None
    end_ns: int | None = None
    last_ns: int = 0
    status: str = ""
    end_flags: dict[str, Any] = field(default_factory=dict)
    params: dict[str, Param] = field(default_factory=dict)
    param_revisions: dict[str, list[Param]] = field(default_factory=dict)  # revisions 2, 3, ... by key
    columns: SeriesColumns = field(default_factory=SeriesColumns)
    contexts: dict[str, list[int]] = field(default_factory=dict)
    artifacts: list[Artifact] = field(default_factory=list)
    environment: dict[str, Any] = field(default_factory=dict)
    models: list[Model] = field(default_factory=list)
    versions: list[ModelVersion] = field(default_factory=list)
    datasets: list[Dataset] = field(default_factory=list)
    marks: MarkColumns = field(default_factory=MarkColumns)
    hellos: int = 0
    byes: int = 0
    unknown_kinds: dict[int, int] = field(default_factory=dict)  # kind -> count (a newer writer's)
    events: int = 0

    def _touch_context(self, ctx: str | None, ts: int) -> None:
        if ctx is None:
            return
        span = self.contexts.get(ctx)
        if span is None:
            self.contexts[ctx] = [ts, ts]
        else:
            span[0] = min(span[0], ts)
            span[1] = max(span[1], ts)

    def add_metrics(self, derived: SeriesColumns) -> None:
        """Derived metrics (the merge's system and carbon metrics at marks), as whole columns."""
        self.columns.extend(derived)

    def add(self, rec: Record) -> None:
        """Fold one checked event."""
        self.events += 1
        self.last_ns = max(self.last_ns, rec.ts_ns)
        if isinstance(rec, Metric):
            self.columns.add("metric", rec.key, rec.context, rec.step, rec.value, rec.ts_ns)
        elif isinstance(rec, ExecTime):
            self.columns.add("execution_time", rec.label, rec.context, rec.step, rec.seconds, rec.ts_ns)
        elif isinstance(rec, Mark):
            self.columns.add("mark", rec.what, rec.context, rec.step, math.nan, rec.ts_ns)
            self.marks.add(rec.what, rec.ts_ns, rec.context, rec.step)
        elif isinstance(rec, Param):
            first = self.params.setdefault(rec.key, rec)
            if first is not rec:  # a later revision (the rank sends one only for a new value)
                later = self.param_revisions.setdefault(rec.key, [])
                if (later[-1] if later else first).value != rec.value:
                    later.append(rec)
        elif isinstance(rec, RunStart):
            self.start, self.start_ns = rec.info, rec.ts_ns
        elif isinstance(rec, RunEnd):
            self.status, self.end_ns, self.end_flags = rec.status, rec.ts_ns, rec.flags
        elif isinstance(rec, Environment):
            self.environment = rec.info
        elif isinstance(rec, Hello):
            self.hellos += 1
        elif isinstance(rec, Bye):
            self.byes += 1
        elif isinstance(rec, (Artifact, Model, ModelVersion, Dataset)):
            self._touch_context(rec.context, rec.ts_ns)
            if isinstance(rec, Artifact):
                self.artifacts.append(rec)
            elif isinstance(rec, Model):
                self.models.append(rec)
            elif isinstance(rec, ModelVersion):
                self.versions.append(rec)
            else:
                self.datasets.append(rec)

    def slim(self) -> RankFold:
        """What the collection needs; the series columns are dropped (bounded memory across ranks)."""
        slim = RankFold(
            self.rank,
            start=self.start,
            start_ns=self.start_ns,
            end_ns=self.end_ns,
            last_ns=self.last_ns,
            status=self.status,
            end_flags=self.end_flags,
        )
        slim.environment = {k: self.environment.get(k) for k in ("host", "user")}
        return slim


@dataclass
class RankDelivery:
    """What the merge found about one rank's delivery."""

    events: int = 0
    duplicates: int = 0
    gaps: list[tuple[int, int, int]] = field(default_factory=list)  # (stream, first, last)
    missing_at_end: int = 0
    malformed_batches: int = 0
    bad_events: int = 0
    bad_reasons: list[str] = field(default_factory=list)  # the first MAX_REASONS
    done: dict[str, Any] = field(default_factory=dict)  # the rank's checked marker, if any

    @property
    def events_missing(self) -> int:
        """Events the rank numbered that no journal or spool holds."""
        return sum(last - first + 1 for _, first, last in self.gaps) + self.missing_at_end

    def bad(self, reason: str, events: int = 1) -> None:
        """Count skipped events (a bad block: the events it claims), keeping the first reasons."""
        self.bad_events += events
        if len(self.bad_reasons) < MAX_REASONS:
            self.bad_reasons.append(reason)


def _fold_events(fold: RankFold, delivery: RankDelivery, events: list[Any], stream: int, seq: int) -> None:
    """Check and fold one batch's events. Metric and mark events (nearly all of them) are checked
    inline and go straight into the columns; every other event goes through ``decode_event``.
    Longer than most functions: the inline checks are the merge's hot loop."""
    cols = fold.columns
    kind, name, ctx, step = cols.kind.append, cols.name.append, cols.context.append, cols.step.append
    value, ts = cols.value.append, cols.ts_ns.append
    metric, low, high, max_name = int(Kind.METRIC), -INT64_MAX - 1, INT64_MAX, MAX_NAME_CHARS
    mark, nan, marks = int(Kind.MARK), math.nan, fold.marks.add
    n = 0
    last = fold.last_ns
    before_items = before_events = 0  # where the last bad event was: its seq, in linear time
    for i, ev in enumerate(events):
        if (
            type(ev) is list
            and len(ev) == 6
            and type(ev[0]) is int
            and ev[0] == metric
            and type(ev[1]) is int
            and type(ev[2]) is str
            and type(ev[3]) is float
            and 0 <= ev[1] <= high
            and 0 < len(ev[2]) <= max_name
            and (ev[4] is None or (type(ev[4]) is str and 0 < len(ev[4]) <= max_name))
            and (ev[5] is None or (type(ev[5]) is int and low <= ev[5] <= high))
        ):
            kind(METRIC)
            name(ev[2])
            ctx(ev[4])
            step(ev[5])
            value(ev[3])
            ts(ev[1])
            if ev[1] > last:
                last = ev[1]
            n += 1
            continue
        if (  # a system or carbon mark (the next most common event), checked inline too
            type(ev) is list
            and len(ev) == 5
            and type(ev[0]) is int
            and ev[0] == mark
            and type(ev[1]) is int
            and type(ev[2]) is str
            and 0 <= ev[1] <= high
            and 0 < len(ev[2]) <= max_name
            and (ev[3] is None or (type(ev[3]) is str and 0 < len(ev[3]) <= max_name))
            and (ev[4] is None or (type(ev[4]) is int and low <= ev[4] <= high))
        ):
            kind(MARK)
            name(ev[2])
            ctx(ev[3])
            step(ev[4])
            value(nan)
            ts(ev[1])
            marks(ev[2], ev[1], ev[3], ev[4])
            if ev[1] > last:
                last = ev[1]
            n += 1
            continue
        try:
            if is_block(ev):
                b = read_block(ev)
                _fold_block(fold, b)
                n += len(b.names)
                last = max(last, max(b.ts_ns))
                continue
            rec = decode_event(ev)
            if type(rec) is Sample:  # a node's event: acked only by a sidecar before this check
                raise EventError("a SAMPLE event belongs to a node stream, not a rank's")
        except UnknownKind as exc:
            fold.unknown_kinds[exc.kind] = fold.unknown_kinds.get(exc.kind, 0) + 1
            continue
        except (EventError, RecursionError) as exc:
            before_events += event_count(events[before_items:i])
            before_items = i
            reason = exc.reason if isinstance(exc, EventError) else "nested too deep"
            delivery.bad(f"stream {stream:x} seq {seq + before_events}: {reason}", event_count([ev]))
            continue
        fold.add(rec)
    fold.events += n
    fold.last_ns = max(fold.last_ns, last)


def _fold_block(fold: RankFold, b: Block) -> None:
    """Append a checked block's columns whole (C loops, no bytecode per metric event); each of
    its marks then takes its kind and a NaN value in the columns, and joins the rank's marks."""
    cols, k = fold.columns, len(b.names)
    base = len(cols.kind)
    cols.kind.frombytes(bytes(k))  # k METRIC codes
    cols.name.extend(b.names)
    cols.context.extend(b.contexts)
    cols.step.extend(b.steps)
    cols.value.extend(b.values)
    cols.ts_ns.extend(b.ts_ns)
    if b.marks:
        at, kind, value, nan = b.marks, cols.kind, cols.value, math.nan
        for p in at:
            kind[base + p] = MARK
            value[base + p] = nan
        # the marks' columns picked whole (a mark every few steps: no call per mark)
        pick = itemgetter(*at) if len(at) > 1 else lambda seq: (seq[at[0]],)
        marks = fold.marks
        marks.what.extend(pick(b.names))
        marks.ts_ns.extend(pick(b.ts_ns))
        marks.context.extend(pick(b.contexts))
        marks.step.extend(pick(b.steps))


def fold_rank(rank: int, frames: list[Frame], marker: RankMarker | None) -> tuple[RankFold, RankDelivery]:
    """Fold one rank's batches in (stream, seq) order, dropping duplicates and recording gaps."""
    fold = RankFold(rank)
    delivery = RankDelivery(done=marker.as_dict() if marker is not None else {})
    by_stream: dict[int, list[Frame]] = defaultdict(list)
    for fr in frames:
        by_stream[fr.stream].append(fr)
    for stream, items in sorted(by_stream.items()):
        items.sort(key=lambda f: (f.seq_start, -f.n_events))
        expected = _fold_stream(fold, delivery, stream, items)
        sent = delivery.done.get("delivery", {}).get("events")
        if delivery.done.get("stream") == stream and type(sent) is int and sent > expected:
            delivery.missing_at_end += sent - expected
    return fold, delivery


def _fold_stream(fold: RankFold, delivery: RankDelivery, stream: int, items: list[Frame]) -> int:
    """Fold one stream's frames in sequence order; the next sequence number expected after it.

    A frame that cannot be decoded covers nothing: another copy of its range (a resend, the
    spool, the aggregator's journal) may still be read; what no readable frame covers is a gap."""
    expected = 0
    unreadable_end = 0  # the furthest sequence number claimed by a frame that could not be read
    for fr in items:
        end = fr.seq_start + fr.n_events
        if end <= expected:
            delivery.duplicates += fr.n_events
            continue
        events = read_batch(fr)
        if events is None:
            delivery.malformed_batches += 1
            unreadable_end = max(unreadable_end, end)
            continue
        skip = max(0, expected - fr.seq_start)
        if fr.seq_start > expected:
            delivery.gaps.append((stream, expected, fr.seq_start - 1))
        delivery.duplicates += skip
        _fold_events(fold, delivery, drop_leading(events, skip), stream, fr.seq_start + skip)
        delivery.events += fr.n_events - skip
        expected = end
    if unreadable_end > expected:
        delivery.gaps.append((stream, expected, unreadable_end - 1))
        expected = unreadable_end
    return expected


def rank_problems(fold: RankFold, delivery: RankDelivery) -> list[str]:
    """What went wrong with one rank's events, one line per kind of trouble."""
    r, problems = fold.rank, []
    if delivery.gaps or delivery.missing_at_end:
        problems.append(f"rank {r}: {delivery.events_missing} events missing (gaps {delivery.gaps[:5]})")
    if delivery.malformed_batches:
        problems.append(f"rank {r}: {delivery.malformed_batches} batches could not be decoded")
    if delivery.bad_events:
        problems.append(
            f"rank {r}: {delivery.bad_events} bad events skipped (first: {'; '.join(delivery.bad_reasons)})"
        )
    if fold.unknown_kinds:
        problems.append(
            f"rank {r}: events of kinds this yprov-hpc does not know were left out "
            f"(a newer version wrote them; merge with it): {fold.unknown_kinds}"
        )
    if delivery.done.get("status") == "lost" and not fold.status:
        problems.append(
            f"rank {r}: lost (its process died without end_run); kept every event acked before that"
        )
    elif not fold.status and not delivery.done:
        problems.append(f"rank {r}: no end_run recorded (killed?); kept all events received")
    return problems
