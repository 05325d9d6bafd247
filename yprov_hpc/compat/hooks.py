"""Hooks that other parts of yprov-hpc fill in; the compatibility layer calls them.

``after_end_run`` is where ``end_run(crate_ro_crate=True, create_card=True)`` lands: the RO-Crate
and model-card exports are not part of this layer. Until they are wired, the request is
acknowledged with a one-time warning. Whatever the hook does, it never fails the run.
"""

from __future__ import annotations

from typing import Any

from yprov_hpc.compat.warn import warn_once

__all__ = ["after_end_run"]


def after_end_run(report: Any, crate_ro_crate: bool, create_card: bool) -> None:
    """Called once after ``end_run`` returned ``report`` (a RunReport), with the export requests."""
    if crate_ro_crate:
        warn_once("end_run.crate_ro_crate", "end_run(crate_ro_crate=True): no RO-Crate is written yet")
    if create_card:
        warn_once("end_run.create_card", "end_run(create_card=True): no model card is written yet")
