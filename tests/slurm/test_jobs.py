"""Multi-node jobs that end normally, on a real local Slurm: a sidecar per node from the batch
script, every rank's document, the collection, one merge, a clean log; mpi4py and torchrun."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import PYTHON, ROOT, entity, literal, load
from tests.slurm.conftest import (
    EndedJob,
    alarming_lines,
    job_end,
    job_info,
    merge_job_of,
    run_dir_of,
    sbatch,
    slurm_env,
    wait_gone,
)


@pytest.fixture(scope="module")
def quickstart_job(slurm_conf: str, tmp_path_factory: pytest.TempPathFactory) -> EndedJob:
    """One 2-node, 4-rank quickstart job that ends normally, shared by the tests below."""
    cwd = tmp_path_factory.mktemp("quickstart")
    job = sbatch(slurm_conf, cwd, [PYTHON, str(ROOT / "examples" / "quickstart.py"), "--epochs", "2"])
    wait_gone(slurm_conf, job)
    return EndedJob(job, cwd, (cwd / "job.out").read_text(), run_dir_of(cwd))


def test_two_node_four_rank_job(quickstart_job: EndedJob) -> None:
    """sbatch -N2 -n4: four rank documents from two nodes' sidecars, linked by one collection."""
    job, run_dir = quickstart_job.job, quickstart_job.run_dir
    assert run_dir.name == f"job_slurm{job}"
    nodes = {}
    for rank in range(4):
        doc = load(run_dir / f"prov_quickstart_rank{rank}.json")
        act = {k: literal(v) for k, v in doc["activity"][f"run:rank{rank}"].items()}
        assert (act["yprov:rank"], act["yprov:world_size"], act["yprov:launcher"]) == (rank, 4, "slurm")
        assert act["yprov:events_spilled"] == 0 and act["yprov:events_missing"] == 0
        nodes[rank] = act["yprov:node"]
        assert entity(doc, f"run:rank{rank}.metric.MSE_train.training")["yprov:count"] == 2
    assert nodes == {0: "node1", 1: "node1", 2: "node2", 3: "node2"}
    coll = load(run_dir / "prov_quickstart_collection.json")
    job_act = {k: literal(v) for k, v in coll["activity"]["run:job"].items()}
    assert json.loads(job_act["yprov:nodes"]) == ["node1", "node2"]
    assert job_act["yprov:slurm_job_id"] == str(job)
    assert json.loads(job_act["yprov:slurm_step_ids"]) == ["2"]  # 0: the check, 1: the sidecars
    assert len(coll["hadMember"]) == 4 and {"run:node.node1", "run:node.node2"} <= set(coll["entity"])


def test_second_nodes_sidecar_forwards_to_the_aggregator(quickstart_job: EndedJob) -> None:
    """node2's sidecar forwards everything to the aggregator in node1's sidecar (CURVE over tcp)."""
    log, journal = quickstart_job.log, quickstart_job.run_dir / "journal"
    assert sorted(p.name for p in journal.glob("node-*.journal")) == [
        "node-node1.journal",
        "node-node2.journal",
    ]
    assert "aggregating node streams" in log and "0 unacked at stop" in log, log[-3000:]
    copy = journal / "agg-node2.journal"
    assert copy.exists() and copy.stat().st_size > 0


def test_sidecars_stop_cleanly_after_the_training(quickstart_job: EndedJob) -> None:
    """Both sidecars drain and stop on the script's signal once the training step has ended."""
    assert quickstart_job.log.count("yprov-sidecar INFO stopped:") == 2, quickstart_job.log[-3000:]


def test_normal_end_log_has_no_alarming_lines(quickstart_job: EndedJob) -> None:
    """A successful job's log has no STEP ... CANCELLED, scancel or srun error lines."""
    assert alarming_lines(quickstart_job.log) == []


def test_normal_end_merges_once_in_the_batch_script(quickstart_job: EndedJob) -> None:
    """The batch script's merge is the one merge line of the log."""
    merged = [line for line in quickstart_job.log.splitlines() if line.startswith("merged ")]
    assert len(merged) == 1 and "merged 4 rank(s)" in merged[0], quickstart_job.log[-2000:]


