"""Rank discovery reads each launcher's variables, with explicit arguments first."""

from __future__ import annotations

import pytest

from yprov_hpc.rank.discovery import Placement, discover, shared_run_key


@pytest.fixture(autouse=True)
def _no_initialised_frameworks(monkeypatch: pytest.MonkeyPatch) -> None:
    """Other tests may have imported (and initialised) torch.distributed or mpi4py in this process."""
    monkeypatch.delitem(__import__("sys").modules, "torch.distributed", raising=False)
    monkeypatch.delitem(__import__("sys").modules, "mpi4py.MPI", raising=False)


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({"RANK": "3", "LOCAL_RANK": "1", "WORLD_SIZE": "8"}, (3, 1, 8, "torchrun")),
        (
            {"OMPI_COMM_WORLD_RANK": "2", "OMPI_COMM_WORLD_LOCAL_RANK": "0", "OMPI_COMM_WORLD_SIZE": "4"},
            (2, 0, 4, "openmpi"),
        ),
        ({"PMI_RANK": "5", "MPI_LOCALRANKID": "1", "PMI_SIZE": "6"}, (5, 1, 6, "mpich")),
        (
            {"SLURM_PROCID": "7", "SLURM_LOCALID": "3", "SLURM_NTASKS": "16", "SLURM_JOB_ID": "42"},
            (7, 3, 16, "slurm"),
        ),
        ({}, (0, 0, 1, "none")),
    ],
)
def test_launcher_variables(env: dict[str, str], expected: tuple[int, int, int, str]) -> None:
    """Each launcher's rank, local rank and world size are read from its own variables."""
    p = discover(env=env)
    assert (p.rank, p.local_rank, p.world_size, p.launcher) == expected


def test_mpiexec_inside_a_slurm_allocation_uses_the_mpi_ranks() -> None:
    """mpiexec inside an allocation: the batch shell's SLURM_PROCID=0 must not win over PMI_RANK."""
    env = {"SLURM_PROCID": "0", "SLURM_NTASKS": "1", "PMI_RANK": "3", "PMI_SIZE": "4", "SLURM_JOB_ID": "9"}
    p = discover(env=env)
    assert (p.rank, p.world_size, p.launcher) == (3, 4, "mpich")


def test_explicit_arguments_win() -> None:
    """start_run(rank=...) overrides the environment."""
    p = discover(rank=5, world_size=6, env={"RANK": "1", "WORLD_SIZE": "2"})
    assert (p.rank, p.world_size) == (5, 6)


def test_node_name_prefers_slurm() -> None:
    """Under Slurm the node is SLURMD_NODENAME (emulated nodes share a host name)."""
    assert discover(env={"SLURMD_NODENAME": "node7"}).node == "node7"


def _placement(world: int) -> Placement:
    return Placement(
        rank=0, local_rank=0, world_size=world, local_world_size=None, node="n", launcher="x", variables=()
    )


def test_shared_run_key() -> None:
    """Ranks of one job agree on a key; a lone process gets none (a fresh id)."""
    assert shared_run_key(_placement(4), {"SLURM_JOB_ID": "12", "SLURM_STEP_ID": "0"}) == "slurm12.0"
    assert shared_run_key(_placement(1), {}) is None
    a = shared_run_key(_placement(4), {})
    assert a is not None and a == shared_run_key(_placement(4), {})
    assert shared_run_key(_placement(2), {"TORCHELASTIC_RUN_ID": "abc"}) != shared_run_key(
        _placement(2), {"TORCHELASTIC_RUN_ID": "abd"}
    )
    restarted = {"TORCHELASTIC_RUN_ID": "abc", "TORCHELASTIC_RESTART_COUNT": "1"}
    assert shared_run_key(_placement(2), restarted) != shared_run_key(
        _placement(2), {"TORCHELASTIC_RUN_ID": "abc"}
    )


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({"LOCAL_WORLD_SIZE": "4"}, 4),
        ({"MPI_LOCALNRANKS": "3"}, 3),
        ({"SLURM_TASKS_PER_NODE": "3,1", "SLURM_NODEID": "1"}, 1),
        ({"SLURM_TASKS_PER_NODE": "2(x3),1", "SLURM_NODEID": "2"}, 2),
        ({"SLURM_TASKS_PER_NODE": "2(x3),1", "SLURM_NODEID": "3"}, 1),
        ({}, None),
    ],
)
def test_local_world_size(env: dict[str, str], expected: int | None) -> None:
    """Ranks per node, so that a node's sidecar knows when its last rank has ended."""
    from yprov_hpc.rank.discovery import local_world_size

    assert local_world_size(env, 8) == expected
