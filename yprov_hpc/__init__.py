"""yprov-hpc: provenance of ML training runs as W3C PROV-JSON, from a laptop to 500+ GPUs.

A drop-in for yProv4ML's ``prov4ml`` API::

    import yprov_hpc as prov4ml
    prov4ml.start_run(prov_user_namespace="www.example.org", experiment_name="mnist")
    prov4ml.log_metric("loss", 0.3, context=prov4ml.Context.TRAINING, step=1)
    prov4ml.end_run(create_graph=True)

Importing this package is cheap: ZeroMQ, psutil and subprocess load when a run starts, torch and
Lightning on first use, and the merge (pyarrow, prov) never in the training process.
"""

from __future__ import annotations

from typing import Any

from yprov_hpc.api import (
    active_run,
    end_run,
    get_run_dir,
    log_artifact,
    log_carbon_metrics,
    log_current_execution_time,
    log_dataset,
    log_metric,
    log_metrics,
    log_model,
    log_param,
    log_params,
    log_system_metrics,
    save_model_version,
    start_run,
)
from yprov_hpc.core.context import Context
from yprov_hpc.core.errors import (
    ArtifactNotFoundError,
    ArtifactTypeError,
    ConfigError,
    DecodeError,
    InvalidArgumentError,
    InvalidKeyError,
    LimitExceededError,
    MetricValueError,
    MissingExtraError,
    NoActiveRunError,
    ParamConflictError,
    RunAlreadyActiveError,
    YProvError,
)
from yprov_hpc.rank.ending import RunReport
from yprov_hpc.rank.run import Run

__version__ = "0.1.0"

__all__ = [
    "ArtifactNotFoundError",
    "ArtifactTypeError",
    "ConfigError",
    "Context",
    "DecodeError",
    "InvalidArgumentError",
    "InvalidKeyError",
    "LimitExceededError",
    "MetricValueError",
    "MissingExtraError",
    "NoActiveRunError",
    "ParamConflictError",
    "ProvLightningLogger",
    "Run",
    "RunAlreadyActiveError",
    "RunReport",
    "YProvError",
    "__version__",
    "active_run",
    "end_run",
    "get_run_dir",
    "log_artifact",
    "log_carbon_metrics",
    "log_current_execution_time",
    "log_dataset",
    "log_metric",
    "log_metrics",
    "log_model",
    "log_param",
    "log_params",
    "log_system_metrics",
    "save_model_version",
    "start_run",
]


def __getattr__(name: str) -> Any:
    """``ProvLightningLogger`` is imported on first use: it needs Lightning, which
    ``import yprov_hpc`` must not load."""
    if name == "ProvLightningLogger":
        try:
            from yprov_hpc.integrations.lightning import ProvLightningLogger
        except ImportError as exc:
            top = (exc.name or "").split(".")[0]
            if top in ("lightning", "torch", "numpy"):
                raise MissingExtraError("ProvLightningLogger", "lightning", top) from None
            raise
        return ProvLightningLogger
    raise AttributeError(f"module 'yprov_hpc' has no attribute {name!r}")
