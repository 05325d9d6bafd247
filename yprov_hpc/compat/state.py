"""``PROV4ML_DATA``: a read-only view of the active run under yProv4ML's attribute names, for
scripts that read ``yprov4ml.constants.PROV4ML_DATA`` (its run directory, its rank, ...)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from yprov_hpc import api as _api
from yprov_hpc.compat import api as _compat_api
from yprov_hpc.compat.enums import MetricsType
from yprov_hpc.core.errors import NoActiveRunError
from yprov_hpc.rank.run import Run

__all__ = ["PROV4ML_DATA", "RunView"]


class RunView:
    """yProv4ML's ``Prov4MLData`` attributes, read from the active run. Nothing is writable."""

    def _run(self, attribute: str) -> Run:
        run = _api.active_run()
        if run is None:
            raise NoActiveRunError(f"PROV4ML_DATA.{attribute}")
        return run

    @property
    def is_collecting(self) -> bool:
        """Whether a run is active (every rank records here)."""
        return _api.active_run() is not None

    @property
    def EXPERIMENT_DIR(self) -> str:
        return str(self._run("EXPERIMENT_DIR").run_dir)

    @property
    def ARTIFACTS_DIR(self) -> str:
        run = self._run("ARTIFACTS_DIR")
        return str(run.layout.artifacts_dir(run.rank))

    @property
    def METRIC_DIR(self) -> str:
        return str(Path(self._run("METRIC_DIR").run_dir) / "metrics")

    @property
    def PROV_SAVE_PATH(self) -> str:
        return str(self._run("PROV_SAVE_PATH").config.save_dir)

    @property
    def USER_NAMESPACE(self) -> str:
        return self._run("USER_NAMESPACE").config.namespace

    @property
    def CLEAN_EXPERIMENT_NAME(self) -> str:
        return self._run("CLEAN_EXPERIMENT_NAME").config.experiment

    @property
    def PROV_JSON_NAME(self) -> str:
        run = self._run("PROV_JSON_NAME")
        return f"{run.config.experiment}_rank{run.rank}"

    @property
    def RUN_ID(self) -> str:
        return self._run("RUN_ID").run_id

    @property
    def global_rank(self) -> int:
        return self._run("global_rank").rank

    @property
    def save_metrics_after_n_logs(self) -> int:
        return self._run("save_metrics_after_n_logs").config.batch_events

    @property
    def metrics_file_type(self) -> Any:
        """What start_run was asked for (series are Parquet here whatever it says)."""
        return _compat_api.requested_options().get("metrics_file_type") or MetricsType.CSV

    @property
    def csv_separator(self) -> str:
        return str(_compat_api.requested_options().get("csv_separator") or ",")

    @property
    def use_compressor(self) -> Any:
        """What start_run was asked for (the Parquet series are zstd-compressed whatever it says)."""
        return _compat_api.requested_options().get("use_compressor")

    @property
    def unify_experiments(self) -> bool:
        """What start_run was asked for (each run's series are in its own directory here)."""
        return bool(_compat_api.requested_options().get("unify_experiments"))

    @property
    def codecarbon_is_disabled(self) -> bool:
        """What start_run was asked for (``disable_codecarbon``; energy comes from the sidecar)."""
        return bool(_compat_api.requested_options().get("disable_codecarbon"))

    @property
    def metrics(self) -> dict[Any, Any]:
        """Empty: metric values are not kept in the training process here."""
        return {}


PROV4ML_DATA = RunView()
