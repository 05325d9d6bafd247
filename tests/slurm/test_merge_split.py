"""The merge split across the nodes of a job: one part per node as one step, then the join; on
4 emulated nodes x 2 ranks, the output equals a merge in one process."""

from __future__ import annotations

import re
import shutil
import time
from pathlib import Path

import pytest

from tests.conftest import PYTHON
from tests.integration.test_merge_parts import merge_outputs
from tests.slurm.conftest import EndedJob, alarming_lines, run_dir_of, sbatch, wait_gone
from yprov_hpc.merge import merge_run

POINTS = 20_000
TRAIN = f"""
import yprov_hpc as prov4ml
prov4ml.start_run("www.example.org", "split")
for i in range({POINTS}):
    prov4ml.log_metric("loss", 1.0 / (i + 1), prov4ml.Context.TRAINING, i)
prov4ml.end_run()
"""


@pytest.fixture(scope="module")
def four_node_job(slurm_conf: str, tmp_path_factory: pytest.TempPathFactory) -> EndedJob:
    """One 4-node, 8-rank job that ends normally, shared by the tests below."""
    cwd = tmp_path_factory.mktemp("split")
    (cwd / "train.py").write_text(TRAIN)
    job = sbatch(
        slurm_conf, cwd, [PYTHON, str(cwd / "train.py")], sbatch_args=("-N", "4", "--ntasks-per-node=2")
    )
    wait_gone(slurm_conf, job, timeout_s=400)
    return EndedJob(job, cwd, (cwd / "job.out").read_text(), run_dir_of(cwd))


def test_each_node_folds_its_own_ranks(four_node_job: EndedJob) -> None:
    """The parts step has one task per node, each folding that node's two ranks."""
    parts = re.findall(r"^part (node\d): folded (\d+) rank\(s\)", four_node_job.log, re.M)
    assert sorted(parts) == [(f"node{i}", "2") for i in range(1, 5)], four_node_job.log[-3000:]


def test_the_join_takes_every_rank_from_the_parts(four_node_job: EndedJob) -> None:
    """The join folds nothing itself: all 8 ranks come from the nodes' part files; one merge line."""
    log = four_node_job.log
    assert "joined: 8 rank(s) from the nodes' parts" in log, log[-3000:]
    merged = [line for line in log.splitlines() if line.startswith("merged ")]
    assert len(merged) == 1 and merged[0].startswith("merged 8 rank(s)"), merged


def test_split_merge_log_is_clean(four_node_job: EndedJob) -> None:
    """A successful 4-node job with a split merge has no alarming lines."""
    assert alarming_lines(four_node_job.log) == []


def test_split_merge_output_equals_one_merge(four_node_job: EndedJob, tmp_path: Path) -> None:
    """A one-process merge of a copy of the journals writes the same files as parts + join did;
    both times are printed (parts + join from the batch script's log)."""
    copy = tmp_path / four_node_job.run_dir.name
    shutil.copytree(four_node_job.run_dir, copy, ignore=shutil.ignore_patterns("*.sock"))
    shutil.rmtree(copy / "metrics")
    for path in [*copy.glob("prov_*.json"), *copy.glob("environment/*.json"), copy / "merge_report.json"]:
        path.unlink()  # what the merge wrote (the ranks' own files stay)
    began = time.monotonic()
    merge_run(copy, workers=2)
    one_s = time.monotonic() - began
    split = re.search(r"yprov-job: merge took .*", four_node_job.log)
    print(f"\none merge (2 workers): {one_s * 1000:.0f} ms; split: {split.group(0) if split else '?'}")
    assert merge_outputs(copy) == merge_outputs(four_node_job.run_dir)
