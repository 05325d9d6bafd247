"""Reading the Parquet files of a run: the ranks' metric series and the nodes' samples, as
pandas DataFrames (pandas imported on first use). A missing or broken file is a problem line."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from yprov_hpc.core.errors import YProvError
from yprov_hpc.core.hashing import sha256_file

METRIC_COLUMNS = ["rank", "name", "context", "step", "value", "time", "kind"]
SYSTEM_COLUMNS = ["node", "time", "source", "device", "metric", "value"]


def pandas() -> Any:
    """The pandas module, or a YProvError that says how to install it."""
    try:
        import pandas as pd  # type: ignore[import-untyped]
    except ImportError:
        raise YProvError("reading runs needs pandas: pip install 'yprov-hpc[read]'") from None
    return pd


def _thin(df: Any, max_points: int) -> Any:
    """At most about ``max_points`` rows per (name, context) series, by a fixed stride that keeps
    each series' last row."""
    keys = [df["name"], df["context"].fillna("\0")]
    position = df.groupby(keys, sort=False).cumcount()
    size = df.groupby(keys, sort=False)["value"].transform("size")
    stride = ((size + max_points - 1) // max_points).clip(lower=1)
    return df[(position % stride == 0) | (position == size - 1)]


def read_metrics(
    series: dict[int, tuple[Path, str]], problems: list[str], max_points: int | None = None
) -> Any:
    """The ranks' series files (kind metric and execution_time) as one DataFrame; a file whose
    sha256 differs from the one its document recorded is read and reported. With
    ``max_points``, each rank's series is thinned as it is read (memory stays bounded by one
    rank's file plus the thinned rows: what the pages of a 512-rank run need)."""
    pd = pandas()
    frames = []
    for rank, (path, sha256) in sorted(series.items()):
        table = read_parquet(path, ["kind", "name", "context", "step", "value", "ts_ns"], problems)
        if table is None:
            continue
        changed = f"{path.name}: changed since the merge (sha256 differs from the document)"
        if sha256 and changed not in problems and sha256_file(path) != sha256:
            problems.append(changed)
        df = table.to_pandas()
        df = df[df["kind"].isin(["metric", "execution_time"])]
        if max_points is not None:
            df = _thin(df, max_points)
        df.insert(0, "rank", rank)
        frames.append(df)
    if not frames:
        return pd.DataFrame({c: [] for c in METRIC_COLUMNS})
    out = pd.concat(frames, ignore_index=True)
    out["time"] = pd.to_datetime(out.pop("ts_ns"), unit="ns", utc=True)
    for col in ("kind", "name", "context"):
        out[col] = out[col].astype(str).where(out[col].notna(), None)
    return out[METRIC_COLUMNS]


def read_parquet(path: Path, columns: list[str], problems: list[str]) -> Any:
    """A Parquet file's columns as a pyarrow Table, or None with a problem appended."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(path)
    except FileNotFoundError:
        problems.append(f"{path.name}: missing")
        return None
    except (OSError, pa.ArrowException) as exc:
        problems.append(f"{path.name}: not a readable Parquet file ({exc})")
        return None
    absent = [c for c in columns if c not in table.column_names]
    if absent:
        problems.append(f"{path.name}: columns {absent} missing; ignored")
        return None
    return table.select(columns)


def read_system(node_series: dict[str, Path], problems: list[str]) -> Any:
    """The nodes' sample series (long form) as one DataFrame."""
    pd = pandas()
    frames = []
    for node, path in sorted(node_series.items()):
        table = read_parquet(path, ["ts_ns", "source", "device", "metric", "value"], problems)
        if table is None:
            continue
        df = table.to_pandas()
        for col in ("source", "device", "metric"):
            df[col] = df[col].astype(str)
        df.insert(0, "node", node)
        frames.append(df)
    if not frames:
        return pd.DataFrame({c: [] for c in SYSTEM_COLUMNS})
    out = pd.concat(frames, ignore_index=True)
    out["time"] = pd.to_datetime(out.pop("ts_ns"), unit="ns", utc=True)
    return out[SYSTEM_COLUMNS]
