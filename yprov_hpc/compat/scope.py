"""State that belongs to one run (param revision numbers, FLOP totals, input/output counters):
forgotten when another run becomes active."""

from __future__ import annotations

import threading
from typing import Any

from yprov_hpc import api as _api

__all__ = ["run_state"]

_stores: dict[str, dict[Any, Any]] = {}
_current: list[str | None] = [None]
_lock = threading.Lock()


def run_state(name: str) -> dict[Any, Any]:
    """The store ``name`` of the active run (or of "no run"), empty for each new run."""
    run = _api.active_run()
    run_id = None if run is None else f"{run.run_id}/{run.rank}/{id(run)}"
    with _lock:
        if run_id != _current[0]:
            _stores.clear()
            _current[0] = run_id
        return _stores.setdefault(name, {})
