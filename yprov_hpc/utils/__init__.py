"""yProv4ML's ``utils`` import path (shim): ``utils.getters`` reads finished runs."""

from yprov_hpc.compat import getters

__all__ = ["getters"]
