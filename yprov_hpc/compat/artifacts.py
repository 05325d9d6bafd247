"""``log_artifact`` in yProv4ML's three layouts, told apart by which argument is an existing file:

- 3.2.8: ``(artifact_name, artifact_path, context, source, step, log_copy_in_prov_directory, ...)``
- the older docs: ``(artifact_name, artifact_path, context, step, timestamp, ...)``
- yprov-hpc: ``(artifact_path, context, step, timestamp)``

A second positional that is an existing path makes the first a name; a first positional that is
an existing path (and a second that is not) makes the second a context. Both existing and
different, or neither existing, is an error that names both.
"""

from __future__ import annotations

import os
from enum import Enum
from typing import Any

from yprov_hpc import api as _api
from yprov_hpc.compat import pending
from yprov_hpc.compat.binding import bind
from yprov_hpc.compat.coerce import is_existing_path, step_of
from yprov_hpc.compat.contexts import resolve_context
from yprov_hpc.compat.warn import ignored, warn_once
from yprov_hpc.core.context import Context
from yprov_hpc.core.errors import ArtifactNotFoundError, InvalidArgumentError

__all__ = ["log_artifact"]

_NAMED = ("artifact_name", "artifact_path", "context", "source", "step", "log_copy_in_prov_directory",
          "log_copy_subdirectory", "is_model", "is_input", "other_attrs")  # fmt: skip
_PATH_FIRST = ("artifact_path", "context", "step", "timestamp")
_KEYWORDS = set(_NAMED) | set(_PATH_FIRST)


def _name_first(first: Any, second: Any) -> bool:
    """Whether (first, second) is (name, path) rather than (path, context)."""
    if second is None or isinstance(second, (Context, Enum)) or not isinstance(second, (str, os.PathLike)):
        return False
    first_exists, second_exists = is_existing_path(first), is_existing_path(second)
    if second_exists and not first_exists:
        return True
    if first_exists and not second_exists:
        return False
    if first_exists and os.path.samefile(first, second):
        return True
    if first_exists:
        raise InvalidArgumentError(
            "log_artifact", "artifact_path", (first, second), "one path: both arguments are existing files"
        )
    missing = ArtifactNotFoundError(str(second))
    missing.args = (
        f"log_artifact(): neither {str(first)!r} nor {str(second)!r} is an existing file or directory",
    )
    raise missing


def _layout(args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[str, ...]:
    if len(args) >= 2 and _name_first(args[0], args[1]):
        layout = list(_NAMED)
        if len(args) > 3 and args[3] is not None and not isinstance(args[3], str):  # the older docs' step
            layout[3], layout[4] = "step", "timestamp"
        return tuple(layout)
    if len(args) == 1 and "artifact_path" in kwargs:
        return _NAMED
    return _PATH_FIRST


def log_artifact(*args: Any, **kwargs: Any) -> None:
    """A file or directory, hashed and copied into the run up to the size limit. The artifact is
    named by its path; a separate ``artifact_name`` is accepted and warned about once."""
    if pending.hold_if_no_run(log_artifact, *args, **kwargs):
        return
    opts = bind("log_artifact", args, kwargs, _layout(args, kwargs), _KEYWORDS | {"timestamp"})
    path = opts.get("artifact_path")
    name = opts.get("artifact_name")
    if name is not None and path is not None and str(name) not in (str(path), os.path.basename(str(path))):
        warn_once(
            "log_artifact.artifact_name", "artifact_name is accepted; the artifact is named by its path"
        )
    if opts.get("log_copy_in_prov_directory") is False:
        warn_once(
            "log_artifact.copy", "log_copy_in_prov_directory=False: copied anyway, up to the size limit"
        )
    ignored(
        "log_artifact",
        source=opts.get("source"),
        log_copy_subdirectory=opts.get("log_copy_subdirectory"),
        is_model=opts.get("is_model"),
        is_input=opts.get("is_input"),
        other_attrs=opts.get("other_attrs"),
    )
    context = opts.get("context")
    _api.log_artifact(
        path,  # type: ignore[arg-type]  # checked by the real API, which names a wrong one
        None if context is None else resolve_context(context),
        step_of("log_artifact", opts.get("step")),
        opts.get("timestamp"),
    )
