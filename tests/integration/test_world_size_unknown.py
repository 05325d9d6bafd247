"""yProvML's HPC pattern: processes that set SLURM_PROCID but not SLURM_NTASKS end up in one run."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

from tests.conftest import PYTHON, python_env, run_dirs

_RANK = """
import sys, yprov_hpc as prov4ml
prov4ml.start_run("www.example.org", "hpc", sys.argv[1])
for i in range(20):
    prov4ml.log_metric("loss", 1.0 / (i + 1), step=i)
prov4ml.end_run()
"""


def test_ranks_that_know_only_their_rank_share_one_run_and_are_warned(tmp_path: Path) -> None:
    """Four processes of one parent, each with SLURM_PROCID and no SLURM_NTASKS: one run
    directory (not two, one never merged), and each says how to give the world size."""
    script = tmp_path / "rank.py"
    script.write_text(_RANK)
    procs = []
    for rank in range(4):
        env = {**python_env(), "SLURM_PROCID": str(rank)}
        procs.append(
            subprocess.Popen(
                [PYTHON, str(script), str(tmp_path / "prov")], env=env, stderr=subprocess.PIPE, text=True
            )
        )
    errs = [p.communicate(timeout=180)[1] for p in procs]
    assert [p.returncode for p in procs] == [0, 0, 0, 0], errs
    (run_dir,) = run_dirs(tmp_path / "prov")
    assert {f"rank{r}.done" for r in range(4)} <= {p.name for p in (run_dir / "journal").iterdir()}
    assert all("no world size" in e and "SLURM_NTASKS" in e for e in errs)
    deadline = time.monotonic() + 60  # the embedded sidecar merges once every rank ended
    while len(list(run_dir.glob("prov_hpc_rank*.json"))) < 4 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert sorted(p.name for p in run_dir.glob("prov_hpc_rank*.json")) == [
        f"prov_hpc_rank{r}.json" for r in range(4)
    ]
