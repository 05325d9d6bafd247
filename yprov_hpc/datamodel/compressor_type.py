"""yProv4ML's ``datamodel.compressor_type`` import path (shim)."""

from yprov_hpc.compat.enums import CompressorType

__all__ = ["CompressorType"]
