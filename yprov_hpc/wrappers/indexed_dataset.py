"""yProv4ML's ``wrappers.indexed_dataset`` import path (shim; imports torch)."""

from yprov_hpc.compat.torch_wrappers import IndexedDatasetWrapper

__all__ = ["IndexedDatasetWrapper"]
