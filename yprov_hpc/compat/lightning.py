"""``ProvMLLogger``: yProv4ML's Lightning logger, with its own constructor arguments, on top of
yprov-hpc's ``ProvLightningLogger``. Importing this module imports Lightning.

As yProv4ML's docs promise, no ``start_run`` is needed: the logger starts the run when Lightning
first uses it (after the process group exists, so ranks are right), and calls made before that
are held and replayed into it. A successful ``fit`` does not end the run, because the docs' scripts
go on logging and testing with the same logger: the run ends with status ``finished`` when
the interpreter exits (or at an explicit ``end_run``). A failed fit ends it as failed.
"""

from __future__ import annotations

import atexit
import sys
from collections.abc import Mapping
from typing import Any

from yprov_hpc import api as _api
from yprov_hpc.compat import pending
from yprov_hpc.compat.api import DEFAULT_NAMESPACE
from yprov_hpc.compat.warn import ignored
from yprov_hpc.core.config import ENV_NAMESPACE
from yprov_hpc.integrations.lightning import ProvLightningLogger
from yprov_hpc.rank.run import Run

__all__ = ["ProvMLLogger"]


class ProvMLLogger(ProvLightningLogger):
    """``Trainer(logger=[ProvMLLogger()])``: ``name`` is the experiment, ``version`` the run id,
    ``prefix`` is put before every metric name; ``flush_logs_every_n_steps`` is accepted (events
    ship continuously here)."""

    def __init__(
        self,
        name: str | None = "lightning_logs",
        version: int | str | None = None,
        prefix: str = "",
        flush_logs_every_n_steps: int | None = None,
        **start_run_kwargs: Any,
    ) -> None:
        import os

        ignored("ProvMLLogger", flush_logs_every_n_steps=flush_logs_every_n_steps)
        start_run_kwargs.setdefault("prov_user_namespace", os.environ.get(ENV_NAMESPACE) or DEFAULT_NAMESPACE)
        if version is not None:
            start_run_kwargs.setdefault("run_id", str(version))
        super().__init__(experiment_name=name or "lightning_logs", **start_run_kwargs)
        self._prefix = prefix
        self._exit_hook = False

    @property
    def experiment(self) -> Run:
        """The run this logger records into; started (and the held calls replayed) on first use."""
        started_here = self._run is None and _api.active_run() is None
        run = super().experiment
        if started_here and self._owns_run:
            pending.replay()
            if not self._exit_hook:
                self._exit_hook = True
                atexit.register(self._end_at_exit)  # after start_run's hook: runs before it
        return run

    def log_metrics(self, metrics: Mapping[str, Any], step: int | None = None) -> None:
        """Each metric (with the prefix) at Lightning's step, in the context its name says."""
        if self._prefix:
            metrics = {f"{self._prefix}{key}": value for key, value in metrics.items()}
        super().log_metrics(metrics, step)

    def finalize(self, status: str) -> None:
        """A failed or interrupted fit ends the run; a successful one leaves it open for what the
        script logs next (it ends at exit)."""
        if status == "success":
            return
        super().finalize(status)

    def _end_at_exit(self) -> None:
        run = self._run
        if run is None or not self._owns_run or not run.active:
            return
        status = "failed" if getattr(sys, "last_value", None) is not None else "finished"
        if _api.active_run() is run:
            _api.end_run_with_status(status)
        else:
            run.end_run(status=status)
