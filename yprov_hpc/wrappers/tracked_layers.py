"""yProv4ML's ``wrappers.tracked_layers`` import path (shim; imports torch)."""

from yprov_hpc.compat.torch_wrappers import WeightDistributionTrackedModel

__all__ = ["WeightDistributionTrackedModel"]
