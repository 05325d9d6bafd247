"""Calls made before any run started, held until one starts.

yProv4ML's Lightning docs log params and datasets before the Trainer exists and never call
``start_run``: the ``ProvMLLogger`` starts the run later. Such calls are held (with a one-time
warning) and replayed, in order, when this process's first run starts. If no run ever starts,
the interpreter's exit says which calls were never recorded. Once a run has started, a call
without an active run raises NoActiveRunError as usual.
"""

from __future__ import annotations

import atexit
import logging
import threading
from collections.abc import Callable
from typing import Any

from yprov_hpc import api as _api
from yprov_hpc.compat.warn import warn_once

__all__ = ["hold_if_no_run", "mark_started", "replay", "reset"]

log = logging.getLogger("yprov_hpc")

_held: list[tuple[Callable[..., Any], tuple[Any, ...], dict[str, Any]]] = []
_lock = threading.Lock()
_state = {"started": False, "exit_hook": False}


def mark_started() -> None:
    """Record that this process has started a run: calls without one raise from now on."""
    _state["started"] = True


def hold_if_no_run(call: Callable[..., Any], *args: Any, **kwargs: Any) -> bool:
    """Hold ``call(*args, **kwargs)`` when no run has started yet in this process; return whether
    it was held. Returns False (the caller goes on, and raises as usual) once a run has started."""
    if _api.active_run() is not None or _state["started"]:
        return False
    warn_once(
        "held_before_start_run",
        f"{call.__name__}() before start_run(): held until a run starts (a ProvMLLogger or "
        "start_run); call start_run() first if that is not what you meant",
    )
    with _lock:
        _held.append((call, args, kwargs))
        if not _state["exit_hook"]:
            _state["exit_hook"] = True
            atexit.register(_report_unrecorded)
    return True


def reset() -> None:
    """Forget held calls and that a run started (for tests of a fresh process)."""
    with _lock:
        _held.clear()
    _state["started"] = False


def replay() -> None:
    """Run the held calls against the run that just started. A held call that fails is reported
    and skipped: replaying must not fail the start of the run."""
    mark_started()
    with _lock:
        calls = list(_held)
        _held.clear()
    for call, args, kwargs in calls:
        try:
            call(*args, **kwargs)
        except Exception as exc:  # the call was accepted earlier; say what was lost, go on
            log.warning("yprov: held %s() could not be recorded: %s", call.__name__, exc)


def _report_unrecorded() -> None:
    with _lock:
        names = [call.__name__ for call, _, _ in _held]
        _held.clear()
    if names:
        log.warning(
            "yprov: %d call(s) made before any run started were never recorded (%s): "
            "call start_run() before logging",
            len(names),
            ", ".join(names[:5]) + (", ..." if len(names) > 5 else ""),
        )
