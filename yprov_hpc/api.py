"""The prov4ml-compatible module-level API: ``import yprov_hpc as prov4ml``.

These functions act on the process's active Run (the one ``start_run`` returned). The Run
object offers the same verbs for code that prefers not to use module state.
"""

from __future__ import annotations

import atexit
import logging
import os
import signal
import sys
import threading
from collections.abc import Mapping
from pathlib import Path
from types import FrameType
from typing import Any

from yprov_hpc.core import config as _config
from yprov_hpc.core.context import Context
from yprov_hpc.core.errors import NoActiveRunError, RunAlreadyActiveError
from yprov_hpc.rank.discovery import Placement, discover
from yprov_hpc.rank.ending import RunReport
from yprov_hpc.rank.run import Run
from yprov_hpc.rank.run_ids import choose_run_id

log = logging.getLogger("yprov_hpc")

_active: Run | None = None
_ended: bool = False
_hooks_installed = False
_previous_sigterm: Any = None
_in_sigterm = False  # the SIGTERM handler is running (a second SIGTERM is then dropped)


def _require(call: str) -> Run:
    run = _active
    if run is None:
        raise NoActiveRunError(call, "the run has ended" if _ended else "no run is active")
    return run


def start_run(
    prov_user_namespace: str | None = None,
    experiment_name: str | None = None,
    provenance_save_dir: str | os.PathLike[str] | None = None,
    collect_all_processes: bool = False,
    save_after_n_logs: int | None = None,
    rank: int | None = None,
    *,
    world_size: int | None = None,
    local_rank: int | None = None,
    run_id: str | None = None,
    sidecar: str | None = None,
    end_timeout_s: float | None = None,
    handle_sigterm: bool | None = None,
    auto_merge: bool | None = None,
    merge: str | None = None,
) -> Run:
    """Start recording this rank's provenance and return its Run.

    Arguments and their order are those of yProv4ML's ``prov4ml.start_run``. Every rank
    records (there is no rank-0-only mode); ``collect_all_processes=True`` additionally writes
    one combined document with every rank's document as a bundle. ``save_after_n_logs`` is
    the number of buffered events that wakes the sender to ship a batch (default 100, or
    ``YPROV_BATCH_EVENTS``; events also ship every 0.25 s). Arguments override ``YPROV_*``
    variables, and every variable is checked here (see docs/configuration.md); ``merge`` is
    "auto", "job" or "off". Usable as ``with start_run(...) as run:``.
    """
    global _active, _ended
    if _active is not None and _active.active:
        raise RunAlreadyActiveError(str(_active.run_dir))
    cfg = _config.resolve(
        {
            "namespace": prov_user_namespace,
            "experiment": experiment_name,
            "save_dir": provenance_save_dir,
            "collect_all_processes": collect_all_processes,
            "batch_events": save_after_n_logs,
            "run_id": run_id,
            "sidecar": sidecar,
            "end_timeout_s": end_timeout_s,
            "handle_sigterm": handle_sigterm,
            "auto_merge": auto_merge,
            "merge": merge,
        }
    )
    placement = discover(rank=rank, world_size=world_size, local_rank=local_rank)
    if not placement.world_size_known:
        _warn_world_size_unknown(placement)
    run = Run(cfg, placement, choose_run_id(cfg, placement))
    _active = run
    _ended = False
    _install_hooks(cfg.handle_sigterm)
    return run


_warned_world_size = False


def _warn_world_size_unknown(placement: Placement) -> None:
    """Once per process: the launcher gave a rank but no world size (SLURM_PROCID without
    SLURM_NTASKS, say). The ranks still share one run (their common parent names it), but
    nobody can tell when the world is complete."""
    global _warned_world_size
    if _warned_world_size:
        return
    _warned_world_size = True
    names = ", ".join(name for name, _ in placement.variables) or placement.launcher
    log.warning(
        "yprov: rank %d from %s, but no world size: the ranks of this job share one run through "
        "their parent process; set the world size (SLURM_NTASKS, WORLD_SIZE, or "
        "start_run(world_size=N)) or one YPROV_RUN_ID for all ranks, so that the run is merged "
        "once every rank ended",
        placement.rank,
        names,
    )


def end_run(create_graph: bool = False, create_svg: bool = False) -> RunReport:
    """End the active run: deliver every event, write this rank's done marker, and (on the last
    rank to end) wait for the merge, which runs outside this process. ``create_graph`` asks for
    DOT graphs, ``create_svg`` also for SVG (Graphviz). Returns where the provenance went."""
    global _active, _ended
    run = _require("end_run")
    try:
        return run.end_run(create_graph=create_graph, create_svg=create_svg)
    finally:
        _active = None
        _ended = True


def active_run() -> Run | None:
    """The process's active Run, or None."""
    return _active


def get_run_dir() -> Path:
    """The active run's directory."""
    return _require("get_run_dir").run_dir


