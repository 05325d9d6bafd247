"""yProv4ML's ``wrappers.tracked_model`` import path (shim; imports torch)."""

from yprov_hpc.compat.torch_wrappers import ProvenanceTrackedModel

__all__ = ["ProvenanceTrackedModel"]
