"""A model card of a finished run (``MODEL_CARD.md`` in the run directory), from its documents.

What ``end_run(create_card=True)`` writes, and ``yprov export card RUN``: the model versions and
their hashes, the datasets, the params, the final metrics per context, the energy, the status
and the problems, each figure as the documents record it (nothing recomputed).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from yprov_hpc.core.atomic import write_bytes_atomic
from yprov_hpc.read.load import RunRecord, load_run

__all__ = ["CARD_NAME", "export_card"]

CARD_NAME = "MODEL_CARD.md"


def _cell(value: Any) -> str:
    text = "" if value is None else f"{value:.6g}" if isinstance(value, float) else str(value)
    return text.replace("|", "\\|").replace("\n", " ")[:200]


def _table(header: list[str], rows: list[list[Any]]) -> list[str]:
    if not rows:
        return ["(none recorded)", ""]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(_cell(v) for v in row) + " |" for row in rows]
    return [*lines, ""]


def card_text(run: RunRecord) -> str:
    """The card's Markdown (pure: the loaded run in, text out)."""
    lines = [f"# Model card: {run.experiment}, run {run.id}", ""]
    lines += [f"- status: {run.status}", f"- ranks: {len(run.ranks)} (world size {run.world_size})"]
    if run.start or run.end:
        lines.append(f"- from {run.start} to {run.end}")
    if run.energy_j is not None:
        lines.append(f"- energy: {run.energy_j:.6g} J")
    lines += ["- provenance: " + ", ".join(p.name for p in ([run.collection] if run.collection else [])), ""]
    lines += ["## Model versions", ""]
    lines += _table(
        ["name", "version", "rank", "path", "sha256"],
        [
            [m.get("model_name"), m.get("version"), m.get("rank"), m.get("path"), m.get("sha256")]
            for m in run.model_versions
        ],
    )
    lines += ["## Datasets", ""]
    lines += _table(
        ["label", "context", "rank", "samples"],
        [[d.get("prov:label"), d.get("context"), d.get("rank"), d.get("samples")] for d in run.datasets],
    )
    params = run.params.get(min(run.params)) if run.params else {}
    lines += ["## Parameters (lowest rank)", ""]
    lines += _table(["name", "value"], [[k, v] for k, v in sorted((params or {}).items())])
    finals = [r for r in run.summary_rows if r.get("kind") == "metric"]
    lowest = min((r.get("rank", 0) for r in finals), default=0)
    lines += ["## Final metrics (lowest rank)", ""]
    lines += _table(
        ["metric", "context", "last", "min", "max", "last step"],
        [
            [r.get("name"), r.get("context"), r.get("last"), r.get("min"), r.get("max"), r.get("last_step")]
            for r in finals
            if r.get("rank", 0) == lowest
        ],
    )
    if run.problems:
        lines += ["## Problems", "", *[f"- {p}" for p in run.problems], ""]
    return "\n".join(lines)


def export_card(run_dir: Path | str) -> Path:
    """Write ``MODEL_CARD.md`` into the run directory and return its path."""
    run = load_run(run_dir)
    path = run.path / CARD_NAME
    write_bytes_atomic(path, card_text(run).encode())
    return path
