"""Checking and normalising what users log: metric values, steps, contexts, params.

The fast cases (float value, int step, Context) are handled inline in ``Run``; these
functions are the slow paths, and the only place that decides what is acceptable.
"""

from __future__ import annotations

import math
import numbers
import operator
import sys
from typing import Any

import orjson

from yprov_hpc.core.context import Context
from yprov_hpc.core.errors import InvalidArgumentError, MetricValueError

# Context name -> its plain, interned str. Events store plain strs: a Context (a heap type)
# is tracked by the garbage collector, and a tuple holding one can never be untracked, so a
# buffer of such tuples would make every GC pass walk it. Keyed by plain str; a Context finds
# its entry too (same hash and equality).
PLAIN_CONTEXTS: dict[str, str] = {}


def metric_value(key: str, value: Any) -> float:
    """A real number as float: int, bool, numpy scalars, 1-element tensors. NaN/inf are kept."""
    if isinstance(value, (str, bytes, bytearray, complex)) or value is None:
        raise MetricValueError(key, value)
    if isinstance(value, numbers.Real) or hasattr(value, "__float__"):
        try:
            return float(value)
        except (TypeError, ValueError, OverflowError, RuntimeError):
            raise MetricValueError(key, value) from None
    raise MetricValueError(key, value)


def step_value(call: str, step: Any) -> int:
    """A step as int (numpy and torch integer scalars accepted)."""
    if not isinstance(step, bool):
        try:
            return operator.index(step)
        except TypeError:
            pass
    raise InvalidArgumentError(call, "step", step, "an int or None")


def context_value(context: Any) -> str:
    """The context's name as a plain str, from a Context, a str, or an Enum-like ``value``."""
    found = PLAIN_CONTEXTS.get(context) if isinstance(context, str) else None
    if found is not None:
        return found
    raw = getattr(context, "value", context)  # Enum members of other libraries
    if not isinstance(raw, str):
        raise InvalidArgumentError("log", "context", context, "a Context, a str or None")
    plain = sys.intern(str.__str__(Context(raw)))
    if isinstance(context, str):
        PLAIN_CONTEXTS[str.__str__(context)] = plain
    return plain


def param_value(value: Any) -> tuple[Any, str]:
    """(stored value, type name) of a param: JSON scalars as they are, containers as JSON text,
    other objects as their repr. The type name is the Python type's qualified name."""
    kind = type(value)
    type_name = kind.__qualname__
    if kind.__module__ != "builtins":
        type_name = f"{kind.__module__}.{type_name}"
    if value is None or isinstance(value, (bool, int, str)):
        if isinstance(value, int) and not isinstance(value, bool) and abs(value) >= 2**63:
            return str(value), type_name
        return value, type_name
    if isinstance(value, float):
        return value, type_name
    if isinstance(value, (list, tuple, dict)):
        try:
            return orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS).decode(), type_name
        except TypeError:
            pass
    return repr(value), type_name


def same_param(old: tuple[Any, str], new: tuple[Any, str]) -> bool:
    """Whether two stored params are the same (NaN equals NaN here)."""
    (ov, ot), (nv, nt) = old, new
    if ot != nt:
        return False
    if isinstance(ov, float) and isinstance(nv, float) and math.isnan(ov) and math.isnan(nv):
        return True
    return bool(ov == nv)
