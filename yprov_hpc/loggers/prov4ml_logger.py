"""yProv4ML's ``loggers.prov4ml_logger`` import path (shim; imports Lightning)."""

from yprov_hpc.compat.lightning import ProvMLLogger

__all__ = ["ProvMLLogger"]
