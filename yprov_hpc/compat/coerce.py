"""yProv4ML's leniency, made explicit: what the compatibility layer turns into a value the real
API accepts, and how it tells a model, a dataset and a path apart. Each coercion is listed in
docs/compat.md. Nothing here imports torch: a model or dataset is recognised only if the program
already imported it."""

from __future__ import annotations

import math
import numbers
import os
import re
import sys
from typing import Any

from yprov_hpc.core.errors import InvalidArgumentError, MetricValueError

__all__ = [
    "is_dataset",
    "is_existing_path",
    "is_model",
    "looks_like_namespace",
    "metric_points",
    "step_of",
]


def is_model(obj: Any) -> bool:
    """Whether ``obj`` is a torch.nn.Module (False when the program never imported torch)."""
    torch = sys.modules.get("torch")
    return torch is not None and isinstance(obj, torch.nn.Module)


def is_dataset(obj: Any) -> bool:
    """Whether ``obj`` is a torch Dataset or DataLoader (False when torch was never imported)."""
    data = sys.modules.get("torch.utils.data")
    return data is not None and isinstance(obj, (data.Dataset, data.DataLoader))


def is_existing_path(obj: Any) -> bool:
    """Whether ``obj`` is a str or path naming an existing file or directory."""
    return isinstance(obj, (str, os.PathLike)) and str(obj) != "" and os.path.exists(obj)


_DOMAIN = re.compile(r"^[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}/?$")


def looks_like_namespace(value: Any) -> bool:
    """Whether a string reads as a namespace (a URI or a domain such as www.example.org), not
    as an experiment name."""
    if not isinstance(value, str):
        return False
    text = value.strip()
    return "://" in text or text.startswith(("urn:", "www.")) or bool(_DOMAIN.match(text))


def step_of(call: str, step: Any) -> int | None:
    """A step as int: ints as they are, integral floats (1.0 -> 1); 1.5 is refused."""
    if step is None:
        return None
    if isinstance(step, bool):
        raise InvalidArgumentError(call, "step", step, "an int or None")
    if isinstance(step, numbers.Integral):
        return int(step)
    if hasattr(step, "__index__"):
        try:
            return int(step.__index__())
        except TypeError:
            pass
    try:
        as_float = float(step)
    except (TypeError, ValueError, RuntimeError):
        raise InvalidArgumentError(call, "step", step, "an int or None") from None
    if math.isfinite(as_float) and as_float.is_integer():
        return int(as_float)
    raise InvalidArgumentError(call, "step", step, "an int or an integral float (1.0), not a fraction")


def _one_value(key: str, value: Any) -> float:
    if value is None:
        return math.nan
    if isinstance(value, (str, bytes, bytearray, complex, list, tuple, dict)):
        raise MetricValueError(key, value)
    try:
        return float(value)
    except (TypeError, ValueError, OverflowError, RuntimeError):
        raise MetricValueError(key, value) from None


def metric_points(key: str, value: Any) -> list[float]:
    """The points a yProv4ML metric value stands for: None -> [NaN] (a missing value); a list,
    tuple, array or tensor of numbers -> one point per element, in order; a number -> itself.
    Nested lists, strings and other objects are refused with MetricValueError."""
    if hasattr(value, "tolist") and not isinstance(value, (list, tuple)):
        try:
            value = value.tolist()
        except (TypeError, ValueError, RuntimeError):
            raise MetricValueError(key, value) from None
    if isinstance(value, (list, tuple)):
        return [_one_value(key, item) for item in value]
    return [_one_value(key, value)]
