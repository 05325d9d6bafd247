"""A Lightning logger that records through yprov-hpc: ``Trainer(logger=ProvLightningLogger(...))``.

Unlike Lightning's built-in loggers it logs on **every rank** (each rank gets its own document)
and keeps the **true step** Lightning passes. Metric names map to contexts: ``train*`` ->
training, ``val*`` -> validation, ``test*`` -> evaluation (other names belong to the run).
Hyperparameters become params, checkpoints become model versions, and ``finalize`` ends the
run with Lightning's status — when the logger started it. With a run already started
(``start_run``), the logger records into it and leaves ending it to you.

Importing this module imports Lightning; ``import yprov_hpc`` does not (the name
``yprov_hpc.ProvLightningLogger`` loads it on first use).
"""

from __future__ import annotations

import logging
import os
import re
import sys
from argparse import Namespace
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from lightning.pytorch.loggers.logger import Logger

from yprov_hpc import api
from yprov_hpc.core.context import Context
from yprov_hpc.core.errors import ParamConflictError
from yprov_hpc.rank.run import Run

log = logging.getLogger("yprov_hpc")

_STAGE_CONTEXTS: tuple[tuple[re.Pattern[str], Context], ...] = (
    (re.compile(r"(^|[_/.\-])(train|training)([_/.\-]|$)", re.I), Context.TRAINING),
    (re.compile(r"(^|[_/.\-])(val|valid|validation)([_/.\-]|$)", re.I), Context.VALIDATION),
    (re.compile(r"(^|[_/.\-])(test|testing|eval|evaluation)([_/.\-]|$)", re.I), Context.EVALUATION),
)
_STATUS = {"success": "finished", "failed": "failed", "finished": "interrupted"}


def context_of(metric_name: str) -> Context | None:
    """The context a Lightning metric name belongs to, from its stage word."""
    for pattern, context in _STAGE_CONTEXTS:
        if pattern.search(metric_name):
            return context
    return None


def _flatten(params: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in params.items():
        name = f"{prefix}{key}"
        if isinstance(value, Namespace):
            value = vars(value)
        if isinstance(value, Mapping) and value:
            flat.update(_flatten(value, name + "/"))
        else:
            flat[name] = value
    return flat


class ProvLightningLogger(Logger):
    """Records a Lightning run as W3C PROV through yprov-hpc, on every rank."""

    def __init__(
        self,
        prov_user_namespace: str | None = None,
        experiment_name: str | None = None,
        provenance_save_dir: str | os.PathLike[str] | None = None,
        *,
        checkpoint_context: Context | str = Context.TRAINING,
        **start_run_kwargs: Any,
    ) -> None:
        super().__init__()
        self._start_args: dict[str, Any] = {
            "prov_user_namespace": prov_user_namespace,
            "experiment_name": experiment_name,
            "provenance_save_dir": provenance_save_dir,
            **start_run_kwargs,
        }
        self._checkpoint_context = checkpoint_context
        self._run: Run | None = None
        self._owns_run = False
        self._checkpoints_seen: set[tuple[str, float]] = set()
        self._conflicts_warned: set[str] = set()

    # --- the run, started on first use (after the process group is up, so ranks are known) ---
    @property
    def experiment(self) -> Run:
        """The yprov-hpc Run this logger records into."""
        if self._run is None or not self._run.active:
            active = api.active_run()
            if active is not None:
                self._run, self._owns_run = active, False
            else:
                self._run, self._owns_run = api.start_run(**self._start_args), True
        return self._run

    @property
    def name(self) -> str:
        return str(
            self._start_args.get("experiment_name")
            or (self._run.config.experiment if self._run else "experiment")
        )

    @property
    def version(self) -> str | None:
        """The run id once the run has started (None before: starting it early, before the
        process group exists, would get the rank wrong)."""
        return self._run.run_id if self._run is not None else None

    @property
    def save_dir(self) -> str | None:
        return str(self._run.run_dir) if self._run is not None else None

    @property
    def log_dir(self) -> str | None:
        return self.save_dir

    # --- what Lightning calls ---------------------------------------------------------------
    def log_hyperparams(self, params: dict[str, Any] | Namespace, *args: Any, **kwargs: Any) -> None:
        """Hyperparameters become params (nested ones flattened with '/')."""
        values = vars(params) if isinstance(params, Namespace) else dict(params)
        run = self.experiment
        for key, value in _flatten(values).items():
            try:
                run.log_param(key, value)
            except ParamConflictError as exc:  # a second fit with other hyperparameters
                if key not in self._conflicts_warned:
                    self._conflicts_warned.add(key)
                    log.warning("yprov: %s; the first value is kept in the provenance", exc)

    def log_metrics(self, metrics: Mapping[str, Any], step: int | None = None) -> None:
        """Each metric at Lightning's step, in the context its name says."""
        run = self.experiment
        for key, value in metrics.items():
            run.log_metric(key, value, context_of(key), step)

    def log_graph(self, model: Any, input_array: Any = None) -> None:
        """The model's layer table (with shapes, when Lightning has an example input)."""
        self.experiment.log_model(
            type(model).__name__, model, log_model_layers=True, sample_input=input_array
        )

    def after_save_checkpoint(self, checkpoint_callback: Any) -> None:
        """Checkpoints written by Lightning become model versions (recorded on global rank 0,
        which is where Lightning writes them)."""
        run = self.experiment
        if run.rank != 0:
            return
        paths = [
            getattr(checkpoint_callback, "_last_checkpoint_saved", ""),  # set with or without a monitor
            getattr(checkpoint_callback, "best_model_path", ""),
            getattr(checkpoint_callback, "last_model_path", ""),
            *getattr(checkpoint_callback, "best_k_models", {}),
        ]
        step = getattr(checkpoint_callback, "_last_global_step_saved", None)
        for raw in paths:
            if not raw or not os.path.exists(raw):
                continue
            key = (os.path.abspath(raw), os.path.getmtime(raw))
            if key in self._checkpoints_seen:
                continue
            self._checkpoints_seen.add(key)
            run.record_model_version_file(
                Path(raw), "checkpoint", self._checkpoint_context, step if isinstance(step, int) else None
            )

    def finalize(self, status: str) -> None:
        """End the run with Lightning's status, if this logger started it."""
        if self._run is None or not self._owns_run or not self._run.active:
            return
        mapped = _STATUS.get(status, status)
        if mapped == "failed" and isinstance(sys.exc_info()[1], KeyboardInterrupt):
            mapped = "interrupted"
        if api.active_run() is self._run:
            api.end_run_with_status(mapped)
        else:
            self._run.end_run(status=mapped)
