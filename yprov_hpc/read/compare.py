"""Comparing runs: params that differ, final metrics, energy, joined by label and context
(never by PROV identifier, which embeds the run id)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from yprov_hpc.read.load import RunRecord, load_run, run_fields

__all__ = ["Comparison", "compare_runs", "run_labels"]

_MISSING = object()


@dataclass
class Comparison:
    """Several runs side by side; every list of values has one entry per run, in ``runs`` order."""

    runs: list[RunRecord]
    labels: list[str]
    params: dict[str, list[Any]] = field(default_factory=dict)
    differing: list[str] = field(default_factory=list)
    metrics: dict[tuple[str, str | None], list[float | None]] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        """A JSON-ready form (``yprov compare --json``)."""
        return {
            "runs": [
                {"label": label, **run_fields(run), "problems": run.problems}
                for label, run in zip(self.labels, self.runs, strict=True)
            ],
            "params": {k: self.params[k] for k in sorted(self.params)},
            "params_differing": self.differing,
            "metrics": [
                {"name": name, "context": context, "final": values}
                for (name, context), values in sorted(self.metrics.items(), key=_metric_key)
            ],
        }


def _metric_key(item: tuple[tuple[str, str | None], Any]) -> tuple[str, str]:
    (name, context), _ = item
    return (context or "", name)


def run_labels(runs: list[RunRecord]) -> list[str]:
    """A short, distinct label per run: the run id, with the experiment when ids repeat."""
    ids = [r.id for r in runs]
    labels = [r.id if ids.count(r.id) == 1 else f"{r.experiment}/{r.id}" for r in runs]
    seen: dict[str, int] = {}
    out = []
    for label in labels:
        seen[label] = seen.get(label, 0) + 1
        out.append(label if seen[label] == 1 else f"{label} ({seen[label]})")
    return out


def _same(values: list[Any]) -> bool:
    first = values[0]
    return all(v is not _MISSING and type(v) is type(first) and v == first for v in values)


def compare_runs(paths: list[Path] | list[RunRecord]) -> Comparison:
    """Load (if given paths) and compare runs: each run's params are its lowest rank's, its final
    metrics the last value of the lowest rank that logged the series."""
    runs = [p if isinstance(p, RunRecord) else load_run(p) for p in paths]
    comparison = Comparison(runs=runs, labels=run_labels(runs))
    params = [r.common_params() for r in runs]
    for param in sorted({k for p in params for k in p}):
        values = [p.get(param, _MISSING) for p in params]
        if not _same(values):
            comparison.differing.append(param)
        comparison.params[param] = [None if v is _MISSING else v for v in values]
    finals = [r.final_metrics() for r in runs]
    for series in sorted({k for f in finals for k in f}, key=lambda k: (k[1] or "", k[0])):
        comparison.metrics[series] = [f.get(series) for f in finals]
    return comparison