def log_metric(key: str, value: float, context: Context | str | None = None, step: int | None = None) -> None:
    """Record one value of a metric (the hot path: appends to a buffer and returns)."""
    run = _active
    if run is None:
        raise NoActiveRunError("log_metric", "the run has ended" if _ended else "no run is active")
    run.log_metric(key, value, context, step)


def log_metrics(
    metrics: Mapping[str, float], context: Context | str | None = None, step: int | None = None
) -> None:
    """Record several metrics at one step."""
    _require("log_metrics").log_metrics(metrics, context, step)


def log_param(key: str, value: Any) -> None:
    """Record a one-time input; the same key with another value raises ParamConflictError."""
    _require("log_param").log_param(key, value)


def log_params(params: Mapping[str, Any]) -> None:
    """Record several params."""
    _require("log_params").log_params(params)


def log_artifact(
    artifact_path: str | os.PathLike[str],
    context: Context | str | None = None,
    step: int | None = None,
    timestamp: float | None = None,
) -> None:
    """Record a file or directory with its size and sha256."""
    _require("log_artifact").log_artifact(artifact_path, context, step, timestamp)


def log_current_execution_time(
    label: str, context: Context | str | None = None, step: int | None = None
) -> None:
    """Record the seconds since start_run under a label."""
    _require("log_current_execution_time").log_current_execution_time(label, context, step)


def log_system_metrics(context: Context | str | None = None, step: int | None = None) -> None:
    """Mark this moment for system metrics (sampled by the node sidecar, joined at merge)."""
    _require("log_system_metrics").log_system_metrics(context, step)


def log_carbon_metrics(context: Context | str | None = None, step: int | None = None) -> None:
    """Mark this moment for energy and carbon metrics (from the node sidecar, joined at merge)."""
    _require("log_carbon_metrics").log_carbon_metrics(context, step)


def log_model(
    model_label: Any,
    model: Any,
    log_model_info: bool = True,
    log_model_layers: bool = False,
    is_input: bool = False,
    sample_input: Any = None,
    context: Context | str | None = None,
    step: int | None = None,
) -> None:
    """Record a PyTorch model (label and model in either order)."""
    _require("log_model").log_model(
        model_label, model, log_model_info, log_model_layers, is_input, sample_input, context, step
    )


def save_model_version(
    model: Any,
    model_name: str,
    context: Context | str | None = None,
    step: int | None = None,
    timestamp: float | None = None,
) -> Path:
    """Save the next numbered checkpoint of ``model_name`` inside the run directory."""
    return _require("save_model_version").save_model_version(model, model_name, context, step, timestamp)


def log_dataset(dataset: Any, label: str, context: Context | str | None = None) -> None:
    """Record a Dataset or DataLoader as an input."""
    _require("log_dataset").log_dataset(dataset, label, context)


# --- process hooks: SIGTERM, interpreter exit, fork -----------------------------------------
def _on_sigterm(signum: int, frame: FrameType | None) -> None:
    global _in_sigterm
    if _in_sigterm:
        # the same SIGTERM again while the first is handled (the batch shell's, passed on by
        # srun and by the batch script): ending the run is under way, and it must not be cut
        return
    _in_sigterm = True
    try:
        run = _active
        if run is not None and run.active:
            log.warning("yprov: SIGTERM: ending the run so that everything logged so far is kept")
            try:
                end_run_with_status("killed")
            except Exception:
                log.exception("yprov: could not end the run on SIGTERM")
        previous = _previous_sigterm
        if callable(previous):
            previous(signum, frame)
        elif previous != signal.SIG_IGN:
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            os.kill(os.getpid(), signal.SIGTERM)
    finally:
        _in_sigterm = False


def end_run_with_status(status: str) -> RunReport | None:
    """End the active run with an explicit status (used by hooks and integrations)."""
    global _active, _ended
    run = _active
    if run is None or not run.active:
        return None
    try:
        return run.end_run(status=status)
    finally:
        _active = None
        _ended = True


def _at_exit() -> None:
    if _active is not None and _active.active:
        status = "failed" if getattr(sys, "last_value", None) is not None else "exited without end_run"
        end_run_with_status(status)


def _after_fork_in_child() -> None:
    if _active is not None and _active.active:
        _active.after_fork_in_child()


def _install_hooks(handle_sigterm: bool) -> None:
    global _hooks_installed, _previous_sigterm
    if handle_sigterm and threading.current_thread() is threading.main_thread():
        current = signal.getsignal(signal.SIGTERM)
        if current is not _on_sigterm:
            _previous_sigterm = current
            signal.signal(signal.SIGTERM, _on_sigterm)
    if not _hooks_installed:
        atexit.register(_at_exit)
        os.register_at_fork(after_in_child=_after_fork_in_child)
        _hooks_installed = True
