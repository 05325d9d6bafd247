"""``ProvenanceTrackedFunction``: a callable whose every result is logged as a metric."""

from __future__ import annotations

from typing import Any

from yprov_hpc.compat.api import log_metric_if_active as log_metric

__all__ = ["ProvenanceTrackedFunction"]


class ProvenanceTrackedFunction:
    """Wraps ``func`` (a loss module, a metric function): each call's result is logged as the
    metric named after the function (a function's ``__name__``, else its class name, as
    yProv4ML does for ``nn.MSELoss()``), at step 0, 1, 2, ... in ``context``."""

    def __init__(self, func: Any, context: Any = None) -> None:
        self.fn = func
        self.context = context
        self.source = getattr(func, "__name__", None) or type(func).__name__
        self.inc = 0

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        result = self.fn(*args, **kwargs)
        log_metric(self.source, result, context=self.context, step=self.inc)
        self.inc += 1
        return result
