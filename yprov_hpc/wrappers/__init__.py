"""yProv4ML's ``wrappers`` import path (shim): the names live in ``yprov_hpc.compat``."""

from __future__ import annotations

from typing import Any

from yprov_hpc.compat.tracked import ProvenanceTrackedFunction

__all__ = [
    "IndexedDatasetWrapper",
    "ProvenanceTrackedFunction",
    "ProvenanceTrackedModel",
    "WeightDistributionTrackedModel",
]


def __getattr__(name: str) -> Any:
    from yprov_hpc.compat import lazy_name

    try:
        return lazy_name(name)
    except AttributeError:
        raise AttributeError(f"module 'yprov_hpc.wrappers' has no attribute {name!r}") from None
