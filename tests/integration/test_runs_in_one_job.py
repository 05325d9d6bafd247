"""Runs in one job: sequential start_runs each get their own run directory and id, agreed by
every rank; a pinned run id of another job is refused."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

import yprov_hpc as prov4ml
from tests.conftest import PYTHON, load, python_env, start

_SWEEP = """
import sys, yprov_hpc as prov4ml
for lr in (0.1, 0.01, 0.001):  # a sweep loop: one run per setting
    run = prov4ml.start_run("www.example.org", "sweep", sys.argv[1], handle_sigterm=False)
    prov4ml.log_param("lr", lr)
    prov4ml.log_metric("loss", lr, step=0)
    print(run.rank, run.run_id, flush=True)
    prov4ml.end_run()
"""


def _launch(tmp_path: Path, env: dict[str, str], ranks: int) -> list[list[str]]:
    script = tmp_path / "sweep.py"
    script.write_text(_SWEEP)
    procs = [
        subprocess.Popen(
            [PYTHON, str(script), str(tmp_path / "prov")],
            env=python_env() | env | {"RANK": str(r), "LOCAL_RANK": str(r), "WORLD_SIZE": str(ranks)},
            stdout=subprocess.PIPE,
            text=True,
        )
        for r in range(ranks)
    ]
    outs = [p.communicate(timeout=120)[0] for p in procs]
    assert [p.returncode for p in procs] == [0] * ranks
    return [line.split() for out in outs for line in out.splitlines()]


def test_a_sweep_in_one_launcher_job_gets_one_run_per_start_run(tmp_path: Path) -> None:
    """Two torchrun-style ranks looping over three settings: three run directories, the first
    with the job's id and the others with -r2 and -r3, each agreed by both ranks and merged."""
    env = {"TORCHELASTIC_RUN_ID": "sweep1", "TORCHELASTIC_RESTART_COUNT": "0", "LOCAL_WORLD_SIZE": "2"}
    lines = _launch(tmp_path, env, 2)
    by_rank = {rank: [rid for r, rid in lines if r == rank] for rank in ("0", "1")}
    assert by_rank["0"] == by_rank["1"] and len(set(by_rank["0"])) == 3
    first = by_rank["0"][0]
    assert by_rank["0"][1:] == [f"{first}-r2", f"{first}-r3"]
    for rid in by_rank["0"]:
        assert len(load(tmp_path / "prov" / f"sweep_{rid}" / "prov_sweep_collection.json")["hadMember"]) == 2


def test_a_later_process_of_the_same_job_gets_the_next_run(tmp_path: Path) -> None:
    """Two processes run one after the other in one Slurm job step: the second passes over the
    first's ended run directory instead of failing."""
    env = {"SLURM_JOB_ID": "4242", "SLURM_STEP_ID": "0", "SLURM_PROCID": "0", "SLURM_NTASKS": "1"}
    first = _launch(tmp_path, env, 1)
    second = _launch(tmp_path, env, 1)
    assert [rid for _, rid in first] == ["slurm4242.0", "slurm4242.0-r2", "slurm4242.0-r3"]
    assert [rid for _, rid in second] == ["slurm4242.0-r4", "slurm4242.0-r5", "slurm4242.0-r6"]


def test_a_pinned_run_id_of_another_job_is_refused(save_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A run id pinned by two jobs: the second job's start_run is refused, naming both jobs,
    instead of mixing its events into the first job's run."""
    monkeypatch.setenv("SLURM_JOB_ID", "1001")
    start(save_dir, "pinned", rank=0, world_size=2, run_id="shared", merge="off")
    prov4ml.end_run()  # rank 1 of job 1001 has not ended: the run is not finished
    monkeypatch.setenv("SLURM_JOB_ID", "1002")
    with pytest.raises(prov4ml.ConfigError, match=r"belongs to another job \(slurm 1001, not slurm 1002\)"):
        start(save_dir, "pinned", rank=1, world_size=2, run_id="shared")
    monkeypatch.setenv("SLURM_JOB_ID", "1001")
    start(save_dir, "pinned", rank=1, world_size=2, run_id="shared", merge="off")  # its own job may


_CRASH = """
import os, sys, yprov_hpc as prov4ml
try:
    prov4ml.start_run("www.example.org", "crash", sys.argv[1], run_id="pinned", sidecar="off")
except prov4ml.ConfigError as exc:
    print("refused:", exc.reason)
    sys.exit(0)
prov4ml.log_metric("loss", 1.0)
os._exit(0)  # dies without end_run: no done marker
"""


def test_a_pinned_run_id_of_an_earlier_process_is_refused(tmp_path: Path) -> None:
    """A lone process that reuses the pinned run id of one that died is refused, not mixed in:
    rank 0 of that run was started by another job."""
    script = tmp_path / "crash.py"
    script.write_text(_CRASH)
    outs = [
        subprocess.run(
            [PYTHON, str(script), str(tmp_path / "prov")],
            env=python_env(),
            capture_output=True,
            text=True,
            timeout=60,
        )
        for _ in range(2)
    ]
    assert [o.returncode for o in outs] == [0, 0], outs[1].stderr
    assert outs[0].stdout == ""
    assert (
        outs[1].stdout.startswith("refused: rank 0 of ")
        and "was already started by another job" in outs[1].stdout
    )
