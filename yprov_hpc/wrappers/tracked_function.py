"""yProv4ML's ``wrappers.tracked_function`` import path (shim)."""

from yprov_hpc.compat.tracked import ProvenanceTrackedFunction

__all__ = ["ProvenanceTrackedFunction"]
