"""yProv4ML's ``datamodel`` import path (shim): the enumerations live in ``yprov_hpc.compat.enums``."""

from yprov_hpc.compat.enums import CompressorType, LoggingItemKind, MetricsType

__all__ = ["CompressorType", "LoggingItemKind", "MetricsType"]
