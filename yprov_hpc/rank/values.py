"""Checking and normalising what users log: names, metric values, steps, contexts, params.

The fast cases (float value, int step, Context) are handled inline in ``Run.log_metric``; these
functions are the slow paths, and the only place that decides what is acceptable. The bounds
are those of the event schema (``wire.records``), so that the sidecar never has to refuse what
the API let through: names and contexts up to ``MAX_NAME_CHARS``, text up to ``MAX_TEXT_CHARS``,
steps within int64, info dicts as ``check_plain`` accepts them.
"""

from __future__ import annotations

import contextlib
import math
import numbers
import operator
import sys
from typing import Any

import orjson

from yprov_hpc.core.context import UTF8_EXPECTED, Context, utf8_encodable
from yprov_hpc.core.errors import InvalidArgumentError, InvalidKeyError, LimitExceededError, MetricValueError
from yprov_hpc.wire.records import INT64_MAX, MAX_NAME_CHARS, MAX_TEXT_CHARS, EventError, check_plain

INT64_MIN = -INT64_MAX - 1

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


def name_value(call: str, key: Any) -> str:
    """A metric, param, label or model name: a non-empty str of at most MAX_NAME_CHARS chars."""
    if type(key) is not str or not key:
        raise InvalidKeyError(call, key)
    if len(key) > MAX_NAME_CHARS:
        raise LimitExceededError(call, "name", key, f"at most {MAX_NAME_CHARS} characters")
    if not key.isascii() and not utf8_encodable(key):
        raise InvalidKeyError(call, key, UTF8_EXPECTED)
    return key


def step_value(call: str, step: Any) -> int:
    """A step as int (numpy and torch integer scalars accepted), within int64."""
    if not isinstance(step, bool):
        try:
            value = operator.index(step)
        except TypeError:
            pass
        else:
            if INT64_MIN <= value <= INT64_MAX:
                return value
            raise LimitExceededError(call, "step", step, "a step must fit a signed 64-bit integer")
    raise InvalidArgumentError(call, "step", step, "an int or None")


def context_value(context: Any, call: str = "log") -> str:
    """The context's name as a plain str, from a Context, a str, or an Enum-like ``value``."""
    found = PLAIN_CONTEXTS.get(context) if isinstance(context, str) else None
    if found is not None:
        return found
    raw = getattr(context, "value", context)  # Enum members of other libraries
    if not isinstance(raw, str):
        raise InvalidArgumentError(call, "context", context, "a Context, a str or None")
    plain = sys.intern(str.__str__(Context(raw)))
    if isinstance(context, str):
        PLAIN_CONTEXTS[str.__str__(context)] = plain
    return plain


def where(call: str, context: Any, step: Any) -> tuple[str | None, int | None]:
    """The checked (context, step) of a logging call: the one check of every verb but the hot path."""
    ctx = None if context is None else context_value(context, call)
    if step is None or (type(step) is int and INT64_MIN <= step <= INT64_MAX):
        return ctx, step
    return ctx, step_value(call, step)


def timestamp_value(call: str, timestamp: Any) -> float | None:
    """A user's timestamp: seconds since the epoch (int or float, finite), or None."""
    if timestamp is None:
        return None
    if isinstance(timestamp, (int, float)) and not isinstance(timestamp, bool) and math.isfinite(timestamp):
        return float(timestamp)
    raise InvalidArgumentError(call, "timestamp", timestamp, "seconds since the epoch")


def info_value(call: str, info: dict[str, Any]) -> dict[str, Any]:
    """An info dict the rank built (model, dataset, artifact description), within the schema's
    bounds; a value that is not is refused here rather than by the sidecar."""
    try:
        check_plain(info, "info")
    except EventError as exc:
        raise LimitExceededError(call, "description", exc.reason, "docs/api.md, Limits") from None
    return info


def param_value(value: Any) -> tuple[Any, str]:
    """(stored value, type name) of a param: JSON scalars as they are, containers as JSON text,
    other objects as their repr. The type name is the Python type's qualified name."""
    kind = type(value)
    type_name = kind.__qualname__
    if kind.__module__ != "builtins":
        type_name = f"{kind.__module__}.{type_name}"
    type_name = type_name[:MAX_NAME_CHARS]
    if value is None or isinstance(value, (bool, int, float)):
        if isinstance(value, int) and not isinstance(value, bool) and not INT64_MIN <= value <= INT64_MAX:
            return str(value), type_name
        return value, type_name
    text: str | None = str.__str__(value) if isinstance(value, str) else None
    if text is None and isinstance(value, (list, tuple, dict)):
        with contextlib.suppress(TypeError):
            text = orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS).decode()
    if text is None:
        text = repr(value)
    if len(text) > MAX_TEXT_CHARS:
        raise LimitExceededError("log_param", "value", text, f"at most {MAX_TEXT_CHARS} characters")
    return text, type_name


def same_param(old: tuple[Any, str], new: tuple[Any, str]) -> bool:
    """Whether two stored params are the same (NaN equals NaN here)."""
    (ov, ot), (nv, nt) = old, new
    if ot != nt:
        return False
    if isinstance(ov, float) and isinstance(nv, float) and math.isnan(ov) and math.isnan(nv):
        return True
    return bool(ov == nv)
