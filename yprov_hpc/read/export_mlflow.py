"""``yprov export mlflow RUN --tracking-uri URI``: a finished run into MLflow, through MLflow's
own client, so that the MLflow UI shows it.

The MLflow run (named ``<experiment> <run id>``) holds the params and the metric series of the
run's lowest rank (with their steps and times), the job's energy, tags that name the yprov run,
and the PROV documents, series and graphs as artifacts under ``provenance/``. A run of several
ranks also gets one nested MLflow run per rank (``mlflow.parentRunId``) with that rank's params,
series, energy and artifacts. Metric keys are ``<context>/<name>``. Exporting the same run to
the same experiment again does nothing and returns the first export's ids.
"""

from __future__ import annotations

import re
import tempfile
from pathlib import Path
from typing import Any

from yprov_hpc.core.errors import YProvError
from yprov_hpc.read.load import RunRecord, load_run

__all__ = ["MlflowExportError", "export_mlflow", "metric_key"]

_KEY_BAD = re.compile(r"[^A-Za-z0-9_\-. :/]")
_MAX_PARAM_CHARS = 6000  # MLflow's limit on a param value
_MAX_TAG_CHARS = 5000  # below MLflow's limit on a tag value
_BATCH_METRICS = 1000  # MLflow's limit per log_batch call
_STATUS = {"finished": "FINISHED", "failed": "FAILED", "killed": "KILLED"}
TAG_RUN_KEY = "yprov.run_key"


class MlflowExportError(YProvError, RuntimeError):
    """MLflow is not installed, or refused what was sent."""

    def __init__(self, tracking_uri: str, reason: str) -> None:
        self.tracking_uri = tracking_uri
        self.reason = reason
        super().__init__(f"export to MLflow at {tracking_uri}: {reason}")


def metric_key(name: str, context: str | None) -> str:
    """The MLflow key of a series: ``<context>/<name>`` with characters MLflow refuses as ``_``."""
    return _KEY_BAD.sub("_", f"{context}/{name}" if context else name)


def _ms(value: Any) -> int | None:
    return int(value.timestamp() * 1000) if value is not None else None


def export_mlflow(
    run_path: Path | str | RunRecord,
    tracking_uri: str,
    *,
    experiment_name: str | None = None,
    artifact_location: str | None = None,
) -> dict[str, Any]:
    """Export one run; returns {run_id, experiment_id, rank_runs: {rank: run id}, already}."""
    try:
        from mlflow import MlflowClient
        from mlflow.exceptions import MlflowException
    except ImportError:
        raise MlflowExportError(tracking_uri, "needs mlflow: pip install 'yprov-hpc[mlflow]'") from None
    run = run_path if isinstance(run_path, RunRecord) else load_run(run_path)
    client = MlflowClient(tracking_uri=tracking_uri)
    name = experiment_name or run.experiment
    try:
        found = client.get_experiment_by_name(name)
        exp_id = found.experiment_id if found else client.create_experiment(name, artifact_location)
        run_key = f"{run.experiment}/{run.id}"
        existing = client.search_runs([exp_id], filter_string=f"tags.`{TAG_RUN_KEY}` = '{_quote(run_key)}'")
        if existing:
            parent = existing[0].info.run_id
            return {
                "run_id": parent,
                "experiment_id": exp_id,
                "rank_runs": _children(client, exp_id, parent),
                "already": True,
            }
        return _export(client, run, exp_id, run_key)
    except MlflowException as exc:
        raise MlflowExportError(tracking_uri, str(exc)) from None


def _quote(text: str) -> str:
    return text.replace("\\", "\\\\").replace("'", "\\'")


def _children(client: Any, exp_id: str, parent: str) -> dict[int, str]:
    runs = client.search_runs([exp_id], filter_string=f"tags.`mlflow.parentRunId` = '{parent}'")
    return {int(r.data.tags.get("yprov.rank", -1)): r.info.run_id for r in runs}


def _tags(run: RunRecord, run_key: str) -> dict[str, str]:
    env = run.environment.get(min(run.environment), {}) if run.environment else {}
    command = env.get("command")
    tags = {
        TAG_RUN_KEY: run_key,
        "yprov.run_id": run.id,
        "yprov.experiment": run.experiment,
        "yprov.status": run.status,
        "yprov.path": str(run.path),
        "yprov.ranks": str(len(run.ranks)),
        "yprov.nodes": ", ".join(run.nodes),
        "mlflow.source.name": " ".join(command) if isinstance(command, list) else str(command or ""),
        "mlflow.source.git.commit": str(env.get("git_commit") or ""),
        "mlflow.user": str(env.get("user") or ""),
    }
    if run.problems:
        tags["yprov.problems"] = "\n".join(run.problems)
    return {k: v[:_MAX_TAG_CHARS] for k, v in tags.items() if v}


