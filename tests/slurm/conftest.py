"""A real local Slurm cluster (2 emulated nodes), brought up by the project's own script."""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import PYTHON, ROOT

SLURM_DIR = Path(os.environ.get("YPROV_SLURM_DIR", "/tmp/yprov-slurm"))


@pytest.fixture(scope="session")
def slurm_conf() -> Iterator[str]:
    """Start the cluster once for the session (scripts/slurm/cluster-up.sh), stop it at the end."""
    out = subprocess.run(
        ["bash", str(ROOT / "scripts" / "slurm" / "cluster-up.sh"), "2"],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert out.returncode == 0, f"the local Slurm cluster did not start:\n{out.stdout}\n{out.stderr}"
    conf = out.stdout.strip().splitlines()[-1]
    yield conf
    subprocess.run(["bash", str(ROOT / "scripts" / "slurm" / "cluster-down.sh")], timeout=60)


def slurm_env(conf: str, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("YPROV_", "SLURM_"))}
    env.update(
        SLURM_CONF=conf,
        PYTHONPATH=str(ROOT),
        PYTHONUNBUFFERED="1",
        PATH=str(Path(PYTHON).parent) + os.pathsep + env.get("PATH", ""),
        **extra,
    )
    return env


def sbatch(conf: str, cwd: Path, args: list[str], env: dict[str, str] | None = None) -> int:
    """Submit scripts/slurm/yprov-job.sbatch with ``args`` as the training command; the job id."""
    out = subprocess.run(
        [
            "sbatch",
            "--parsable",
            "--nodes=2",
            "--ntasks-per-node=2",
            "-o",
            str(cwd / "job.out"),
            str(ROOT / "scripts" / "slurm" / "yprov-job.sbatch"),
            *args,
        ],
        cwd=cwd,
        env=env or slurm_env(conf),
        capture_output=True,
        text=True,
        check=True,
    )
    return int(out.stdout.strip().split(";")[0])


def wait_gone(conf: str, job: int, timeout_s: float = 180) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        out = subprocess.run(
            ["squeue", "-h", "-j", str(job)], env=slurm_env(conf), capture_output=True, text=True
        )
        if not out.stdout.strip():
            return
        time.sleep(0.3)
    raise AssertionError(f"job {job} still queued or running after {timeout_s} s")
