"""Real runs for the read tests: ranks as subprocesses sharing one embedded sidecar."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from tests.conftest import PYTHON, python_env

HERE = Path(__file__).resolve().parent


def make_run(
    save_dir: Path,
    experiment: str,
    run_id: str,
    *,
    ranks: int = 2,
    lr: float = 0.1,
    fail_rank: int | None = None,
) -> Path:
    """Run ``ranks`` ranks of train_rank.py at once (one embedded sidecar samples the node every
    0.1 s) and return the merged run directory."""
    env = python_env()
    env["YPROV_SAMPLE_INTERVAL_S"] = "0.1"
    procs = []
    for rank in range(ranks):
        cmd = [
            PYTHON,
            str(HERE / "train_rank.py"),
            str(save_dir),
            experiment,
            run_id,
            str(rank),
            str(ranks),
            str(lr),
        ]
        if rank == fail_rank:
            cmd.append("--fail")
        procs.append(
            subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        )
    for proc in procs:
        _, err = proc.communicate(timeout=120)
        assert proc.returncode == 0 or fail_rank is not None, err[-3000:]
    run_dir = Path(save_dir) / f"{experiment}_{run_id}"
    assert (run_dir / f"prov_{experiment}_collection.json").exists(), os.listdir(run_dir)
    return run_dir
