"""The fold's series columns (lists, and machine arrays for values and times) become the same
Arrow table as the plain Python values they stand for."""

from __future__ import annotations

import math
from array import array
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from yprov_hpc.fold.series import METRIC, SeriesColumns, build_table

steps = st.one_of(st.none(), st.integers(-(2**63), 2**63 - 1))
rows = st.tuples(st.sampled_from(["loss", "acc"]), st.none() | st.just("training"), steps, st.floats())
chunks = st.lists(
    st.tuples(st.sampled_from(["add", "list", "columns"]), st.lists(rows, max_size=20)), max_size=8
)


def _append(cols: SeriesColumns, how: str, chunk: list[tuple[Any, ...]]) -> None:
    if how == "add":
        for name, ctx, step, value in chunk:
            cols.add("metric", name, ctx, step, value, 7)
        return
    if how == "columns":
        other = SeriesColumns()
        _append(other, "list", chunk)
        cols.extend(other)
        return
    cols.kind.extend([METRIC] * len(chunk))
    cols.name.extend(r[0] for r in chunk)
    cols.context.extend(r[1] for r in chunk)
    cols.step.extend(r[2] for r in chunk)
    cols.value.extend(array("d", [r[3] for r in chunk]))
    cols.ts_ns.extend(array("q", [7] * len(chunk)))


@settings(deadline=None)  # the first example pays for pyarrow's first array
@given(chunks)
def test_the_table_holds_every_step_value_and_gap_in_order(parts: list[tuple[str, list[Any]]]) -> None:
    """However the rows came in (one at a time, as lists, as other columns), the table's
    steps are the rows' steps with None where one was missing, and values and times are the
    rows' own."""
    cols = SeriesColumns()
    want: list[tuple[Any, ...]] = []
    for how, chunk in parts:
        _append(cols, how, chunk)
        want.extend(chunk)
    table = build_table(cols)
    assert table["step"].to_pylist() == [w[2] for w in want]
    assert table["step"].null_count == sum(w[2] is None for w in want)
    got_values = table["value"].to_pylist()
    assert all(
        (math.isnan(g) and math.isnan(w[3])) or g == w[3] for g, w in zip(got_values, want, strict=True)
    )
    assert table["name"].to_pylist() == [w[0] for w in want] and table["ts_ns"].to_pylist() == [7] * len(want)


def test_kind_codes_become_the_kind_strings_in_the_table() -> None:
    """The kind column is kept as codes; the table (and so the Parquet file) holds the strings,
    a plain string column, in row order; an unknown kind is refused when added."""
    cols = SeriesColumns()
    for i, kind in enumerate(["metric", "mark", "execution_time", "metric", "mark"]):
        cols.add(kind, f"n{i}", None, i, float(i), i)
    table = build_table(cols)
    assert str(table.schema.field("kind").type) == "string"
    assert table["kind"].to_pylist() == ["metric", "mark", "execution_time", "metric", "mark"]
    with pytest.raises(KeyError):
        cols.add("loss", "x", None, 0, 0.0, 0)
