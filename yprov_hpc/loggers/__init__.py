"""yProv4ML's ``loggers`` import path (shim): ``ProvMLLogger`` loads Lightning on first use."""

from __future__ import annotations

from typing import Any

from yprov_hpc.compat.itwinai import ProvMLItwinAILogger

__all__ = ["ProvMLItwinAILogger", "ProvMLLogger"]


def __getattr__(name: str) -> Any:
    if name == "ProvMLLogger":
        from yprov_hpc.compat.lightning import ProvMLLogger

        return ProvMLLogger
    raise AttributeError(f"module 'yprov_hpc.loggers' has no attribute {name!r}")
