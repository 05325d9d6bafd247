"""The loss of a node other than the first, on a real local Slurm: node2's slurmd, step daemons
and tasks die by kill -9 and the node is marked down. The job ends NODE_FAIL, the survivors keep
everything they logged, the lost node's ranks keep what their sidecar had journaled, and the
dependent merge job writes every rank's document."""

from __future__ import annotations

import time

import pytest

from tests.conftest import PYTHON, entity, load
from tests.slurm.conftest import (
    UNTIL_CANCELLED,
    EndedJob,
    job_end,
    job_info,
    lose_node,
    merge_job_of,
    progress,
    restore_node,
    run_dir_of,
    sbatch,
    wait_for,
    wait_gone,
)

_SETTLE_S = 2.0  # points logged this long before the loss have surely been journaled


@pytest.fixture(scope="module")
def node_lost_job(slurm_conf: str, tmp_path_factory: pytest.TempPathFactory) -> EndedJob:
    """A 4-rank job (not requeued) that loses node2 once every rank logged 200 points."""
    cwd = tmp_path_factory.mktemp("node_lost")
    (cwd / "forever.py").write_text(UNTIL_CANCELLED)
    args = ("--nodes=2", "--ntasks-per-node=2", "--no-requeue")
    job = sbatch(slurm_conf, cwd, [PYTHON, str(cwd / "forever.py"), str(cwd)], sbatch_args=args)
    try:
        wait_for("200 points on every rank", lambda: all(progress(cwd, r) >= 200 for r in range(4)), 120)
        (cwd / "before_loss.txt").write_text(" ".join(str(progress(cwd, r)) for r in (2, 3)))
        time.sleep(_SETTLE_S)
        lose_node(slurm_conf, job, "node2")
        wait_gone(slurm_conf, job)
        log = (cwd / "job.out").read_text()
        wait_gone(slurm_conf, merge_job_of(log))
    finally:  # the node comes back for the tests that follow
        restore_node(slurm_conf, "node2")
    return EndedJob(job, cwd, log, run_dir_of(cwd))


def test_node_loss_is_recorded_as_node_fail(slurm_conf: str, node_lost_job: EndedJob) -> None:
    """journal/job.end says node_fail, and Slurm ended the job NODE_FAIL."""
    assert job_end(node_lost_job.run_dir)["cause"] == "node_fail", node_lost_job.log[-2000:]
    assert job_info(slurm_conf, node_lost_job.job)["JobState"] == "NODE_FAIL"


def test_node_loss_keeps_everything_the_surviving_ranks_logged(node_lost_job: EndedJob) -> None:
    """node1's ranks got SIGTERM: their documents hold every point logged before it, gapless."""
    for rank in (0, 1):
        logged = int((node_lost_job.cwd / f"logged{rank}.txt").read_text())
        loss = entity(
            load(node_lost_job.run_dir / f"prov_forever_rank{rank}.json"),
            f"run:rank{rank}.metric.loss.training",
        )
        assert loss["yprov:count"] >= logged and loss["yprov:count"] == loss["yprov:last_step"] + 1


def test_node_loss_keeps_what_the_lost_ranks_had_delivered(node_lost_job: EndedJob) -> None:
    """node2's ranks died with their node: their documents hold at least what they had logged
    a while before the loss, without gaps."""
    before = [int(n) for n in (node_lost_job.cwd / "before_loss.txt").read_text().split()]
    for rank, logged in zip((2, 3), before, strict=True):
        loss = entity(
            load(node_lost_job.run_dir / f"prov_forever_rank{rank}.json"),
            f"run:rank{rank}.metric.loss.training",
        )
        assert loss["yprov:count"] >= logged and loss["yprov:count"] == loss["yprov:last_step"] + 1
        assert not (node_lost_job.cwd / f"logged{rank}.txt").exists(), "a lost rank gets no SIGTERM"


def test_node_loss_documents_come_from_the_merge_job(node_lost_job: EndedJob) -> None:
    """The merge job wrote the documents of all four ranks after the job."""
    merge_log = (node_lost_job.cwd / f"yprov-merge-{node_lost_job.job}.out").read_text()
    assert "merged 4 rank(s)" in merge_log, merge_log
    assert sorted(p.name for p in node_lost_job.run_dir.glob("prov_forever_rank*.json")) == [
        f"prov_forever_rank{r}.json" for r in range(4)
    ]
