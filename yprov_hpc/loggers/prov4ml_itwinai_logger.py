"""yProv4ML's ``loggers.prov4ml_itwinai_logger`` import path (shim)."""

from yprov_hpc.compat.itwinai import ProvMLItwinAILogger

__all__ = ["ProvMLItwinAILogger"]
