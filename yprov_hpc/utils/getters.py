"""yProv4ML's ``utils.getters`` import path (shim)."""

from yprov_hpc.compat.getters import (
    get_metric,
    get_param,
    get_parameter,
    list_activities,
    list_entities,
    list_metrics,
    list_parameters,
    list_provjson_in_proj,
    list_runs_in_proj,
)

__all__ = [
    "get_metric",
    "get_param",
    "get_parameter",
    "list_activities",
    "list_entities",
    "list_metrics",
    "list_parameters",
    "list_provjson_in_proj",
    "list_runs_in_proj",
]
