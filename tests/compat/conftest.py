"""Fixtures of the yProv4ML compatibility tests: runs started through the compatibility layer,
without a sidecar and without a SIGTERM handler in the pytest process."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import entity, load
from yprov_hpc import compat
from yprov_hpc.compat import finals, pending
from yprov_hpc.compat.warn import reset_warnings
from yprov_hpc.rank.run import Run


@pytest.fixture(autouse=True)
def _fresh_compat_state() -> Iterator[None]:
    """Each test starts as a fresh process would: nothing held, nothing warned, no folds."""
    pending.reset()
    reset_warnings()
    finals.REGISTERED.clear()
    yield
    pending.reset()


def begin(save_dir: Path, *args: Any, **kwargs: Any) -> Run:
    """compat.start_run with the test defaults; with no positionals, experiment "exp" in save_dir."""
    kwargs.setdefault("handle_sigterm", False)
    kwargs.setdefault("sidecar", "off")
    if not args:
        kwargs.setdefault("experiment_name", "exp")
    kwargs.setdefault("provenance_save_dir", save_dir)
    return compat.start_run(*args, **kwargs)


def finish(run: Run, **end_kwargs: Any) -> dict[str, Any]:
    """End the run through compat.end_run and return its rank-0 document."""
    report = compat.end_run(**end_kwargs)
    assert report.status == "finished", report
    return load(run.run_dir / f"prov_{run.config.experiment}_rank0.json")


def ent(doc: dict[str, Any], local: str) -> dict[str, Any]:
    """The rank-0 entity ``run:rank0.<local>`` with plain values."""
    return entity(doc, f"run:rank0.{local}")


def ids(doc: dict[str, Any], kind: str = "entity") -> set[str]:
    """The identifiers of a document's records of one kind."""
    return set(doc.get(kind, {}))


def metric(doc: dict[str, Any], label: str, context: str | None = None) -> dict[str, Any]:
    """The rank-0 metric entity with this label and context, found by its attributes (names with
    characters outside an NCName get other identifiers)."""
    for ident in doc["entity"]:
        plain = entity(doc, ident)
        found = (plain.get("prov:label"), plain.get("yprov:context"))
        if found == (label, context) and "yprov:count" in plain:
            return plain
    raise KeyError(f"no metric {label!r} in context {context!r}")
