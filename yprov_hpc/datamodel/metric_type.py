"""yProv4ML's ``datamodel.metric_type`` import path (shim)."""

from yprov_hpc.compat.enums import MetricsType, get_file_type

__all__ = ["MetricsType", "get_file_type"]