def test_normal_end_writes_the_documents_exactly_once(quickstart_job: EndedJob) -> None:
    """With YPROV_MERGE=job no rank merges: the merge state records one generation."""
    state = json.loads((quickstart_job.run_dir / "journal" / "merge.state.json").read_text())
    assert state["generation"] == 1


def test_normal_end_cancels_the_dependent_merge_job(slurm_conf: str, quickstart_job: EndedJob) -> None:
    """The merge job submitted at the start is cancelled before it ran: it has no log."""
    merge_job = merge_job_of(quickstart_job.log)
    assert job_info(slurm_conf, merge_job).get("JobState") in (None, "CANCELLED")
    assert not (quickstart_job.cwd / f"yprov-merge-{quickstart_job.job}.out").exists()


def test_normal_end_records_completed(slurm_conf: str, quickstart_job: EndedJob) -> None:
    """journal/job.end says completed with the training step's exit code, and Slurm agrees."""
    end = job_end(quickstart_job.run_dir)
    assert (end["cause"], end["exit_code"], end["slurm_job_id"]) == ("completed", 0, str(quickstart_job.job))
    assert job_info(slurm_conf, quickstart_job.job)["JobState"] == "COMPLETED"


def test_mpi4py_job_over_pmi2(slurm_conf: str, tmp_path: Path) -> None:
    """srun --mpi=pmi2 (MPICH wheel): allreduce across nodes; local ranks and launcher from Slurm."""
    env = slurm_env(slurm_conf, YPROV_SRUN_ARGS="--mpi=pmi2")
    job = sbatch(
        slurm_conf, tmp_path, [PYTHON, str(ROOT / "examples" / "mpi_train.py"), "--steps", "30"], env
    )
    wait_gone(slurm_conf, job)
    run_dir = run_dir_of(tmp_path)
    docs = [load(run_dir / f"prov_mpi_train_rank{r}.json") for r in range(4)]
    last = [entity(d, f"run:rank{r}.metric.w.training")["yprov:last"] for r, d in enumerate(docs)]
    assert len(set(last)) == 1, (tmp_path / "job.out").read_text()[-2000:]
    acts = [{k: literal(v) for k, v in d["activity"][f"run:rank{r}"].items()} for r, d in enumerate(docs)]
    assert [(a["yprov:node"], a["yprov:local_rank"], a["yprov:launcher"]) for a in acts] == [
        ("node1", 0, "srun+pmi2"),
        ("node1", 1, "srun+pmi2"),
        ("node2", 0, "srun+pmi2"),
        ("node2", 1, "srun+pmi2"),
    ]


def test_torchrun_variant_across_nodes(slurm_conf: str, tmp_path: Path) -> None:
    """One torchrun per node (scripts/slurm/torchrun-step.sh), DDP over gloo: 4 ranks, 2 nodes."""
    env = slurm_env(slurm_conf, YPROV_NPROC_PER_NODE="2")
    step = [str(ROOT / "scripts" / "slurm" / "torchrun-step.sh"), str(ROOT / "examples" / "ddp_train.py")]
    job = sbatch(slurm_conf, tmp_path, [*step, "--epochs", "1"], env, ("--nodes=2", "--ntasks-per-node=1"))
    wait_gone(slurm_conf, job)
    run_dir = run_dir_of(tmp_path)
    for rank in range(4):
        doc = load(run_dir / f"prov_ddp_mnist_rank{rank}.json")
        act = {k: literal(v) for k, v in doc["activity"][f"run:rank{rank}"].items()}
        assert (act["yprov:world_size"], act["yprov:node"]) == (4, "node1" if rank < 2 else "node2")
        # the dataset's id may carry its context (run:rank0.dataset.train_dataset.training)
        (dataset,) = (k for k in doc["entity"] if k.startswith(f"run:rank{rank}.dataset.train_dataset"))
        assert entity(doc, dataset)["yprov:num_replicas"] == 4


