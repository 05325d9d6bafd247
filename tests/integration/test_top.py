"""yprov top: a running job as its sidecar's status file describes it, read from outside."""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

from tests.conftest import PYTHON, python_env, run_dirs

_RANK = """
import sys, time, yprov_hpc as prov4ml
prov4ml.start_run("www.example.org", "live", sys.argv[1])
step = 0
deadline = time.time() + 60
while time.time() < deadline and not __import__("os").path.exists(sys.argv[2]):
    prov4ml.log_metric("loss", 1.0 / (step + 1), step=step)
    prov4ml.log_metric("acc", step / 1000.0, step=step)
    step += 1
    time.sleep(0.001)
prov4ml.end_run()
"""


def _yprov(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [PYTHON, "-m", "yprov_hpc.cli", *args], env=python_env(), capture_output=True, text=True, timeout=60
    )


def test_top_shows_the_running_rank_its_step_and_metrics(tmp_path: Path) -> None:
    """While a rank logs, `yprov top --json` shows its node's sidecar, events per second, the
    rank alive with a growing step and its latest loss; after the run the status file is gone."""
    script, stop = tmp_path / "rank.py", tmp_path / "stop"
    script.write_text(_RANK)
    env = {**python_env(), "YPROV_SAMPLE_INTERVAL_S": "0.2"}
    rank = subprocess.Popen([PYTHON, str(script), str(tmp_path / "prov"), str(stop)], env=env)
    try:
        deadline, snapshots = time.monotonic() + 60, []
        while time.monotonic() < deadline and len(snapshots) < 2:
            time.sleep(0.5)
            dirs = run_dirs(tmp_path / "prov") if (tmp_path / "prov").exists() else []
            if not dirs:
                continue
            out = _yprov("top", str(dirs[0]), "--json")
            assert out.returncode == 0, out.stderr
            nodes = json.loads(out.stdout)["nodes"]
            if nodes and nodes[0]["ranks"].get("0", {}).get("last_step") is not None:
                snapshots.append(nodes[0])
        assert len(snapshots) == 2, "no live status appeared"
        first, second = snapshots
        me = second["ranks"]["0"]
        assert me["alive"] and me["pid"] == rank.pid and 0 < me["metrics"]["loss"] <= 1.0
        assert second["ranks"]["0"]["last_step"] > first["ranks"]["0"]["last_step"]
        assert second["events"] > 0 and not second["stale"]
        table = _yprov("top", str(dirs[0]), "--once", "-m", "loss")
        assert table.returncode == 0 and "loss" in table.stdout and "yes" in table.stdout
    finally:
        stop.write_text("")
        rank.wait(timeout=120)
    run_dir = run_dirs(tmp_path / "prov")[0]
    deadline = time.monotonic() + 20
    while list(run_dir.glob("journal/status-*.json")) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not list(run_dir.glob("journal/status-*.json"))


def test_top_of_a_directory_that_is_not_a_run_is_one_line(tmp_path: Path) -> None:
    """A wrong path is one line and exit 2."""
    out = _yprov("top", str(tmp_path))
    assert out.returncode == 2 and len(out.stderr.strip().splitlines()) == 1
