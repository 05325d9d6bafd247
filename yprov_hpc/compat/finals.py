"""``register_final_metric``: a value folded over every logged point of a metric, recorded when
the run ends as the metric ``<name>_final`` (no step, no context).

yProv4ML documents this call (and marks it "temporarily removed"). yprov-hpc's merge already
summarises every metric (count, min, max, last, mean); this is for a custom fold.
"""

from __future__ import annotations

import operator
import threading
from collections.abc import Callable
from enum import Enum
from typing import Any

from yprov_hpc import api as _api
from yprov_hpc.core.errors import InvalidArgumentError, InvalidKeyError

__all__ = ["FoldOperation", "flush", "register_final_metric", "update"]


class FoldOperation(Enum):
    """yProv4ML's folds: each takes (accumulated, new point) and returns the new accumulated."""

    MAX = "max"
    MIN = "min"
    ADD = "add"
    SUBTRACT = "subtract"


_FOLDS: dict[FoldOperation, Callable[[Any, Any], Any]] = {
    FoldOperation.MAX: max,
    FoldOperation.MIN: min,
    FoldOperation.ADD: operator.add,
    FoldOperation.SUBTRACT: operator.sub,
}

# metric name -> [fold, accumulated value]; read on log_metric's slow check only when non-empty
REGISTERED: dict[str, list[Any]] = {}
_lock = threading.Lock()


def register_final_metric(
    metric_name: str, initial_value: float, fold_operation: FoldOperation | Callable[[Any, Any], Any]
) -> None:
    """Fold every later point of ``metric_name`` into ``initial_value`` with ``fold_operation``."""
    if type(metric_name) is not str or not metric_name:
        raise InvalidKeyError("register_final_metric", metric_name)
    fold = _FOLDS.get(fold_operation) if isinstance(fold_operation, FoldOperation) else fold_operation
    if not callable(fold):
        raise InvalidArgumentError(
            "register_final_metric", "fold_operation", fold_operation, "a FoldOperation or a callable(x, y)"
        )
    with _lock:
        REGISTERED[metric_name] = [fold, initial_value]


def update(metric_name: str, value: float) -> None:
    """Fold one logged point in (called by log_metric for registered names)."""
    with _lock:
        entry = REGISTERED.get(metric_name)
        if entry is not None:
            entry[1] = entry[0](entry[1], value)


def flush() -> None:
    """Record every registered fold as ``<name>_final`` on the active run, then forget them."""
    with _lock:
        entries = [(name, entry[1]) for name, entry in REGISTERED.items()]
        REGISTERED.clear()
    for name, value in entries:
        _api.log_metric(f"{name}_final", value)
