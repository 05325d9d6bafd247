"""Run ids: which run directory a ``start_run`` writes to, the same on every rank of a job.

- **Pinned** (``run_id=`` or ``YPROV_RUN_ID``): used as given. Refused when the directory holds
  an ended run, or when another job created it (``journal/owner.json`` names the creating job).
- **From the launcher** (``discovery.shared_run_key``: Slurm job and step, torchrun, the
  launcher process): the process's first run keeps the key, its k-th run gets ``<key>-r<k>``.
  Every rank of a job starts its runs in the same order, so all agree. A directory where an
  earlier process of the same job already ended a run is passed over for the next ordinal.
- **A lone process**: a fresh id (UTC time and randomness).
"""

from __future__ import annotations

import json
import os
import secrets
import time
from collections.abc import Mapping
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from yprov_hpc.core.config import ENV_RUN_ID, Config
from yprov_hpc.core.errors import ConfigError
from yprov_hpc.core.layout import RunLayout
from yprov_hpc.core.proc import create_time
from yprov_hpc.core.untrusted import read_small_json
from yprov_hpc.rank.discovery import Placement, shared_run_key
from yprov_hpc.rank.ending import run_is_complete

__all__ = ["choose_run_id", "new_run_id", "open_run_directory", "owner_key"]

_MAX_ORDINAL = 100_000
_MAX_OWNER_BYTES = 1 << 14
_runs_started = 0  # runs this process has started: the ordinal of the next one, minus one


def new_run_id() -> str:
    """A fresh run id: UTC time plus randomness, safe in file names and PROV identifiers."""
    return datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ") + "-" + secrets.token_hex(3)


def _root(config: Config, run_id: str) -> Path:
    return config.run_dir or config.save_dir / f"{config.experiment}_{run_id}"


def choose_run_id(config: Config, placement: Placement) -> str:
    """The run id of this process's next run (see the module docstring)."""
    global _runs_started
    _runs_started += 1
    if config.run_id:
        return config.run_id
    key = shared_run_key(placement, proposal=new_run_id())
    if key is None:
        return new_run_id()
    ordinal = _runs_started
    while ordinal < _MAX_ORDINAL:
        candidate = key if ordinal == 1 else f"{key}-r{ordinal}"
        if config.run_dir or not run_is_complete(RunLayout.open(_root(config, candidate), config.experiment)):
            return candidate
        ordinal += 1
    return new_run_id()


def owner_key(placement: Placement, env: Mapping[str, str] | None = None) -> str:
    """The job a rank belongs to: its Slurm job or torchrun run (the same on every rank: a
    *job-wide* key), else the launcher's shared key, else this process (pid and start time)."""
    environ = os.environ if env is None else env
    if environ.get("SLURM_JOB_ID"):
        return f"slurm {environ['SLURM_JOB_ID']}"
    if environ.get("TORCHELASTIC_RUN_ID", "none") != "none":
        return f"torchrun {environ['TORCHELASTIC_RUN_ID']}"
    key = shared_run_key(placement, env=environ)
    if key is not None:
        return key
    started = create_time(os.getpid()) or time.time()  # /proc: no psutil import at start_run
    return f"process {placement.node}:{os.getpid()}:{started:.2f}"


def _job_wide(key: str) -> bool:
    return key.startswith(("slurm ", "torchrun "))


def _read_job(path: Path) -> str | None:
    data = read_small_json(path, _MAX_OWNER_BYTES)
    job = data.get("job") if isinstance(data, dict) else None
    return job if isinstance(job, str) else None


def _claim(path: Path, record: dict[str, Any]) -> str:
    """Write ``record`` to ``path`` unless a record is there; return the job recorded there."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    try:
        with open(tmp, "x") as f:
            json.dump(record, f)
        try:
            os.link(tmp, path)  # atomic and exclusive: the first one wins
            return str(record["job"])
        except FileExistsError:
            pass
    finally:
        tmp.unlink(missing_ok=True)
    for _ in range(50):  # a linked file is complete; a read can only miss on I/O trouble
        job = _read_job(path)
        if job is not None:
            return job
        time.sleep(0.01)
    return "(an unreadable record)"


def open_run_directory(config: Config, placement: Placement, run_id: str) -> RunLayout:
    """Create (or join) the run directory; ConfigError if it holds an ended run, or belongs to
    another job: the directory's creator (``journal/owner.json``) is of another Slurm job or
    torchrun run, or this rank was already started there by another job (``rank<r>.start``)."""
    layout = RunLayout.create(config.save_dir, config.experiment, run_id, config.run_dir)
    hint = f"use a new run id (unset {ENV_RUN_ID} or pass another run_id)"
    if run_is_complete(layout):
        raise ConfigError("run_id", run_id, f"{layout.root} already holds a finished run; {hint}")
    job = owner_key(placement)
    record = {"job": job, "rank": placement.rank, "node": placement.node, "pid": os.getpid()}
    owner = _claim(layout.owner, {**record, "created_ts_ns": time.time_ns()})
    if owner != job and _job_wide(owner) and _job_wide(job):
        raise ConfigError(
            "run_id", run_id, f"{layout.root} belongs to another job ({owner}, not {job}); {hint}"
        )
    started_by = _claim(layout.rank_start(placement.rank), record)
    if started_by != job:
        raise ConfigError(
            "run_id",
            run_id,
            f"rank {placement.rank} of {layout.root} was already started by another job "
            f"({started_by}); {hint}",
        )
    return layout
