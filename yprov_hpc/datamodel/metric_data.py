"""yProv4ML's ``datamodel.metric_data`` import path (shim)."""

from yprov_hpc.compat.metric_info import MetricInfo

__all__ = ["MetricInfo"]
