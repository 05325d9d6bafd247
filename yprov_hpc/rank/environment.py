"""What the run ran on: command, Python, packages, git state, host, launcher, CUDA.

Captured once per rank on the sender thread (not the training thread), sent as an
``ENVIRONMENT`` event. Each probe is best-effort: a failing one leaves its field empty.
"""

from __future__ import annotations

import getpass
import os
import platform
import subprocess
import sys
from importlib import metadata
from pathlib import Path
from typing import Any

from yprov_hpc.rank.discovery import Placement

KEY_PACKAGES = (
    "yprov-hpc",
    "torch",
    "lightning",
    "pytorch-lightning",
    "numpy",
    "mpi4py",
    "pyzmq",
    "msgpack",
    "prov",
    "nvidia-ml-py",
    "codecarbon",
    "scikit-learn",
    "tensorflow",
    "jax",
)
_LAUNCHER_PREFIXES = ("SLURM_", "OMPI_", "PMI_", "PMIX_", "MPI_LOCAL", "TORCHELASTIC_", "CUDA_VISIBLE")
_LAUNCHER_NAMES = ("RANK", "LOCAL_RANK", "WORLD_SIZE", "LOCAL_WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")


def _git(args: list[str], cwd: Path) -> str | None:
    try:
        out = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, timeout=5, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


def git_state(where: Path) -> dict[str, Any]:
    """Commit, branch and dirty flag of the git work tree holding ``where``, if any."""
    commit = _git(["rev-parse", "HEAD"], where)
    if commit is None:
        return {}
    status = _git(["status", "--porcelain", "--untracked-files=no"], where)
    return {
        "git_commit": commit,
        "git_branch": _git(["rev-parse", "--abbrev-ref", "HEAD"], where) or "",
        "git_dirty": bool(status),
        "git_root": _git(["rev-parse", "--show-toplevel"], where) or "",
    }


def _cuda() -> dict[str, Any]:
    info: dict[str, Any] = {}
    torch = sys.modules.get("torch")  # only if the program already imported it
    if torch is not None:
        info["torch_cuda"] = getattr(getattr(torch, "version", None), "cuda", None) or ""
    try:
        first = Path("/proc/driver/nvidia/version").read_text().splitlines()[0]
        info["nvidia_driver"] = first.strip()
    except (OSError, IndexError):
        pass
    return info


def capture(placement: Placement) -> dict[str, Any]:
    """The environment of this rank, as a flat-ish JSON-able dict."""
    script = Path(sys.argv[0]).resolve() if sys.argv and sys.argv[0] not in ("", "-c") else Path.cwd()
    where = script.parent if script.is_file() else Path.cwd()
    packages = {}
    for dist in metadata.distributions():
        name = dist.metadata.get("Name", None)  # type: ignore[attr-defined]
        if name:
            packages[name] = dist.version
    try:
        user = getpass.getuser()
    except Exception:  # no passwd entry in some containers
        user = str(os.getuid())
    launcher_vars = {
        k: v for k, v in os.environ.items() if k.startswith(_LAUNCHER_PREFIXES) or k in _LAUNCHER_NAMES
    }
    info: dict[str, Any] = {
        "command": [sys.executable, *sys.argv],
        "cwd": str(Path.cwd()),
        "python_version": platform.python_version(),
        "python_implementation": platform.python_implementation(),
        "executable": sys.executable,
        "platform": platform.platform(),
        "host": platform.node(),
        "user": user,
        "pid": os.getpid(),
        "cpu_count": os.cpu_count() or 0,
        "launcher": placement.launcher,
        "launcher_variables": launcher_vars,
        "key_packages": {k: packages[k] for k in KEY_PACKAGES if k in packages},
        "packages": dict(sorted(packages.items(), key=lambda kv: kv[0].lower())),
    }
    info.update(git_state(where))
    info.update(_cuda())
    return info
