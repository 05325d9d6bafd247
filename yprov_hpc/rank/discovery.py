"""Where this process sits in the job: rank, local rank, world size, node, launcher.

The one home of launcher knowledge. Explicit arguments come first, then (in this order)
torch.distributed when already initialised, torchrun, Open MPI, MPICH/Hydra PMI, PMIx, Slurm,
and mpi4py when the program has already imported and initialised it. Nothing here imports
torch or mpi4py: only modules the program already imported are consulted.

PMI or PMIx variables that Slurm's own MPI plugin set (``srun --mpi=pmi2`` or ``--mpi=pmix``)
are told apart from those of an ``mpiexec`` (Hydra) by their rank matching ``SLURM_PROCID``
without Hydra's ``MPI_LOCALRANKID``: those ranks get ``SLURM_LOCALID`` as their local rank and
the launcher ``srun+<plugin>`` (``SLURM_MPI_TYPE`` when set).
"""

from __future__ import annotations

import hashlib
import os
import socket
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from yprov_hpc.core.proc import create_time

__all__ = ["Placement", "discover", "in_slurm_step", "shared_run_key"]


@dataclass(frozen=True)
class Placement:
    """A rank's place in its job."""

    rank: int
    local_rank: int
    world_size: int
    local_world_size: int | None
    node: str
    launcher: str
    variables: tuple[tuple[str, str], ...]  # the launcher variables that were read
    world_size_known: bool = True  # False: a rank variable was set without its world size


# (launcher, rank var, local rank var, world size var)
_ENV_LAUNCHERS: tuple[tuple[str, str, str, str], ...] = (
    ("torchrun", "RANK", "LOCAL_RANK", "WORLD_SIZE"),
    ("openmpi", "OMPI_COMM_WORLD_RANK", "OMPI_COMM_WORLD_LOCAL_RANK", "OMPI_COMM_WORLD_SIZE"),
    ("mpich", "PMI_RANK", "MPI_LOCALRANKID", "PMI_SIZE"),
    ("pmix", "PMIX_RANK", "PMIX_LOCAL_RANK", "PMIX_SIZE"),
    ("slurm", "SLURM_PROCID", "SLURM_LOCALID", "SLURM_NTASKS"),
)


def _int(env: Mapping[str, str], name: str) -> int | None:
    raw = env.get(name)
    if raw is None or raw.strip() == "":
        return None
    try:
        return int(raw)
    except ValueError:
        return None


def _slurm_mpi_launcher(env: Mapping[str, str], name: str, rank: int) -> str | None:
    """``srun+<plugin>`` when the PMI/PMIx rank ``rank`` came from Slurm's MPI plugin, else None.

    Slurm's plugins number tasks as Slurm does (the rank is ``SLURM_PROCID``) and, unlike
    Hydra, set no ``MPI_LOCALRANKID``. Hydra's ranks under an allocation inherit their proxy's
    ``SLURM_PROCID`` (the node's index), which matches their rank only by coincidence, and
    Hydra always sets ``MPI_LOCALRANKID``."""
    if name not in ("mpich", "pmix") or "MPI_LOCALRANKID" in env or "SLURM_STEP_ID" not in env:
        return None
    if _int(env, "SLURM_PROCID") != rank:
        return None
    plugin = env.get("SLURM_MPI_TYPE", "").strip()
    if not plugin or plugin == "none" or not plugin.replace("_", "").isalnum():
        plugin = "pmi2" if name == "mpich" else "pmix"
    return f"srun+{plugin}"


def _from_torch() -> tuple[int, int] | None:
    dist = sys.modules.get("torch.distributed")
    if dist is None:
        return None
    try:
        if dist.is_available() and dist.is_initialized():
            return int(dist.get_rank()), int(dist.get_world_size())
    except Exception:  # a broken process group must not stop the run
        return None
    return None


def _from_mpi4py() -> tuple[int, int] | None:
    mpi: Any = sys.modules.get("mpi4py.MPI")
    if mpi is None:
        return None
    try:
        # a world of one says nothing (Lightning, for one, initialises MPI just by importing it)
        if mpi.Is_initialized() and not mpi.Is_finalized() and mpi.COMM_WORLD.Get_size() > 1:
            return int(mpi.COMM_WORLD.Get_rank()), int(mpi.COMM_WORLD.Get_size())
    except Exception:
        return None
    return None


def in_slurm_step(env: Mapping[str, str] | None = None) -> bool:
    """Launched by srun (a job step's task): Slurm's SLURM_JOB_ID and SLURM_STEP_ID are numbers
    (ASCII digits only: the variables are untrusted)."""
    env = os.environ if env is None else env
    values = (env.get("SLURM_JOB_ID", ""), env.get("SLURM_STEP_ID", ""))
    return all(v.isascii() and v.isdigit() and len(v) <= 20 for v in values)


def node_name(env: Mapping[str, str] | None = None) -> str:
    """The node's name: Slurm's name for it when under Slurm, else the host name."""
    env = os.environ if env is None else env
    return env.get("SLURMD_NODENAME") or socket.gethostname().split(".")[0] or "localhost"


def local_world_size(env: Mapping[str, str], world_size: int) -> int | None:
    """How many ranks run on this node, from the launcher (None: unknown)."""
    for name in ("LOCAL_WORLD_SIZE", "OMPI_COMM_WORLD_LOCAL_SIZE", "MPI_LOCALNRANKS"):
        value = _int(env, name)
        if value is not None:
            return value
    tasks, node_id = env.get("SLURM_TASKS_PER_NODE"), _int(env, "SLURM_NODEID")
    if tasks and node_id is not None:  # e.g. "3,1" or "2(x4)"
        counts: list[int] = []
        for part in tasks.split(","):
            n, _, times = part.partition("(x")
            counts += [int(n)] * (int(times.rstrip(")")) if times else 1)
        if node_id < len(counts):
            return counts[node_id]
    return None


