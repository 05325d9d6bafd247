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

from yprov_hpc.api import active_run
from yprov_hpc.compat import (
    CompatWarning,
    CompressorType,
    Context,
    Contexts,
    FoldOperation,
    LoggingItemKind,
    MetricsType,
    ProvenanceTrackedFunction,
    ProvMLItwinAILogger,
    create_context,
    end_run,
    get_artifacts_dir,
    get_run_dir,
    getters,
    log_artifact,
    log_carbon_metrics,
    log_context,
    log_current_execution_time,
    log_dataset,
    log_execution_command,
    log_execution_end_time,
    log_execution_start_time,
    log_flops_per_batch,
    log_flops_per_epoch,
    log_input,
    log_metric,
    log_metrics,
    log_model,
    log_output,
    log_param,
    log_params,
    log_provenance_documents,
    log_source_code,
    log_system_metrics,
    register_final_metric,
    save_model_version,
    start_run,
)
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
    "CompatWarning",
    "CompressorType",
    "ConfigError",
    "Context",
    "Contexts",
    "DecodeError",
    "FoldOperation",
    "IndexedDatasetWrapper",
    "InvalidArgumentError",
    "InvalidKeyError",
    "LimitExceededError",
    "LoggingItemKind",
    "MetricValueError",
    "MetricsType",
    "MissingExtraError",
    "NoActiveRunError",
    "ParamConflictError",
    "ProvLightningLogger",
    "ProvMLItwinAILogger",
    "ProvMLLogger",
    "ProvenanceTrackedFunction",
    "ProvenanceTrackedModel",
    "Run",
    "RunAlreadyActiveError",
    "RunReport",
    "WeightDistributionTrackedModel",
    "YProvError",
    "__version__",
    "active_run",
    "create_context",
    "end_run",
    "get_artifacts_dir",
    "get_run_dir",
    "getters",
    "load_run",
    "load_runs",
    "log_artifact",
    "log_carbon_metrics",
    "log_context",
    "log_current_execution_time",
    "log_dataset",
    "log_execution_command",
    "log_execution_end_time",
    "log_execution_start_time",
    "log_flops_per_batch",
    "log_flops_per_epoch",
    "log_input",
    "log_metric",
    "log_metrics",
    "log_model",
    "log_output",
    "log_param",
    "log_params",
    "log_provenance_documents",
    "log_source_code",
    "log_system_metrics",
    "register_final_metric",
    "save_model_version",
    "start_run",
]


def __getattr__(name: str) -> Any:
    """``ProvLightningLogger`` and the compatibility names that need torch or Lightning are
    imported on first use: ``import yprov_hpc`` must not load them."""
    if name == "ProvLightningLogger":
        try:
            from yprov_hpc.integrations.lightning import ProvLightningLogger
        except ImportError as exc:
            top = (exc.name or "").split(".")[0]
            if top in ("lightning", "torch", "numpy"):
                raise MissingExtraError("ProvLightningLogger", "lightning", top) from None
            raise
        return ProvLightningLogger
    if name in ("load_run", "load_runs"):  # reading finished runs: pandas, on first use
        from yprov_hpc.read.load import load_run, load_runs

        return load_run if name == "load_run" else load_runs
    from yprov_hpc.compat import lazy_name

    try:
        return lazy_name(name)
    except AttributeError:
        raise AttributeError(f"module 'yprov_hpc' has no attribute {name!r}") from None
