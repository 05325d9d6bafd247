"""yprov-hpc: provenance of ML training runs as W3C PROV-JSON, from a laptop to 500+ GPUs.

A drop-in for yProv4ML's ``prov4ml`` API::

    import yprov_hpc as prov4ml
    prov4ml.start_run(prov_user_namespace="www.example.org", experiment_name="mnist")
    prov4ml.log_metric("loss", 0.3, context=prov4ml.Context.TRAINING, step=1)
    prov4ml.end_run(create_graph=True)

Importing this package is cheap: every name is imported on first use (PEP 562), so a process that
only needs a submodule (the sidecar, the merge) does not load the API; ZeroMQ, psutil and
subprocess load when a run starts, torch and Lightning on first use, and the merge (pyarrow,
prov) never in the training process.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
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

# where a public name lives, when not in ``yprov_hpc.compat`` (the yProv4ML-compatible API,
# whose own ``__getattr__`` loads its torch- and Lightning-dependent names): imported on first use
_HOME = {
    "active_run": "yprov_hpc.api",
    "load_run": "yprov_hpc.read.load",  # reading finished runs: pandas, on first use
    "load_runs": "yprov_hpc.read.load",
    "RunReport": "yprov_hpc.rank.ending",
    "Run": "yprov_hpc.rank.run",
}
_ERRORS_HOME = "yprov_hpc.core.errors"  # every name ending in "Error"

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
    """Every public name is imported on first use, then kept in the module (later lookups are
    plain attribute reads); ``ProvLightningLogger`` says which extra to install when missing."""
    if name not in __all__:  # e.g. a submodule during "from yprov_hpc import api": not ours
        raise AttributeError(f"module 'yprov_hpc' has no attribute {name!r}")
    if name == "ProvLightningLogger":
        return _lightning_logger()
    home = _HOME.get(name) or (_ERRORS_HOME if name.endswith("Error") else "yprov_hpc.compat")
    value = getattr(importlib.import_module(home), name)
    globals()[name] = value
    return value


def _lightning_logger() -> Any:
    try:
        from yprov_hpc.integrations.lightning import ProvLightningLogger
    except ImportError as exc:
        top = (exc.name or "").split(".")[0]
        if top in ("lightning", "torch", "numpy"):
            from yprov_hpc.core.errors import MissingExtraError

            raise MissingExtraError("ProvLightningLogger", "lightning", top) from None
        raise
    return ProvLightningLogger


def __dir__() -> list[str]:
    return sorted(set(__all__) | set(globals()))