def test_fails_fast_when_yprov_cannot_run_on_the_nodes(slurm_conf: str, tmp_path: Path) -> None:
    """A yprov that works in the batch shell but not in the nodes' steps: one line, job FAILED."""
    wrapper = tmp_path / "yprov"
    wrapper.write_text(
        "#!/bin/bash\n"
        f'[ -n "${{SLURM_STEP_ID:-}}" ] && exec {PYTHON} -c "import yprov_not_installed"\n'
        f'exec {Path(PYTHON).parent / "yprov"} "$@"\n'
    )
    wrapper.chmod(0o755)
    job = sbatch(
        slurm_conf, tmp_path, [PYTHON, "-c", "print('trained')"], slurm_env(slurm_conf, YPROV=str(wrapper))
    )
    wait_gone(slurm_conf, job, timeout_s=60)
    log = (tmp_path / "job.out").read_text()
    lines = log.strip().splitlines()
    assert len(lines) == 1 and "cannot run on every node" in lines[0], log
    assert "node1: ModuleNotFoundError" in lines[0] and "node2: ModuleNotFoundError" in lines[0]
    assert job_info(slurm_conf, job)["JobState"] == "FAILED"
    assert not (tmp_path / "prov").exists(), "nothing is started"


def test_fails_fast_without_yprov_in_the_batch_shell(slurm_conf: str, tmp_path: Path) -> None:
    """Without yprov in the batch shell at all, the job fails at once with one line."""
    env = slurm_env(slurm_conf, YPROV=str(tmp_path / "no-such-yprov"))
    job = sbatch(slurm_conf, tmp_path, [PYTHON, "-c", "print('trained')"], env)
    wait_gone(slurm_conf, job, timeout_s=60)
    log = (tmp_path / "job.out").read_text().strip()
    assert log.count("\n") == 0 and "is not on PATH in the batch shell" in log, log
    assert job_info(slurm_conf, job)["JobState"] == "FAILED"


def test_ranks_are_told_the_job_merges(slurm_conf: str, tmp_path: Path) -> None:
    """The steps get YPROV_MERGE=job, YPROV_SIDECAR=auto and the shared run directory."""
    probe = "import os; print('env', *(os.environ[f'YPROV_{v}'] for v in ('MERGE', 'SIDECAR', 'RUN_DIR')))"
    env = slurm_env(slurm_conf, YPROV_MERGE_JOB="0")  # nothing to merge: no rank recorded
    job = sbatch(slurm_conf, tmp_path, [PYTHON, "-c", probe], env, ("--nodes=1", "--ntasks=1"))
    wait_gone(slurm_conf, job)
    lines = [
        line.split() for line in (tmp_path / "job.out").read_text().splitlines() if line.startswith("env ")
    ]
    assert lines == [["env", "job", "auto", str(tmp_path / "prov" / f"job_slurm{job}")]]


def test_fails_when_the_sidecars_do_not_start(slurm_conf: str, tmp_path: Path) -> None:
    """A sidecar step that dies at once fails the job before the training starts, cause failed."""
    wrapper = tmp_path / "yprov"
    wrapper.write_text(
        "#!/bin/bash\n"
        '[ -n "${SLURM_STEP_ID:-}" ] && [ "$2" = --run-dir ] && { echo "no sidecar here" >&2; exit 3; }\n'
        f'exec {Path(PYTHON).parent / "yprov"} "$@"\n'
    )
    wrapper.chmod(0o755)
    env = slurm_env(slurm_conf, YPROV=str(wrapper))
    job = sbatch(slurm_conf, tmp_path, [PYTHON, "-c", "print('trained')"], env)
    wait_gone(slurm_conf, job, timeout_s=60)
    log = (tmp_path / "job.out").read_text()
    assert "the sidecar step ended before every node's sidecar listened" in log and "trained" not in log, log
    assert job_end(run_dir_of(tmp_path))["cause"] == "failed"
    assert job_info(slurm_conf, job)["JobState"] == "FAILED"
