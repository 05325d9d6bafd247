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

_EAGER_HOME = {  # name -> the module it lives in, imported on first use
    "active_run": "yprov_hpc.api",
    "CompatWarning": "yprov_hpc.compat",
    "CompressorType": "yprov_hpc.compat",
    "Context": "yprov_hpc.compat",
    "Contexts": "yprov_hpc.compat",
    "FoldOperation": "yprov_hpc.compat",
    "LoggingItemKind": "yprov_hpc.compat",
    "MetricsType": "yprov_hpc.compat",
    "ProvenanceTrackedFunction": "yprov_hpc.compat",
    "ProvMLItwinAILogger": "yprov_hpc.compat",
    "create_context": "yprov_hpc.compat",
    "end_run": "yprov_hpc.compat",
    "get_artifacts_dir": "yprov_hpc.compat",
    "get_run_dir": "yprov_hpc.compat",
    "getters": "yprov_hpc.compat",
    "log_artifact": "yprov_hpc.compat",
    "log_carbon_metrics": "yprov_hpc.compat",
    "log_context": "yprov_hpc.compat",
    "log_current_execution_time": "yprov_hpc.compat",
    "log_dataset": "yprov_hpc.compat",
    "log_execution_command": "yprov_hpc.compat",
    "log_execution_end_time": "yprov_hpc.compat",
    "log_execution_start_time": "yprov_hpc.compat",
    "log_flops_per_batch": "yprov_hpc.compat",
    "log_flops_per_epoch": "yprov_hpc.compat",
    "log_input": "yprov_hpc.compat",
    "log_metric": "yprov_hpc.compat",
    "log_metrics": "yprov_hpc.compat",
    "log_model": "yprov_hpc.compat",
    "log_output": "yprov_hpc.compat",
    "log_param": "yprov_hpc.compat",
    "log_params": "yprov_hpc.compat",
    "log_provenance_documents": "yprov_hpc.compat",
    "log_source_code": "yprov_hpc.compat",
    "log_system_metrics": "yprov_hpc.compat",
    "register_final_metric": "yprov_hpc.compat",
    "save_model_version": "yprov_hpc.compat",
    "start_run": "yprov_hpc.compat",
    "ArtifactNotFoundError": "yprov_hpc.core.errors",
    "ArtifactTypeError": "yprov_hpc.core.errors",
    "ConfigError": "yprov_hpc.core.errors",
    "DecodeError": "yprov_hpc.core.errors",
    "InvalidArgumentError": "yprov_hpc.core.errors",
    "InvalidKeyError": "yprov_hpc.core.errors",
    "LimitExceededError": "yprov_hpc.core.errors",
    "MetricValueError": "yprov_hpc.core.errors",
    "MissingExtraError": "yprov_hpc.core.errors",
    "NoActiveRunError": "yprov_hpc.core.errors",
    "ParamConflictError": "yprov_hpc.core.errors",
    "RunAlreadyActiveError": "yprov_hpc.core.errors",
    "YProvError": "yprov_hpc.core.errors",
    "RunReport": "yprov_hpc.rank.ending",
    "Run": "yprov_hpc.rank.run",
}

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
    plain attribute reads); ``ProvLightningLogger`` and the names that need torch or Lightning
    say which extra to install when it is missing."""
    home = _EAGER_HOME.get(name)
    if home is not None:
        value = getattr(importlib.import_module(home), name)
        globals()[name] = value
        return value
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
    if name not in __all__:  # e.g. a submodule during "from yprov_hpc import api": not ours
        raise AttributeError(f"module 'yprov_hpc' has no attribute {name!r}")
    from yprov_hpc.compat import lazy_name

    try:
        value = lazy_name(name)
        globals()[name] = value
        return value
    except AttributeError:
        raise AttributeError(f"module 'yprov_hpc' has no attribute {name!r}") from None


def __dir__() -> list[str]:
    return sorted(set(__all__) | set(globals()))
