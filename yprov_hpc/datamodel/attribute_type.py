"""yProv4ML's ``datamodel.attribute_type`` import path (shim)."""

from yprov_hpc.compat.enums import LoggingItemKind

__all__ = ["LoggingItemKind"]
