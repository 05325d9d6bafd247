"""Full metric series: one columnar, compressed file per rank (Parquet, zstd), and the per-series
summaries computed from the same columns (pyarrow, not a Python loop per value).

Columns: kind (metric | execution_time | mark), name, context, step, value, ts_ns.
Read a file with ``pyarrow.parquet.read_table`` or pandas/polars.
"""

from __future__ import annotations

import contextlib
import hashlib
import math
import sys
from array import array
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from yprov_hpc.core.atomic import write_bytes_atomic

# the kind column holds codes: a byte a row, taken by Arrow as a buffer (no str per row)
KINDS = ("metric", "execution_time", "mark")
METRIC, EXECUTION_TIME, MARK = range(len(KINDS))
_KIND_CODE = {k: i for i, k in enumerate(KINDS)}


class SeriesColumns:
    """The columns a rank's events are folded into: lists, and machine arrays (no Python object
    an item) of kind codes (``KINDS``), values and times, which a metric block's columns are
    copied into whole and Arrow takes as buffers."""

    __slots__ = ("context", "kind", "name", "step", "ts_ns", "value")

    def __init__(self) -> None:
        self.kind: array[int] = array("b")  # an index into KINDS
        self.name: list[str] = []
        self.context: list[str | None] = []
        self.step: list[int | None] = []
        self.value: array[float] = array("d")
        self.ts_ns: array[int] = array("q")

    def add(
        self, kind: str, name: str, context: str | None, step: int | None, value: float, ts_ns: int
    ) -> None:
        self.kind.append(_KIND_CODE[kind])
        self.name.append(name)
        self.context.append(context)
        self.step.append(step)
        self.value.append(value)
        self.ts_ns.append(ts_ns)

    def extend(self, other: SeriesColumns) -> None:
        """Append another set of columns whole."""
        self.kind.extend(other.kind)
        self.name.extend(other.name)
        self.context.extend(other.context)
        self.step.extend(other.step)
        self.value.extend(other.value)
        self.ts_ns.extend(other.ts_ns)

    def __len__(self) -> int:
        return len(self.ts_ns)


class MarkColumns:
    """A rank's system and carbon marks as columns (what, time, context, step), in event order."""

    __slots__ = ("context", "step", "ts_ns", "what")

    def __init__(self) -> None:
        self.what: list[str] = []
        self.ts_ns: list[int] = []
        self.context: list[str | None] = []
        self.step: list[int | None] = []

    def add(self, what: str, ts_ns: int, context: str | None, step: int | None) -> None:
        self.what.append(what)
        self.ts_ns.append(ts_ns)
        self.context.append(context)
        self.step.append(step)

    def __len__(self) -> int:
        return len(self.ts_ns)


@dataclass(frozen=True)
class Summary:
    """One (kind, name, context) series, summed up. min/max skip NaN; mean is over finite values."""

    kind: str
    name: str
    context: str | None
    count: int
    nan_count: int
    first_step: int | None
    last_step: int | None
    min: float
    max: float
    mean: float
    last: float
    first_ns: int
    last_ns: int


class _NoPandas:
    """A meta path finder that makes ``import pandas`` fail, while it is installed."""

    @staticmethod
    def find_spec(name: str, path: Any = None, target: Any = None) -> None:
        if name == "pandas":
            raise ModuleNotFoundError("pandas is not used by the merge", name="pandas")


def arrow_without_pandas() -> Any:
    """``pyarrow``, told that pandas is absent, for a process that only merges (the sidecar):
    pyarrow's first array imports pandas once to recognise DataFrames, 0.3-0.5 s the merge
    never uses. pandas stays importable for everyone else; pyarrow alone will not use it in this
    process (``Table.to_pandas`` would then fail here: the merge never calls it)."""
    if "pandas" in sys.modules:  # already paid for: nothing to save
        return arrow()
    finder = _NoPandas()
    sys.meta_path.insert(0, finder)  # type: ignore[arg-type]
    try:
        pa = arrow()
        with contextlib.suppress(Exception):  # the C++ converter looks for pandas on its first
            pa.array([0, None])  # non-empty sequence: let it look now, while it cannot find it
        return pa
    finally:
        sys.meta_path.remove(finder)  # type: ignore[arg-type]


def arrow() -> Any:
    """The ``pyarrow`` module, ready to build arrays even while the interpreter shuts down (a
    merge at exit): pyarrow's first array tries to import pandas, which then fails with a
    RuntimeError; pyarrow tries that once, and works without pandas afterwards."""
    import pyarrow as pa

    with contextlib.suppress(RuntimeError):  # pandas cannot be imported at shutdown: not needed
        pa.array([], pa.int64())
    return pa