def _export(client: Any, run: RunRecord, exp_id: str, run_key: str) -> dict[str, Any]:
    tags = _tags(run, run_key)
    parent = client.create_run(
        exp_id, start_time=_ms(run.start), tags=tags, run_name=f"{run.experiment} {run.id}"
    )
    parent_id = parent.info.run_id
    metrics = run.metrics
    lowest = min(run.ranks) if run.ranks else None
    _log_params(client, parent_id, run.common_params())
    extra = {"energy_j": run.energy_j} if run.energy_j is not None else {}
    if lowest is not None:
        _log_series(client, parent_id, metrics[metrics["rank"] == lowest], extra, _ms(run.end))
    _log_provenance(client, parent_id, run)
    if len(run.ranks) == 1 and lowest is not None and (run.path / "artifacts" / f"rank{lowest}").is_dir():
        client.log_artifacts(parent_id, str(run.path / "artifacts" / f"rank{lowest}"), "artifacts")
    children: dict[int, str] = {}
    child_tags = {k: v for k, v in tags.items() if k != TAG_RUN_KEY}  # the key finds the parent only
    if len(run.ranks) > 1:
        for rank, info in sorted(run.ranks.items()):
            child = client.create_run(
                exp_id,
                start_time=_ms(info.start),
                tags={
                    **child_tags,
                    "mlflow.parentRunId": parent_id,
                    "yprov.rank": str(rank),
                    "yprov.node": info.node or "",
                },
                run_name=f"{run.experiment} {run.id} rank {rank}",
            )
            children[rank] = child.info.run_id
            _log_params(client, child.info.run_id, run.params.get(rank, {}))
            energy = run.energy_ranks.get(rank, {}).get("energy_j")
            rank_extra = {"energy_j": energy} if isinstance(energy, float) else {}
            _log_series(
                client, child.info.run_id, metrics[metrics["rank"] == rank], rank_extra, _ms(info.end)
            )
            if (run.path / "artifacts" / f"rank{rank}").is_dir():
                client.log_artifacts(
                    child.info.run_id, str(run.path / "artifacts" / f"rank{rank}"), "artifacts"
                )
            client.set_terminated(
                child.info.run_id, _STATUS.get(info.status, "FAILED"), end_time=_ms(info.end)
            )
    client.set_terminated(parent_id, _STATUS.get(run.status, "FAILED"), end_time=_ms(run.end))
    return {"run_id": parent_id, "experiment_id": exp_id, "rank_runs": children, "already": False}


def _log_params(client: Any, run_id: str, params: dict[str, Any]) -> None:
    from mlflow.entities import Param

    items = [Param(_KEY_BAD.sub("_", k)[:250], str(v)[:_MAX_PARAM_CHARS]) for k, v in params.items()]
    for start in range(0, len(items), 100):
        client.log_batch(run_id, params=items[start : start + 100])


def _log_series(client: Any, run_id: str, frame: Any, extra: dict[str, Any], end_ms: int | None) -> None:
    """Every point of ``frame`` (one rank's metrics) with its step and time, in batches."""
    from mlflow.entities import Metric

    times = (frame["time"].astype("int64") // 1_000_000).tolist()
    keys = [metric_key(n, c) for n, c in zip(frame["name"], frame["context"], strict=True)]
    steps = [int(s) if s == s else 0 for s in frame["step"].tolist()]
    values = [float(v) for v in frame["value"].tolist()]
    batch: list[Any] = [Metric(k, v, t, s) for k, v, t, s in zip(keys, values, times, steps, strict=True)]
    batch += [Metric(k, float(v), end_ms or 0, 0) for k, v in extra.items()]
    for start in range(0, len(batch), _BATCH_METRICS):
        client.log_batch(run_id, metrics=batch[start : start + _BATCH_METRICS])


def _log_provenance(client: Any, run_id: str, run: RunRecord) -> None:
    """The documents, merge report, series files and graphs, under provenance/ (copied first, so
    that nothing outside the run's files travels)."""
    import shutil

    with tempfile.TemporaryDirectory(prefix="yprov-mlflow-") as tmp:
        out = Path(tmp)
        for path in [*run.documents, run.path / "merge_report.json"]:
            if path.is_file():
                shutil.copy2(path, out / path.name)
        for sub in ("metrics", "graph", "environment"):
            if (run.path / sub).is_dir():
                shutil.copytree(run.path / sub, out / sub, ignore=shutil.ignore_patterns("*.tmp"))
        client.log_artifacts(run_id, str(out), "provenance")
