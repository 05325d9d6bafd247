"""The merge's last stage: every file it writes, each through ``core.atomic`` (a reader sees the
old file or the new one, never a torn mix): series Parquet, environment, documents, report."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import orjson

from yprov_hpc.core.atomic import write_bytes_atomic
from yprov_hpc.fold.series import arrow, write_parquet

__all__ = ["write_combined", "write_document", "write_node_series"]

Sample = tuple[int, str, dict[str, Any]]


def write_document(path: Path, doc: dict[str, Any]) -> str:
    """Write a PROV-JSON document (or any JSON object), indented; return its sha256."""
    data = orjson.dumps(doc, option=orjson.OPT_INDENT_2 | orjson.OPT_NON_STR_KEYS)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_bytes_atomic(path, data)
    return hashlib.sha256(data).hexdigest()


def write_combined(path: Path, collection: Path, documents: dict[str, Path]) -> None:
    """``collect_all_processes``: the collection plus each rank document as a bundle of that name."""
    combined = orjson.loads(collection.read_bytes())
    bundles: dict[str, Any] = {}
    for name, document in documents.items():
        doc = orjson.loads(document.read_bytes())
        doc.pop("prefix", None)
        bundles[name] = doc
    combined["bundle"] = bundles
    write_document(path, combined)


def _flatten(ts: int, source: str, values: dict[str, Any], rows: dict[str, list[Any]]) -> None:
    def add(device: str, metric: str, value: Any) -> None:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return
        rows["ts_ns"].append(ts)
        rows["source"].append(source)
        rows["device"].append(device)
        rows["metric"].append(metric)
        rows["value"].append(float(value))

    for key, value in values.items():
        if isinstance(value, dict):  # ranks / domains / gpus
            for device, inner in value.items():
                if isinstance(inner, dict):
                    for metric, v in inner.items():
                        add(f"{key[:-1] if key.endswith('s') else key}:{device}", metric, v)
        else:
            add("node", key, value)


def write_node_series(samples: list[Sample], path: Path) -> str:
    """All samples of a node in long form (ts_ns, source, device, metric, value), Parquet/zstd."""
    pa = arrow()
    rows: dict[str, list[Any]] = {"ts_ns": [], "source": [], "device": [], "metric": [], "value": []}
    for ts, source, values in sorted(samples, key=lambda s: (s[0], s[1])):
        _flatten(ts, source, values, rows)
    table = pa.table(
        {
            "ts_ns": pa.array(rows["ts_ns"], pa.int64()),
            "source": pa.array(rows["source"], pa.string()).dictionary_encode(),
            "device": pa.array(rows["device"], pa.string()).dictionary_encode(),
            "metric": pa.array(rows["metric"], pa.string()).dictionary_encode(),
            "value": pa.array(rows["value"], pa.float64()),
        }
    )
    return write_parquet(table, path)
