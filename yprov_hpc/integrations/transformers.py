"""A Hugging Face Transformers callback that records through yprov-hpc:
``Trainer(..., callbacks=[ProvTrainerCallback(...)])``.

It records on **every rank** (Transformers calls ``on_log`` on every process; each rank gets its
own document) at the **true global step** (``state.global_step``). The training arguments and
the model's config (scalars, as ``model/<key>``) become params; each checkpoint the Trainer
saves becomes a model version, on the rank that saved it. Needs ``transformers`` and, for the
Trainer itself, ``accelerate``. Logged
names map to contexts: ``eval_*`` -> validation, ``test_*`` -> evaluation, the rest -> training.
With a run already started (``start_run``), the callback records into it and leaves ending it
to you; else it starts one at ``on_train_begin`` and ends it at ``on_train_end``.

Importing this module imports Transformers; ``import yprov_hpc`` does not.
"""

from __future__ import annotations

import logging
import math
import os
from pathlib import Path
from typing import Any

from transformers import TrainerCallback

from yprov_hpc import api
from yprov_hpc.core.context import Context
from yprov_hpc.core.errors import ParamConflictError
from yprov_hpc.rank.run import Run

__all__ = ["ProvTrainerCallback", "context_of"]

log = logging.getLogger("yprov_hpc")

_PREFIXES = (("eval_", Context.VALIDATION), ("test_", Context.EVALUATION))
# summary values the Trainer logs once at the end of training (train_runtime, train_loss, ...)
_SUMMARY_KEYS = frozenset(
    {"train_runtime", "train_samples_per_second", "train_steps_per_second", "total_flos", "train_loss"}
)


def context_of(name: str) -> tuple[Context, str]:
    """The context of a logged name and the name without its stage prefix
    (``eval_loss`` -> validation, ``loss``)."""
    for prefix, context in _PREFIXES:
        if name.startswith(prefix) and len(name) > len(prefix):
            return context, name[len(prefix) :]
    return Context.TRAINING, name


def _scalar(value: Any) -> bool:
    return isinstance(value, (bool, int, float, str)) or value is None


class ProvTrainerCallback(TrainerCallback):  # type: ignore[misc]
    """Records a Transformers Trainer run as W3C PROV through yprov-hpc, on every rank."""

    def __init__(
        self,
        prov_user_namespace: str | None = None,
        experiment_name: str | None = None,
        provenance_save_dir: str | os.PathLike[str] | None = None,
        *,
        checkpoint_context: Context | str = Context.TRAINING,
        **start_run_kwargs: Any,
    ) -> None:
        self._start_args: dict[str, Any] = {
            "prov_user_namespace": prov_user_namespace,
            "experiment_name": experiment_name,
            "provenance_save_dir": provenance_save_dir,
            **start_run_kwargs,
        }
        self._checkpoint_context = checkpoint_context
        self._run: Run | None = None
        self._owns_run = False
        self._late_warned = False
        self._conflicts_warned: set[str] = set()

    @property
    def run(self) -> Run | None:
        """The yprov-hpc Run being recorded into (None before training began)."""
        return self._run

    def _active(self) -> Run | None:
        """The run, if it is still recording; a log after the run ended is dropped (warned once)."""
        if self._run is not None and self._run.active:
            return self._run
        if self._run is not None and not self._late_warned:
            self._late_warned = True
            log.warning("yprov: the Trainer logged after the run ended; later values are not recorded")
        return None

    def _params(self, run: Run, params: dict[str, Any]) -> None:
        for key, value in params.items():
            try:
                run.log_param(key, value)
            except ParamConflictError as exc:  # a second train() with other arguments
                if key not in self._conflicts_warned:
                    self._conflicts_warned.add(key)
                    log.warning("yprov: %s; the first value is kept in the provenance", exc)

    def on_train_begin(self, args: Any, state: Any, control: Any, model: Any = None, **kwargs: Any) -> None:
        """Start (or join) the run; the training arguments and model config become params."""
        if self._run is None or not self._run.active:
            active = api.active_run()
            if active is not None:
                self._run, self._owns_run = active, False
            else:
                self._run, self._owns_run = api.start_run(**self._start_args), True
            self._late_warned = False
        run = self._run
        self._params(run, {k: v for k, v in args.to_sanitized_dict().items() if _scalar(v)})
        config = getattr(model, "config", None)
        if config is not None and hasattr(config, "to_dict"):
            values = {f"model/{k}": v for k, v in config.to_dict().items() if _scalar(v) and v is not None}
            self._params(run, values)

    def on_log(
        self, args: Any, state: Any, control: Any, logs: dict[str, Any] | None = None, **kwargs: Any
    ) -> None:
        """Every numeric value the Trainer logs, at its global step, in its context."""
        run = self._active()
        if run is None or not logs:
            return
        step = int(state.global_step)
        for key, value in logs.items():
            if isinstance(value, bool) or not isinstance(value, (int, float)) or key == "step":
                continue
            context, name = context_of(key)
            if key in _SUMMARY_KEYS:
                name = key
            run.log_metric(name, float(value) if math.isfinite(value) else value, context, step)

    def on_save(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        """The checkpoint just saved becomes the next model version, on the ranks that write
        checkpoints (``args.should_save``: process zero, or each node's with save_on_each_node)."""
        run = self._active()
        if run is None or not getattr(args, "should_save", True):
            return
        folder = Path(args.output_dir) / f"checkpoint-{state.global_step}"
        if folder.is_dir():
            run.record_model_version_file(
                folder, "checkpoint", self._checkpoint_context, int(state.global_step)
            )

    def on_train_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        """End the run, if this callback started it."""
        if self._run is None or not self._owns_run or not self._run.active:
            return
        if api.active_run() is self._run:
            api.end_run_with_status("finished")
        else:
            self._run.end_run(status="finished")
