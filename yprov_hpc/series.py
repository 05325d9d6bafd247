"""Full metric series: one columnar, compressed file per rank (Parquet, zstd).

Columns: kind (metric | execution_time | mark), name, context, step, value, ts_ns.
Read it with ``pyarrow.parquet.read_table`` or pandas/polars.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .hashing import sha256_file


class SeriesColumns:
    """Column lists, appended to while a rank's events are folded."""

    __slots__ = ("context", "kind", "name", "step", "ts_ns", "value")

    def __init__(self) -> None:
        self.kind: list[str] = []
        self.name: list[str] = []
        self.context: list[str | None] = []
        self.step: list[int | None] = []
        self.value: list[float] = []
        self.ts_ns: list[int] = []

    def add(
        self, kind: str, name: str, context: str | None, step: int | None, value: float, ts_ns: int
    ) -> None:
        self.kind.append(kind)
        self.name.append(name)
        self.context.append(context)
        self.step.append(step)
        self.value.append(value)
        self.ts_ns.append(ts_ns)

    def __len__(self) -> int:
        return len(self.ts_ns)


def write_series(columns: SeriesColumns, path: Path) -> str:
    """Write the series file and return its sha256."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.table(
        {
            "kind": pa.array(columns.kind, pa.string()).dictionary_encode(),
            "name": pa.array(columns.name, pa.string()).dictionary_encode(),
            "context": pa.array(columns.context, pa.string()).dictionary_encode(),
            "step": pa.array(columns.step, pa.int64()),
            "value": pa.array(columns.value, pa.float64()),
            "ts_ns": pa.array(columns.ts_ns, pa.int64()),
        }
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    pq.write_table(table, tmp, compression="zstd")
    tmp.replace(path)
    return sha256_file(path)


def read_series(path: Path) -> Any:
    """The series table of one rank (a ``pyarrow.Table``)."""
    import pyarrow.parquet as pq

    return pq.read_table(path)
