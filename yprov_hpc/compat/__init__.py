"""yProv4ML compatibility: the names and signatures of yprov4ml 3.2.8, of the older documented
``prov4ml`` API and of the paper, as a thin layer on yprov-hpc's real API.

``import yprov_hpc as prov4ml`` (or ``as yprov4ml``) gives these names; docs/compat.md maps each
call to what it does here. The torch and Lightning classes load on first use, so importing
this package imports neither.
"""

from __future__ import annotations

from typing import Any

from yprov_hpc.compat import getters
from yprov_hpc.compat.api import (
    end_run,
    get_artifacts_dir,
    get_run_dir,
    log_carbon_metrics,
    log_current_execution_time,
    log_metric,
    log_metrics,
    log_param,
    log_params,
    log_provenance_documents,
    log_system_metrics,
    start_run,
)
from yprov_hpc.compat.artifacts import log_artifact
from yprov_hpc.compat.contexts import Context, Contexts, create_context, log_context
from yprov_hpc.compat.enums import CompressorType, LoggingItemKind, MetricsType
from yprov_hpc.compat.extras import (
    log_execution_command,
    log_execution_end_time,
    log_execution_start_time,
    log_input,
    log_output,
    log_source_code,
)
from yprov_hpc.compat.finals import FoldOperation, register_final_metric
from yprov_hpc.compat.flops import log_flops_per_batch, log_flops_per_epoch
from yprov_hpc.compat.itwinai import ProvMLItwinAILogger
from yprov_hpc.compat.torch_api import log_dataset, log_model, save_model_version
from yprov_hpc.compat.tracked import ProvenanceTrackedFunction
from yprov_hpc.compat.warn import CompatWarning

__all__ = [
    "CompatWarning",
    "CompressorType",
    "Context",
    "Contexts",
    "FoldOperation",
    "IndexedDatasetWrapper",
    "LoggingItemKind",
    "MetricsType",
    "ProvMLItwinAILogger",
    "ProvMLLogger",
    "ProvenanceTrackedFunction",
    "ProvenanceTrackedModel",
    "WeightDistributionTrackedModel",
    "create_context",
    "end_run",
    "get_artifacts_dir",
    "get_run_dir",
    "getters",
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

_LAZY = {
    "IndexedDatasetWrapper": "yprov_hpc.compat.torch_wrappers",
    "ProvenanceTrackedModel": "yprov_hpc.compat.torch_wrappers",
    "WeightDistributionTrackedModel": "yprov_hpc.compat.torch_wrappers",
    "ProvMLLogger": "yprov_hpc.compat.lightning",
}


def lazy_name(name: str) -> Any:
    """A compatibility name that needs torch or Lightning, imported on first use; AttributeError
    for a name that is not one of them."""
    module_name = _LAZY.get(name)
    if module_name is None:
        raise AttributeError(name)
    import importlib

    return getattr(importlib.import_module(module_name), name)


def __getattr__(name: str) -> Any:
    try:
        return lazy_name(name)
    except AttributeError:
        raise AttributeError(f"module 'yprov_hpc.compat' has no attribute {name!r}") from None
