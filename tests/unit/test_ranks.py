"""Rank discovery reads each launcher's variables, with explicit arguments first."""

from __future__ import annotations

import pytest

from yprov_hpc.rank.discovery import Placement, discover, in_slurm_step, shared_run_key


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


def _srun_task(plugin_rank: str, rank: int, local: int, **extra: str) -> dict[str, str]:
    """A task's variables under ``srun --mpi=...``: Slurm's and its MPI plugin's."""
    return {
        "SLURM_JOB_ID": "42",
        "SLURM_STEP_ID": "1",
        "SLURM_PROCID": str(rank),
        "SLURM_LOCALID": str(local),
        "SLURM_NTASKS": "4",
        plugin_rank: str(rank),
        plugin_rank.replace("RANK", "SIZE"): "4",
        **extra,
    }


def test_srun_pmi2_takes_the_local_rank_from_slurm() -> None:
    """srun --mpi=pmi2: the second node's ranks 2 and 3 are its local ranks 0 and 1."""
    places = [discover(env=_srun_task("PMI_RANK", r, r % 2, SLURM_MPI_TYPE="pmi2")) for r in (2, 3)]
    assert [(p.rank, p.local_rank, p.world_size) for p in places] == [(2, 0, 4), (3, 1, 4)]


def test_srun_pmi2_is_recorded_as_srun_with_its_plugin() -> None:
    """The launcher of an srun --mpi=pmi2 task is srun+pmi2, not mpich."""
    assert discover(env=_srun_task("PMI_RANK", 3, 1, SLURM_MPI_TYPE="pmi2")).launcher == "srun+pmi2"


def test_srun_pmix_takes_the_local_rank_and_plugin_from_slurm() -> None:
    """srun --mpi=pmix_v4: local rank from SLURM_LOCALID, launcher named after SLURM_MPI_TYPE."""
    p = discover(env=_srun_task("PMIX_RANK", 3, 1, SLURM_MPI_TYPE="pmix_v4"))
    assert (p.rank, p.local_rank, p.launcher) == (3, 1, "srun+pmix_v4")


def test_srun_pmi_without_slurm_mpi_type_names_the_plugin_by_its_variables() -> None:
    """Without SLURM_MPI_TYPE, PMI_RANK means srun+pmi2 and PMIX_RANK srun+pmix."""
    assert discover(env=_srun_task("PMI_RANK", 1, 1)).launcher == "srun+pmi2"
    assert discover(env=_srun_task("PMIX_RANK", 1, 1)).launcher == "srun+pmix"


def test_srun_pmi_records_the_slurm_variables_it_read() -> None:
    """The launcher variables of an srun+pmi2 rank include SLURM_LOCALID and SLURM_MPI_TYPE."""
    used = dict(discover(env=_srun_task("PMI_RANK", 3, 1, SLURM_MPI_TYPE="pmi2")).variables)
    assert (used["SLURM_LOCALID"], used["SLURM_MPI_TYPE"]) == ("1", "pmi2")


def test_hydra_rank_matching_its_proxys_slurm_procid_stays_mpich() -> None:
    """mpiexec (Hydra) under an allocation: a rank equal to its proxy's SLURM_PROCID is still mpich."""
    env = _srun_task("PMI_RANK", 1, 0, MPI_LOCALRANKID="1")
    p = discover(env=env)
    assert (p.rank, p.local_rank, p.launcher) == (1, 1, "mpich")


def test_pmi_rank_outside_a_step_is_not_srun() -> None:
    """PMI variables with a batch shell's SLURM_PROCID but no step id are not Slurm's plugin."""
    env = {"SLURM_JOB_ID": "9", "SLURM_PROCID": "0", "SLURM_LOCALID": "0", "PMI_RANK": "0", "PMI_SIZE": "2"}
    assert discover(env=env).launcher == "mpich"


def test_a_rank_without_its_world_size_is_not_a_lone_process() -> None:
    """SLURM_PROCID without SLURM_NTASKS: the world size is marked unknown, and every rank, rank
    0 included, gets the key of their common parent, so they share one run."""
    from yprov_hpc.rank.discovery import discover, shared_run_key

    places = [discover(env={"SLURM_PROCID": str(r)}) for r in range(4)]
    assert [p.world_size_known for p in places] == [False] * 4
    keys = {shared_run_key(p, env={"SLURM_PROCID": str(p.rank)}) for p in places}
    assert len(keys) == 1 and next(iter(keys)).startswith("job-")
    lone = discover(env={})
    assert lone.world_size_known and shared_run_key(lone, env={}) is None


@pytest.mark.parametrize(
    ("job", "step", "inside"),
    [
        ("4242", "1", True),
        ("4242", "4294967294", True),  # the batch or extern step's id on some versions
        ("4242", "", False),  # the batch shell (no step id on 22.05)
        ("", "1", False),
        ("４２", "1", False),  # full-width digits: not Slurm's
        ("4242", "1\n", False),
        (" 4242", "1", False),
        ("9" * 21, "1", False),
        ("-1", "1", False),
    ],
)
def test_in_slurm_step_reads_only_plain_numbers(job: str, step: str, inside: bool) -> None:
    """The sidecar's 'inside a Slurm step' (its SIGTERM waits for the ranks there) trusts the
    variables only as ASCII numbers of at most 20 digits."""
    assert in_slurm_step({"SLURM_JOB_ID": job, "SLURM_STEP_ID": step}) is inside
