"""Disk trouble never raises into training: end_run returns a report that says what happened."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import yprov_hpc as prov4ml
from tests.conftest import PYTHON, run_example, start


def test_a_run_directory_deleted_mid_run_is_reported_not_raised(save_dir: Path) -> None:
    """Deleting the run directory mid-run: end_run returns, and its report says loudly that
    acknowledged events went to a journal that no longer exists."""
    run = start(save_dir, "gone")
    for i in range(500):
        prov4ml.log_metric("loss", float(i), step=i)
    deadline = time.monotonic() + 15
    while run._sender.stats.batches_acked == 0:
        assert time.monotonic() < deadline
        time.sleep(0.01)
    shutil.rmtree(run.run_dir)
    prov4ml.log_metric("loss", 0.0, step=500)
    report = prov4ml.end_run()
    assert not report.merged and report.merge == "not merged: the run directory is gone"
    (problem,) = [p for p in report.problems if "deleted or replaced" in p]
    assert "acknowledged by the sidecar went to a journal that no longer exists" in problem


_FULL = """
import resource, signal, sys, yprov_hpc as prov4ml
run = prov4ml.start_run("www.example.org", "full", sys.argv[1], sidecar="off", handle_sigterm=False)
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # writes past the limit fail with EFBIG instead
resource.setrlimit(resource.RLIMIT_FSIZE, (0, resource.RLIM_INFINITY))  # no file may grow: a full disk
for i in range(1000):
    prov4ml.log_metric("loss", float(i), step=i)
report = prov4ml.end_run()
print("returned", report.status, report.merged)
for problem in report.problems:
    print("problem:", problem)
"""


def test_a_disk_that_takes_no_bytes_gives_a_report_not_an_exception(tmp_path: Path) -> None:
    """When neither the spool nor the done marker can be written, end_run still returns, and
    the report names the done marker it could not write and how to merge later."""
    script = tmp_path / "full.py"
    script.write_text(_FULL)
    out = run_example(tmp_path, PYTHON, str(script), str(tmp_path / "prov"), timeout_s=120)
    lines = out.stdout.splitlines()
    assert lines[0] == "returned finished False"
    assert any("could not write the done marker" in line and "yprov merge" in line for line in lines)
