"""Typed errors. Each carries the fields that went wrong, so callers can act on them.

User mistakes raise at once; transport trouble never raises into training (it is
counted and reported at ``end_run``).
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "ArtifactNotFoundError",
    "ArtifactTypeError",
    "ConfigError",
    "DecodeError",
    "InvalidArgumentError",
    "InvalidKeyError",
    "LimitExceededError",
    "MetricValueError",
    "MissingExtraError",
    "NoActiveRunError",
    "ParamConflictError",
    "RunAlreadyActiveError",
    "YProvError",
]


class YProvError(Exception):
    """Base class of every error raised by yprov-hpc."""


class NoActiveRunError(YProvError, RuntimeError):
    """A logging call came before ``start_run`` or after ``end_run``."""

    def __init__(self, call: str, state: str = "no run is active") -> None:
        self.call = call
        self.state = state
        super().__init__(f"{call}() called but {state}: call start_run() first")


class RunAlreadyActiveError(YProvError, RuntimeError):
    """``start_run`` was called while another run of this process is still active."""

    def __init__(self, run_dir: str) -> None:
        self.run_dir = run_dir
        super().__init__(f"a run is already active (writing to {run_dir}); call end_run() first")


class InvalidKeyError(YProvError, ValueError):
    """A param, metric or label key is not a non-empty string (that UTF-8 can encode)."""

    def __init__(self, call: str, key: Any, expected: str = "a non-empty str") -> None:
        self.call = call
        self.key = key
        super().__init__(f"{call}(): key must be {expected}, got {key!r} ({type(key).__name__})")


class InvalidArgumentError(YProvError, TypeError):
    """An argument other than a key or value (a step, a context, a timestamp) has a wrong type."""

    def __init__(self, call: str, name: str, value: Any, expected: str) -> None:
        self.call = call
        self.name = name
        self.value = value
        super().__init__(f"{call}(): {name} must be {expected}, got {value!r} ({type(value).__name__})")


class ParamConflictError(YProvError, ValueError):
    """The same param key was logged twice with different values."""

    def __init__(self, key: str, old: Any, new: Any) -> None:
        self.key = key
        self.old = old
        self.new = new
        super().__init__(
            f"log_param({key!r}): already logged with value {old!r}, refusing new value {new!r}"
            " (a param is logged once; use log_metric for values that change)"
        )


class MetricValueError(YProvError, TypeError):
    """A metric value is not a real number (NaN and inf are real numbers here and are kept)."""

    def __init__(self, key: str, value: Any) -> None:
        self.key = key
        self.value = value
        super().__init__(
            f"log_metric({key!r}): value must be a real number, got {value!r} ({type(value).__name__})"
        )


class ArtifactNotFoundError(YProvError, FileNotFoundError):
    """``log_artifact`` was given a path that does not exist."""

    def __init__(self, path: str) -> None:
        self.path = path
        super().__init__(f"log_artifact(): no file or directory at {path!r}")


class ArtifactTypeError(YProvError, ValueError):
    """``log_artifact`` was given a device, FIFO or socket (or a directory holding one): such a
    "file" has no size or content to copy and hash, and reading one can block or never end."""

    def __init__(self, path: str, kind: str) -> None:
        self.path = path
        self.kind = kind
        super().__init__(
            f"log_artifact(): {path!r} is a {kind}, not a regular file or directory; "
            "log a copy of its content instead"
        )


class LimitExceededError(YProvError, ValueError):
    """A name, value or step is outside the documented bounds (docs/api.md, "Limits")."""

    def __init__(self, call: str, name: str, value: Any, limit: str) -> None:
        self.call = call
        self.name = name
        self.value = value
        self.limit = limit
        shown = repr(value)
        if len(shown) > 80:
            shown = shown[:60] + f"... ({len(value) if hasattr(value, '__len__') else '?'} long)"
        super().__init__(f"{call}(): {name} {shown} is over the limit: {limit}")


class MissingExtraError(YProvError, ImportError):
    """A feature needs an optional dependency that is not installed; the message names the extra."""

    def __init__(self, feature: str, extra: str, missing: str) -> None:
        self.feature = feature
        self.extra = extra
        self.missing = missing
        super().__init__(
            f"{feature}() needs {missing}, which is not installed: pip install 'yprov-hpc[{extra}]'"
        )


class ConfigError(YProvError, ValueError):
    """A setting (argument or ``YPROV_*`` variable) has a value that cannot be used."""

    def __init__(self, name: str, value: Any, reason: str) -> None:
        self.name = name
        self.value = value
        self.reason = reason
        super().__init__(f"setting {name}={value!r}: {reason}")


class DecodeError(YProvError, ValueError):
    """Bytes on the wire or in a journal are not a batch of a known schema version."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(f"cannot decode batch: {reason}")
