"""yProv4ML's getters, reading finished runs: ``list_parameters``, ``get_param``, ``list_metrics``,
``get_metric``, ``list_runs_in_proj``, ``list_provjson_in_proj``, and the PROV-JSON readers
``list_activities``, ``list_entities``, ``get_parameter``.

A ``source`` is a run directory or any file inside one (a ``prov_*.json`` document, as yProv4ML
scripts pass); params and metrics come from the run loader (``yprov_hpc.read.load.load_run``),
the PROV readers from the document itself.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

__all__ = [
    "get_metric",
    "get_param",
    "get_parameter",
    "list_activities",
    "list_entities",
    "list_metrics",
    "list_parameters",
    "list_provjson_in_proj",
    "list_runs_in_proj",
]


def _run_dir(source: str | os.PathLike[str]) -> Path:
    path = Path(source)
    return path if path.is_dir() else path.parent


def _load(source: str | os.PathLike[str]) -> Any:
    from yprov_hpc.read.load import load_run  # the read stage's loader, when a getter is used

    return load_run(_run_dir(source))


def _document(source: dict[str, Any] | str | os.PathLike[str]) -> dict[str, Any]:
    if isinstance(source, dict):
        return source
    path = Path(source)
    if path.is_dir():
        found = sorted(path.glob("prov_*_rank0.json")) or sorted(path.glob("prov_*.json"))
        if not found:
            raise FileNotFoundError(f"no prov_*.json document in {path}")
        path = found[0]
    data: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return data


def _plain(value: Any) -> Any:
    return value["$"] if isinstance(value, dict) and "$" in value else value


def list_activities(source: dict[str, Any] | str | os.PathLike[str]) -> list[str]:
    """The identifiers of a document's activities."""
    return list(_document(source).get("activity", {}))


def list_entities(
    source: dict[str, Any] | str | os.PathLike[str], entity_type: str | None = None
) -> list[str]:
    """The identifiers of a document's entities, of one ``prov:type`` when given (a record has
    one or several: ``yprov:Metric`` and ``provml:Metric`` both find a metric)."""
    entities = _document(source).get("entity", {})
    if entity_type is None:
        return list(entities)
    return [k for k, v in entities.items() if entity_type in _types(v.get("prov:type"))]


def _types(value: Any) -> set[Any]:
    return {_plain(v) for v in (value if isinstance(value, list) else [value])}


def get_parameter(
    source: dict[str, Any] | str | os.PathLike[str], name: str, param: str, unwrap: bool = True
) -> Any:
    """One attribute of a record (``param`` as given, or with a ``yprov:``/``prov:`` prefix)."""
    doc = _document(source)
    record = doc.get("activity", {}).get(name) or doc.get("entity", {}).get(name)
    if record is None:
        raise KeyError(f"no activity or entity named {name!r}")
    for key in (param, f"yprov:{param}", f"prov:{param}", f"dcterms:{param}"):
        if key in record:
            return _plain(record[key]) if unwrap else record[key]
    return None


def list_parameters(source: str | os.PathLike[str], rank: int = 0) -> dict[str, Any]:
    """The params one rank logged (rank 0 by default), by key."""
    params: dict[int, dict[str, Any]] = _load(source).params
    return dict(params.get(rank, {}))


def get_param(source: str | os.PathLike[str], name: str, rank: int = 0) -> Any:
    """One param's value; KeyError naming it when it was not logged."""
    params = list_parameters(source, rank)
    if name not in params:
        raise KeyError(f"param {name!r} was not logged (logged: {sorted(params)})")
    return params[name]


def list_metrics(source: str | os.PathLike[str], context: str | None = None) -> Any:
    """One row per (rank, metric, context): count, first and last step, min, max, last value."""
    frame = _load(source).metrics
    if context is not None:
        frame = frame[frame["context"] == context]
    grouped = frame.sort_values(["step", "time"]).groupby(["rank", "name", "context"], dropna=False)
    return (
        grouped["value"]
        .agg(["count", "min", "max", "last"])
        .join(grouped["step"].agg(first_step="first", last_step="last"))
        .reset_index()
    )


def get_metric(
    source: str | os.PathLike[str], name: str, context: str | None = None, rank: int | None = None
) -> Any:
    """Every point of one metric: a DataFrame with columns rank, name, context, step, value, time."""
    frame = _load(source).metrics
    keep = frame["name"] == name
    if context is not None:
        keep &= frame["context"] == context
    if rank is not None:
        keep &= frame["rank"] == rank
    return frame[keep].reset_index(drop=True)


def list_runs_in_proj(path: str | os.PathLike[str]) -> list[Path]:
    """The run directories in a save directory (those with a journal or a document)."""
    root = Path(path)
    return sorted(
        p for p in root.iterdir() if p.is_dir() and ((p / "journal").is_dir() or any(p.glob("prov_*.json")))
    )


def list_provjson_in_proj(path: str | os.PathLike[str]) -> list[Path]:
    """The main document of each run in a save directory: its collection, else its rank-0 document."""
    found = []
    for run in list_runs_in_proj(path):
        docs = sorted(run.glob("prov_*_collection.json")) or sorted(run.glob("prov_*.json"))
        if docs:
            found.append(docs[0])
    return found
