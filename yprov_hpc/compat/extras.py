"""yProv4ML's reproducibility and timing verbs, each a thin layer on the real API:
``log_source_code``, ``log_execution_command``, ``log_execution_start_time`` /
``log_execution_end_time``, ``log_input`` / ``log_output``."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from yprov_hpc import api as _api
from yprov_hpc.compat import pending
from yprov_hpc.compat.api import log_param
from yprov_hpc.compat.coerce import is_existing_path
from yprov_hpc.compat.scope import run_state
from yprov_hpc.compat.warn import warn_once

__all__ = [
    "log_execution_command",
    "log_execution_end_time",
    "log_execution_start_time",
    "log_input",
    "log_output",
    "log_source_code",
]


def _main_script() -> Path | None:
    main = sys.modules.get("__main__")
    path = getattr(main, "__file__", None) or (sys.argv[0] if sys.argv and sys.argv[0] else None)
    return Path(path) if path and os.path.isfile(path) else None


def _git_commit(where: Path) -> str | None:
    try:
        out = subprocess.run(
            ["git", "-C", str(where), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


def log_source_code(path: Any = None, use_git: bool = False) -> None:
    """The source code as an artifact (hashed; copied into the run up to the artifact size
    limit): ``path`` (a file or a directory), or else the running script. ``use_git=True``
    (3.2.8's only argument, also accepted positionally) also records the git commit as the
    param ``source_code``. A path that does not exist falls back to the script, with a warning."""
    if pending.hold_if_no_run(log_source_code, path, use_git):
        return
    if isinstance(path, bool):
        path, use_git = None, path
    target: Path | None = Path(path) if is_existing_path(path) else None
    if path is not None and target is None:
        warn_once(
            "log_source_code.path", f"log_source_code({path!r}): no such path; the running script is logged"
        )
    target = target or _main_script()
    if target is None:
        warn_once("log_source_code.none", "log_source_code(): no script file to log (interactive session?)")
    else:
        _api.log_artifact(target)
    if use_git:
        commit = _git_commit((target or Path.cwd()).parent if target and target.is_file() else Path.cwd())
        if commit:
            log_param("source_code", commit)


def log_execution_command(cmd: str, path: str | None = None) -> None:
    """The command that ran the training, as the param ``execution_command`` (``cmd path`` when
    both are given, as in 3.2.8). The run's environment records the real command line too."""
    if pending.hold_if_no_run(log_execution_command, cmd, path):
        return
    log_param("execution_command", cmd if path is None else f"{cmd} {path}")


def log_execution_start_time() -> None:
    """The seconds since start_run, as the series ``execution_start_time``."""
    _api.log_current_execution_time("execution_start_time")


def log_execution_end_time() -> None:
    """The seconds since start_run, as the series ``execution_end_time``."""
    _api.log_current_execution_time("execution_end_time")


def _log_io(kind: str, value: Any, log_copy_in_prov_directory: bool) -> None:
    counters = run_state("io_counters")
    counters[kind] = number = counters.get(kind, 0) + 1
    if is_existing_path(value):
        if not log_copy_in_prov_directory:
            warn_once(
                f"log_{kind}.copy", f"log_{kind}(log_copy_in_prov_directory=False): files are copied anyway"
            )
        _api.log_artifact(value)
    else:
        log_param(f"{kind}_{number}", value)


def log_input(inp: Any, log_copy_in_prov_directory: bool = True) -> None:
    """A user-defined input: a file or directory as an artifact, any other value as the param
    ``input_<n>`` (n counts the inputs from 1)."""
    if pending.hold_if_no_run(log_input, inp, log_copy_in_prov_directory):
        return
    _log_io("input", inp, log_copy_in_prov_directory)


def log_output(out: Any, log_copy_in_prov_directory: bool = True) -> None:
    """A user-defined output: a file or directory as an artifact, any other value as the param
    ``output_<n>``."""
    if pending.hold_if_no_run(log_output, out, log_copy_in_prov_directory):
        return
    _log_io("output", out, log_copy_in_prov_directory)
