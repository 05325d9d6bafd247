"""What the run ran on: command, entry script, Python, packages, git state, seeds, thread and
communication settings, host, CPU and GPU models, launcher, CUDA.

``capture`` runs once per rank on the sender thread (not the training thread), and is sent as
an ``ENVIRONMENT`` event; each probe is best-effort: a failing one leaves its field empty. Its
imports (subprocess, importlib.metadata, ...) happen there, not at ``import yprov_hpc``.
``start_info`` and ``hello_info`` are the cheap facts the run start and hello events carry,
taken in the training thread.
"""

from __future__ import annotations

import hashlib
import os
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from yprov_hpc.core.hardware import cpu_model, nvidia_gpu_models
from yprov_hpc.rank.discovery import Placement

if TYPE_CHECKING:
    from yprov_hpc.core.config import Config

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
# thread pools, math libraries and collective communication: what changes speed and numerics
_RUNTIME_PREFIXES = (
    "OMP_",
    "MKL_",
    "OPENBLAS_",
    "KMP_",
    "NCCL_",
    "CUDA_",
    "CUBLAS_",
    "GLOO_",
    "TORCH_",
    "UCX_",
)
_SEED_NAMES = ("PYTHONHASHSEED", "PL_GLOBAL_SEED", "PL_SEED_WORKERS")
ENTRY_COPY_MAX_BYTES = 1 << 20  # the entry script is copied into the run up to this size
_MAX_UNTRACKED_LISTED = 200


_MAX_HEADER_LINES = 64  # Name and Version come in the first few


def start_info(config: Config, placement: Placement, run_id: str, stream: int) -> dict[str, Any]:
    """What the run start event says about the run and this rank."""
    p = placement
    return {
        "run_id": run_id,
        "namespace": config.namespace,
        "experiment": config.experiment,
        "rank": p.rank,
        "local_rank": p.local_rank,
        "world_size": p.world_size,
        "node": p.node,
        "launcher": p.launcher,
        "pid": os.getpid(),
        "stream": stream,
        "collect_all_processes": config.collect_all_processes,
        "batch_events": config.batch_events,
        "parent_run": config.parent_run or "",
        "slurm_step_id": os.environ.get("SLURM_STEP_ID", ""),
    }


def gpu_hint() -> dict[str, Any]:
    """Which GPU this rank uses, as far as the rank itself can tell without touching CUDA:
    CUDA_VISIBLE_DEVICES, and torch's current device if the program already set CUDA up."""
    hint: dict[str, Any] = {}
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        hint["cuda_visible_devices"] = visible[:1024]
    torch = sys.modules.get("torch")
    try:
        if torch is not None and torch.cuda.is_initialized():
            hint["cuda_device"] = int(torch.cuda.current_device())
    except Exception:  # a broken CUDA set-up must not stop the run
        pass
    return hint


def hello_info(placement: Placement) -> dict[str, Any]:
    """What the hello event tells the sidecar: the process, the world, the GPU hints."""
    p = placement
    hello = {"pid": os.getpid(), "world_size": p.world_size, "local_rank": p.local_rank, **gpu_hint()}
    if p.local_world_size is not None:
        hello["local_world_size"] = p.local_world_size
    return hello


def _git(args: list[str], cwd: Path) -> str | None:
    import subprocess

    try:
        out = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, timeout=5, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