def _from_machine_array(pa: Any, values: array[Any], kind: Any) -> Any:
    """An Arrow array over a copy of a machine array's bytes (native byte order, as Arrow's)."""
    return pa.Array.from_buffers(kind, len(values), [None, pa.py_buffer(values.tobytes())])


def build_table(columns: SeriesColumns) -> Any:
    """The columns as a pyarrow Table."""
    pa = arrow()

    return pa.table(
        {
            "kind": pa.array(KINDS, pa.string()).take(_from_machine_array(pa, columns.kind, pa.int8())),
            "name": pa.array(columns.name, pa.string()),
            "context": pa.array(columns.context, pa.string()),
            "step": pa.array(columns.step, pa.int64()),
            "value": _from_machine_array(pa, columns.value, pa.float64()),
            "ts_ns": _from_machine_array(pa, columns.ts_ns, pa.int64()),
        }
    )


def parquet_bytes(
    table: Any, use_dictionary: list[str] | bool = True, statistics: list[str] | bool = True
) -> bytes:
    """A table as the bytes of a zstd-compressed Parquet file."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    sink = pa.BufferOutputStream()
    pq.write_table(
        table, sink, compression="zstd", use_dictionary=use_dictionary, write_statistics=statistics
    )
    data: bytes = sink.getvalue().to_pybytes()
    return data


def write_parquet(
    table: Any, path: Path, use_dictionary: list[str] | bool = True, statistics: list[str] | bool = True
) -> str:
    """Write a Parquet file atomically and return its sha256."""
    data = parquet_bytes(table, use_dictionary, statistics)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_bytes_atomic(path, data)
    return hashlib.sha256(data).hexdigest()


def write_series(table: Any, path: Path) -> str:
    """Write the series file and return its sha256: string columns dictionary-encoded, min/max
    statistics for the numeric columns only (the string columns' cost 15 % of the write, and
    with one row group per file no reader can skip anything by them)."""
    return write_parquet(table, path, ["kind", "name", "context"], ["step", "value", "ts_ns"])


def _f(value: Any) -> float:
    return math.nan if value is None else float(value)


def summarize(table: Any) -> list[Summary]:
    """One Summary per (kind, name, context), in a stable order."""
    import pyarrow as pa
    import pyarrow.compute as pc

    if table.num_rows == 0:
        return []
    value = table["value"]
    is_nan = pc.is_nan(value)
    null = pa.scalar(None, pa.float64())
    work = table.append_column("v_seen", pc.if_else(is_nan, null, value))
    work = work.append_column("v_finite", pc.if_else(pc.is_finite(value), value, null))
    work = work.append_column("nan", pc.cast(is_nan, pa.int64()))
    grouped = (
        work.group_by(["kind", "name", "context"], use_threads=False)
        .aggregate(
            [
                ("ts_ns", "count"),
                ("nan", "sum"),
                ("step", "first"),
                ("step", "last"),
                ("v_seen", "min"),
                ("v_seen", "max"),
                ("v_finite", "mean"),
                ("value", "last"),
                ("ts_ns", "min"),
                ("ts_ns", "max"),
            ]
        )
        .to_pylist()
    )
    out = [
        Summary(
            kind=g["kind"],
            name=g["name"],
            context=g["context"],
            count=int(g["ts_ns_count"]),
            nan_count=int(g["nan_sum"] or 0),
            first_step=g["step_first"],
            last_step=g["step_last"],
            min=_f(g["v_seen_min"]),
            max=_f(g["v_seen_max"]),
            mean=_f(g["v_finite_mean"]),
            last=_f(g["value_last"]),
            first_ns=int(g["ts_ns_min"]),
            last_ns=int(g["ts_ns_max"]),
        )
        for g in grouped
    ]
    return sorted(out, key=lambda s: (s.kind, s.name, s.context or ""))


def context_spans(summaries: list[Summary]) -> dict[str, tuple[int, int]]:
    """First and last event time of each context in the series, from its series' summaries."""
    spans: dict[str, tuple[int, int]] = {}
    for s in summaries:
        if s.context is not None:
            first, last = spans.get(s.context, (s.first_ns, s.last_ns))
            spans[s.context] = (min(first, s.first_ns), max(last, s.last_ns))
    return spans


def read_series(path: Path) -> Any:
    """The series table of one rank (a ``pyarrow.Table``)."""
    import pyarrow.parquet as pq

    return pq.read_table(path)