def discover(
    rank: int | None = None,
    world_size: int | None = None,
    local_rank: int | None = None,
    env: Mapping[str, str] | None = None,
) -> Placement:
    """Find rank, local rank, world size, node and launcher for this process."""
    env = os.environ if env is None else env
    launcher = "none"
    found_rank: int | None = None
    found_local: int | None = None
    found_world: int | None = None
    used: list[tuple[str, str]] = []

    torch_place = _from_torch()
    if torch_place is not None:
        found_rank, found_world = torch_place
        launcher = "torch.distributed"
        found_local = _int(env, "LOCAL_RANK")
    else:
        for name, rank_var, local_var, world_var in _ENV_LAUNCHERS:
            r = _int(env, rank_var)
            w = _int(env, world_var)
            if r is None:
                continue
            # a Slurm batch shell has SLURM_PROCID=0 too; srun tasks and mpiexec ranks are
            # told apart by the launcher variables checked before Slurm's.
            found_rank, found_world, found_local = r, w, _int(env, local_var)
            launcher = name
            used = [(v, env[v]) for v in (rank_var, local_var, world_var) if v in env]
            via_srun = _slurm_mpi_launcher(env, name, r)
            if via_srun is not None:
                launcher = via_srun
                if found_local is None:
                    found_local = _int(env, "SLURM_LOCALID")
                slurm_vars = ("SLURM_PROCID", "SLURM_LOCALID", "SLURM_MPI_TYPE")
                used.extend((v, env[v]) for v in slurm_vars if v in env)
            break
        else:
            mpi_place = _from_mpi4py()
            if mpi_place is not None:
                found_rank, found_world = mpi_place
                launcher = "mpi4py"

    if rank is not None:
        found_rank = rank
        launcher = "explicit" if launcher == "none" else launcher
    if world_size is not None:
        found_world = world_size
    if local_rank is not None:
        found_local = local_rank

    final_rank = found_rank if found_rank is not None else 0
    final_world = found_world if found_world is not None else max(final_rank + 1, 1)
    final_local = found_local if found_local is not None else final_rank
    if "SLURM_JOB_ID" in env:
        used.extend((v, env[v]) for v in ("SLURM_JOB_ID", "SLURM_STEP_ID", "SLURM_NODEID") if v in env)
    return Placement(
        rank=final_rank,
        local_rank=final_local,
        world_size=final_world,
        local_world_size=local_world_size(env, final_world),
        node=node_name(env),
        launcher=launcher,
        variables=tuple(used),
        world_size_known=found_world is not None or found_rank is None,
    )


STORE_TIMEOUT_S = 120.0
_store_runs = 0  # runs this process agreed on through the torch.distributed store


def _agree_through_torch_store(placement: Placement, proposal: str) -> str | None:
    """Rank 0's proposal, shared through the default process group's key-value store.

    A store ``set``/``wait``/``get``, not a collective: it cannot deadlock training, and a
    rank whose rank 0 never starts a run gets None after a timeout. Each run of the process
    group uses its own key, so sequential runs of one job get distinct ids."""
    global _store_runs
    dist = sys.modules.get("torch.distributed")
    if dist is None or _from_torch() is None:
        return None
    try:
        from datetime import timedelta

        store = dist.distributed_c10d._get_default_store()
        key = f"yprov-hpc/run-id/{_store_runs}"
        if placement.rank == 0:
            store.set(key, proposal)
        store.wait([key], timedelta(seconds=STORE_TIMEOUT_S))
        agreed = store.get(key)
    except Exception:  # no store (a custom backend), or rank 0 never published
        return None
    _store_runs += 1
    return agreed.decode() if isinstance(agreed, bytes) else str(agreed)


def shared_run_key(
    placement: Placement, env: Mapping[str, str] | None = None, proposal: str | None = None
) -> str | None:
    """A key every rank of one job computes alike, or None when the run is a lone process.

    Slurm: job id and step id. torchrun: its run id (and restart count). An initialised
    torch.distributed: rank 0's ``proposal`` through the process group's store. Otherwise,
    for several ranks on one machine (mpiexec), the launcher process is the common parent:
    its pid and start time name the job. A lone process gets None and a fresh random run id.
    """
    env = os.environ if env is None else env
    if env.get("SLURM_JOB_ID"):
        step = env.get("SLURM_STEP_ID", "")
        return f"slurm{env['SLURM_JOB_ID']}" + (f".{step}" if step else "")
    elastic = env.get("TORCHELASTIC_RUN_ID", "")
    if elastic and elastic != "none":  # an elastic restart is a new run
        restart = env.get("TORCHELASTIC_RESTART_COUNT", "0")
        return "torchrun-" + hashlib.sha1(f"{elastic}:{restart}".encode()).hexdigest()[:10]
    if placement.world_size <= 1 and placement.world_size_known:
        return None  # a lone process (a rank variable without its world size is not lone)
    if proposal is not None:
        agreed = _agree_through_torch_store(placement, proposal)
        if agreed is not None:
            return agreed
    ppid = os.getppid()
    started = create_time(ppid) or 0.0
    digest = hashlib.sha1(f"{node_name(env)}:{ppid}:{started:.3f}".encode()).hexdigest()[:10]
    return f"job-{digest}"
