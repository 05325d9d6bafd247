"""end_run never merges in the training process: the last rank waits for a merge elsewhere."""

from __future__ import annotations

import os
import subprocess
import threading
import time
from pathlib import Path

import psutil
import pytest

import yprov_hpc as prov4ml
from tests.conftest import PYTHON, entity, load, run_example, start
from yprov_hpc.core.layout import RunLayout
from yprov_hpc.core.merge_state import read_merge_state, wait_for_merge
from yprov_hpc.rank.ending import conclude
from yprov_hpc.rank.sidecar_client import SidecarInfo

_SCRIPT = """
import sys, yprov_hpc as prov4ml
prov4ml.start_run("www.example.org", "apart", sys.argv[1])
for i in range(1000):
    prov4ml.log_metric("loss", float(i), step=i)
report = prov4ml.end_run()
heavy = sorted(m for m in ("yprov_hpc.merge", "yprov_hpc.finalize", "pyarrow", "prov") if m in sys.modules)
print(report.merged, report.collection is not None and report.collection.exists(), heavy)
"""


def test_the_merge_runs_outside_the_training_process(tmp_path: Path) -> None:
    """A lone rank's end_run returns with the run merged, yet the merge, pyarrow and prov were
    never imported into the training process."""
    script = tmp_path / "apart.py"
    script.write_text(_SCRIPT)
    out = run_example(tmp_path, PYTHON, str(script), str(tmp_path / "prov"), timeout_s=120)
    assert out.stdout.split("\n")[0] == "True True []"
    # the embedded sidecar merges after the last bye, in its own process
    assert "merging 1 rank(s) (by the sidecar)" in out.stderr and "merged 1 rank(s) in" in out.stderr


def test_only_the_last_rank_waits_for_the_merge(save_dir: Path) -> None:
    """Rank 0 of two returns at once without a merge; rank 1, ending last, gets both documents."""
    start(save_dir, "two", rank=0, world_size=2, run_id="r2")
    prov4ml.log_metric("loss", 1.0, step=0)
    first = prov4ml.end_run()
    assert not first.merged and first.merge == "the last rank to end merges the run"
    assert read_merge_state(RunLayout.open(first.run_dir)) is None
    start(save_dir, "two", rank=1, world_size=2, run_id="r2")
    prov4ml.log_metric("loss", 2.0, step=0)
    last = prov4ml.end_run()
    assert last.merged and last.collection is not None
    assert [p.name for p in last.documents] == ["prov_two_rank0.json", "prov_two_rank1.json"]
    assert len(load(last.collection)["hadMember"]) == 2


def test_job_mode_leaves_the_merge_to_the_batch_script(
    save_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With YPROV_MERGE=job nobody merges or waits, and the report says the batch script merges."""
    monkeypatch.setenv("YPROV_MERGE", "job")
    start(save_dir, "job")
    prov4ml.log_metric("loss", 1.0)
    report = prov4ml.end_run()
    assert not report.merged and "batch script" in report.merge
    log = next(report.run_dir.glob("journal/sidecar-*.log"))
    deadline = time.monotonic() + 20
    while "stopped:" not in log.read_text() and time.monotonic() < deadline:
        time.sleep(0.05)  # the embedded sidecar has stopped: it would have merged by now
    assert "not merging: the ranks' merge mode is 'job'" in log.read_text()
    assert read_merge_state(RunLayout.open(report.run_dir)) is None
    assert not list(report.run_dir.glob("prov_*.json"))


def test_auto_merge_false_means_merge_off(save_dir: Path) -> None:
    """auto_merge=False turns the merge off; the report says how to merge by hand."""
    start(save_dir, "off", auto_merge=False)
    prov4ml.log_metric("loss", 1.0)
    report = prov4ml.end_run()
    assert not report.merged and report.merge == f"merge off: run yprov merge {report.run_dir}"
    assert not (report.run_dir / "journal" / "merge.log").exists()


def test_a_lost_rank_is_named_by_the_rank_that_waits(
    save_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A rank marked lost completes the world: the last live rank merges and names it on stderr."""
    run = start(save_dir, "lost", rank=0, world_size=3, run_id="l3")
    prov4ml.log_metric("loss", 1.0)
    for rank in (1, 2):
        RunLayout.open(run.run_dir).lost_marker(rank).write_text("{}")
    report = prov4ml.end_run()
    assert report.merged
    assert "rank(s) 1, 2 died without end_run (marked lost)" in capsys.readouterr().err


def test_a_merge_that_takes_too_long_says_where_the_output_will_appear(
    save_dir: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """With no time to wait, end_run returns unmerged and says where the output will be and how
    to make it now; the output still appears."""
    monkeypatch.setenv("YPROV_MERGE_WAIT_S", "0")
    start(save_dir, "slow", merge="auto")
    prov4ml.log_metric("loss", 1.0)
    report = prov4ml.end_run()
    err = capsys.readouterr().err
    assert not report.merged and any("did not finish within 0 s" in p for p in report.problems)
    assert f"the output will appear in {report.run_dir}" in err and f"`yprov merge {report.run_dir}`" in err
    state = wait_for_merge(RunLayout.open(report.run_dir), 0, 120)
    # the sidecar (after the bye) or a merge process the rank started writes it, whoever is first
    assert state is not None and state.ok and (state.by == "rank 0" or state.by.startswith("sidecar "))


def test_a_sidecar_that_dies_before_merging_is_replaced_by_a_merge_process(
    save_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The last rank waits for a sidecar that said it merges; when that process dies without
    merging, the rank starts a merge process and still reports the merged run."""
    start(save_dir, "sc", merge="job")
    prov4ml.log_metric("loss", 3.0)
    report = prov4ml.end_run()
    stand_in = subprocess.Popen(["sleep", "60"])
    try:
        info = SidecarInfo("ipc:///nowhere", stand_in.pid, psutil.Process(stand_in.pid).create_time(), True)
        threading.Timer(1.0, stand_in.kill).start()
        began = time.monotonic()
        conclude(report, RunLayout.open(report.run_dir), 1, "auto", 60.0, info)
    finally:
        stand_in.kill()
        stand_in.wait()
    err = capsys.readouterr().err
    assert "merging 1 rank(s) (by the sidecar)" in err and "the sidecar stopped before merging" in err
    assert report.merged and time.monotonic() - began >= 1.0
    assert entity(load(report.documents[0]), "run:rank0.metric.loss.run")["yprov:count"] == 1
    assert os.path.exists(report.run_dir / "journal" / "merge.log")
