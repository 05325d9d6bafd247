"""``MetricInfo``: yProv4ML's in-memory record of one metric (``datamodel.metric_data``).

yProv4ML kept every metric's points in the training process and wrote them to a file per
metric; here points go to the sidecar and the merge writes one Parquet series per rank, so the
active run never holds a ``MetricInfo`` (``PROV4ML_DATA.metrics`` is empty). The class is
kept for scripts that import, build or inspect one: it holds points, and ``save_to_file``
writes them as CSV.
"""

from __future__ import annotations

import csv
import os
from pathlib import Path
from typing import Any

from yprov_hpc.compat.warn import warn_once

__all__ = ["MetricInfo"]


class MetricInfo:
    """The points of one metric in one context, by step: ``epochDataList[step] = [(value, ts)]``."""

    def __init__(self, name: str, context: Any, source: Any = None, use_compressor: Any = None) -> None:
        self.name = name
        self.context = context
        self.source = source
        self.use_compressor = use_compressor
        self.total_metric_values = 0
        self.epochDataList: dict[int, list[tuple[Any, int]]] = {}

    def add_metric(self, value: Any, epoch: int, timestamp: int) -> None:
        """One point at step ``epoch`` (yProv4ML's name), with its time in milliseconds."""
        self.epochDataList.setdefault(epoch, []).append((value, timestamp))
        self.total_metric_values += 1

    def save_to_file(
        self,
        path: str | os.PathLike[str],
        file_type: Any = "csv",
        csv_separator: str = ",",
        process: Any = None,
    ) -> Path:
        """Write the held points to ``<path>/<name>_<context>_<source>_GR<process>.csv`` (columns
        value, epoch, time) and forget them, as yProv4ML does. NetCDF and Zarr are written as CSV
        (warned once): the run's own series are Parquet, written by the merge."""
        kind = str(getattr(file_type, "value", file_type)).lower()
        if kind != "csv":
            warn_once("MetricInfo.save_to_file", f"MetricInfo.save_to_file({kind}): written as CSV here")
        out = Path(path) / f"{self.name}_{self.context}_{self.source}_GR{process or 0}.csv"
        out.parent.mkdir(parents=True, exist_ok=True)
        with out.open("a", newline="", encoding="utf-8") as fh:
            writer = csv.writer(fh, delimiter=csv_separator)
            if fh.tell() == 0:
                writer.writerow(["value", "epoch", "time"])
            for epoch, points in self.epochDataList.items():
                writer.writerows((value, epoch, ts) for value, ts in points)
        self.epochDataList = {}
        return out