def _git_bytes(args: list[str], cwd: Path) -> bytes | None:
    import subprocess

    try:
        out = subprocess.run(["git", *args], cwd=cwd, capture_output=True, timeout=10, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout if out.returncode == 0 else None


def git_state(where: Path) -> dict[str, Any]:
    """Commit, branch and dirty flag of the git work tree holding ``where``, if any. Dirty means
    any change, untracked files included; the diff against the commit is kept as its sha256."""
    commit = _git(["rev-parse", "HEAD"], where)
    if commit is None:
        return {}
    status = (_git_bytes(["status", "--porcelain", "--untracked-files=all"], where) or b"").decode(
        errors="replace"
    )  # not stripped: a porcelain line starts with a status column that may be a space
    untracked = [line[3:] for line in status.splitlines() if line.startswith("?? ")]
    modified = [line[3:] for line in status.splitlines() if line and not line.startswith("?? ")]
    diff = _git_bytes(["diff", "HEAD", "--binary"], where) or b""
    state: dict[str, Any] = {
        "git_commit": commit,
        "git_branch": _git(["rev-parse", "--abbrev-ref", "HEAD"], where) or "",
        "git_dirty": bool(status.strip()),
        "git_root": _git(["rev-parse", "--show-toplevel"], where) or "",
        "git_modified": modified[:_MAX_UNTRACKED_LISTED],
        "git_untracked": untracked[:_MAX_UNTRACKED_LISTED],
        "git_untracked_count": len(untracked),
        "git_diff_sha256": hashlib.sha256(diff).hexdigest() if diff else "",
    }
    return state


def entry_script(script: Path | None, copy_to: Path | None) -> dict[str, Any]:
    """The entry script's path, size and sha256; with ``copy_to``, a copy of it up to
    ENTRY_COPY_MAX_BYTES (a larger one is hashed only)."""
    if script is None or not script.is_file():
        return {}
    try:
        data = script.read_bytes()
    except OSError:
        return {"entry_script": str(script)}
    info: dict[str, Any] = {
        "entry_script": str(script),
        "entry_script_size_bytes": len(data),
        "entry_script_sha256": hashlib.sha256(data).hexdigest(),
    }
    if copy_to is not None and len(data) <= ENTRY_COPY_MAX_BYTES:
        try:
            copy_to.parent.mkdir(parents=True, exist_ok=True)
            copy_to.write_bytes(data)
            info["entry_script_copy"] = copy_to.name
        except OSError:
            pass  # the hash is what matters; a copy is a convenience
    return info


def seeds() -> dict[str, Any]:
    """The random seeds the program set, where they can be read back: torch's initial seed,
    the seed variables, and digests of the Python and numpy generator states (equal digests at
    the same point of two runs mean the same generator state)."""
    found: dict[str, Any] = {name: os.environ[name] for name in _SEED_NAMES if name in os.environ}
    torch = sys.modules.get("torch")
    try:
        if torch is not None:
            found["torch_initial_seed"] = int(torch.initial_seed())
    except Exception:  # a broken torch must not stop the capture
        pass
    import random

    found["python_random_state_sha256"] = hashlib.sha256(repr(random.getstate()).encode()).hexdigest()
    np = sys.modules.get("numpy")
    try:
        if np is not None:
            _, keys, pos, *_ = np.random.get_state()
            found["numpy_random_state_sha256"] = hashlib.sha256(
                keys.tobytes() + str(pos).encode()
            ).hexdigest()
    except Exception:
        pass
    return found


def hardware() -> dict[str, Any]:
    """CPU model and the NVIDIA GPUs the driver lists."""
    import platform

    info: dict[str, Any] = {"machine": platform.machine(), "cpu_model": cpu_model()}
    gpus = nvidia_gpu_models()
    if gpus:
        info["gpu_models"] = gpus
    return info


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


def _name_and_version(dist: Any) -> tuple[str | None, str | None]:
    """A distribution's name and version from the header lines of its metadata file, without
    parsing the whole file as an e-mail message (what ``dist.metadata`` does, ~1 ms each)."""
    try:
        text = dist.read_text("METADATA") or dist.read_text("PKG-INFO")
    except (OSError, UnicodeDecodeError):
        text = None
    name = version = None
    for line in (text or "").split("\n", _MAX_HEADER_LINES)[:_MAX_HEADER_LINES]:
        line = line.rstrip("\r")
        if not line:
            break  # the end of the headers
        if line.startswith("Name:"):
            name = line[5:].strip() or None
        elif line.startswith("Version:"):
            version = line[8:].strip() or None
        if name and version:
            break
    return name, version


def installed_packages(dists: Any) -> dict[str, str]:
    """Name -> version of every installed distribution that has both."""
    packages: dict[str, str] = {}
    for i, dist in enumerate(dists):
        if i % 8 == 7:
            time.sleep(0)  # on the sender thread: hand the GIL to training between files
        name, version = _name_and_version(dist)
        if name is None or version is None:  # an unusual metadata file: the full parser
            try:
                name, version = dist.metadata.get("Name", None), dist.version
            except Exception:  # a broken distribution must not stop the capture
                continue
        if name and version:
            packages[name] = version
    return packages


def capture(placement: Placement, script_copy_to: Path | None = None) -> dict[str, Any]:
    """The environment of this rank, as a flat-ish JSON-able dict; ``script_copy_to`` is where
    a bounded copy of the entry script goes (none when not given)."""
    import getpass
    import platform
    from importlib import metadata

    script = Path(sys.argv[0]).resolve() if sys.argv and sys.argv[0] not in ("", "-c") else Path.cwd()
    where = script.parent if script.is_file() else Path.cwd()
    packages = installed_packages(metadata.distributions())
    try:
        user = getpass.getuser()
    except Exception:  # no passwd entry in some containers
        user = str(os.getuid())
    launcher_vars = {
        k: v for k, v in os.environ.items() if k.startswith(_LAUNCHER_PREFIXES) or k in _LAUNCHER_NAMES
    }
    runtime_vars = {k: v for k, v in os.environ.items() if k.startswith(_RUNTIME_PREFIXES)}
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
        "runtime_variables": dict(sorted(runtime_vars.items())),
        "key_packages": {k: packages[k] for k in KEY_PACKAGES if k in packages},
        "packages": dict(sorted(packages.items(), key=lambda kv: kv[0].lower())),
    }
    info.update(git_state(where))
    info.update(entry_script(script if script.is_file() else None, script_copy_to))
    info.update(seeds())
    info.update(hardware())
    info.update(_cuda())
    return info
