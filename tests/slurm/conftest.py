"""A real local Slurm cluster (4 emulated nodes), brought up by the project's own script.

``YPROV_SLURM_DIR``, ``YPROV_SLURMCTLD_PORT``, ``YPROV_SLURMD_PORT`` and
``YPROV_SLURM_FIRST_JOB_ID`` (see scripts/slurm/cluster-up.sh) let a second cluster run beside
another one on the same machine."""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import PYTHON, ROOT, run_dirs

SLURM_DIR = Path(os.environ.get("YPROV_SLURM_DIR", "/tmp/yprov-slurm"))
BATCH_SCRIPT = ROOT / "scripts" / "slurm" / "yprov-job.sbatch"
TWO_BY_TWO = ("--nodes=2", "--ntasks-per-node=2")
NODES = 4  # most jobs use 2; the split merge is tested on 4


@pytest.fixture(scope="session")
def slurm_conf() -> Iterator[str]:
    """Start the cluster once for the session (scripts/slurm/cluster-up.sh), stop it at the end."""
    out = subprocess.run(
        ["bash", str(ROOT / "scripts" / "slurm" / "cluster-up.sh"), str(NODES)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert out.returncode == 0, f"the local Slurm cluster did not start:\n{out.stdout}\n{out.stderr}"
    conf = out.stdout.strip().splitlines()[-1]
    yield conf
    subprocess.run(["bash", str(ROOT / "scripts" / "slurm" / "cluster-down.sh")], timeout=60)


def slurm_env(conf: str, **extra: str) -> dict[str, str]:
    """The environment of a user who submits to the local cluster with the project's venv."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("YPROV_", "SLURM_"))}
    env.update(
        SLURM_CONF=conf,
        PYTHONPATH=str(ROOT),
        PYTHONUNBUFFERED="1",
        PATH=str(Path(PYTHON).parent) + os.pathsep + env.get("PATH", ""),
        **extra,
    )
    return env


def sbatch(
    conf: str,
    cwd: Path,
    args: list[str],
    env: dict[str, str] | None = None,
    sbatch_args: Sequence[str] = TWO_BY_TWO,
) -> int:
    """Submit scripts/slurm/yprov-job.sbatch with ``args`` as the training command; the job id."""
    out = subprocess.run(
        ["sbatch", "--parsable", *sbatch_args, "-o", str(cwd / "job.out"), str(BATCH_SCRIPT), *args],
        cwd=cwd,
        env=env or slurm_env(conf),
        capture_output=True,
        text=True,
        check=True,
    )
    return int(out.stdout.strip().split(";")[0])


def wait_gone(conf: str, job: int, timeout_s: float = 240) -> None:
    """Wait until ``job`` has left the queue (ended, or cancelled while pending)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        out = subprocess.run(
            ["squeue", "-h", "-j", str(job)], env=slurm_env(conf), capture_output=True, text=True
        )
        if not out.stdout.strip():
            return
        time.sleep(0.3)
    # a hung job would spin on past the test (and the cluster's stop): cancel it first
    subprocess.run(["scancel", "--signal=KILL", "--full", str(job)], env=slurm_env(conf), check=False)
    raise AssertionError(f"job {job} still queued or running after {timeout_s} s (cancelled now)")


def wait_for(what: str, predicate: Callable[[], bool], timeout_s: float = 90) -> None:
    """Poll ``predicate`` until it holds; fail naming ``what`` after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def job_info(conf: str, job: int) -> dict[str, str]:
    """``scontrol show job``'s fields (kept for MinJobAge after the job ends)."""
    out = subprocess.run(
        ["scontrol", "show", "job", "-o", str(job)], env=slurm_env(conf), capture_output=True, text=True
    )
    return dict(f.split("=", 1) for f in out.stdout.split() if "=" in f)


def merge_job_of(log: str) -> int:
    """The dependent merge job that the batch script says it submitted."""
    found = re.search(r"yprov-job: merge job (\d+) ", log)
    assert found, f"no merge job in the log:\n{log[-2000:]}"
    return int(found.group(1))


def run_dir_of(cwd: Path) -> Path:
    """The one run directory the batch script made under ``cwd``."""
    (run_dir,) = run_dirs(cwd / "prov")
    return run_dir


def job_end(run_dir: Path) -> dict[str, Any]:
    """The batch script's record of how the job ended (journal/job.end)."""
    data: dict[str, Any] = json.loads((run_dir / "journal" / "job.end").read_text())
    return data


def alarming_lines(log: str) -> list[str]:
    """Lines of a job log that would alarm a user on a successful job."""
    pattern = re.compile(r"CANCELLED|error:|Invalid job id|Traceback|Terminated|Killed")
    return [line for line in log.splitlines() if pattern.search(line)]


def _environ(pid: int) -> dict[str, str]:
    try:
        raw = Path(f"/proc/{pid}/environ").read_bytes()
    except OSError:  # gone, or not ours to read
        return {}
    return dict(item.split("=", 1) for item in raw.decode(errors="replace").split("\0") if "=" in item)


def lose_node(conf: str, job: int, node: str) -> list[int]:
    """Emulate the loss of ``node``: kill -9 its slurmd, the job's step daemons and tasks on it,
    with no signal a process could handle, then mark it down (as slurmctld would after
    SlurmdTimeout). Returns the pids killed."""
    tasks = [
        pid
        for pid in (int(p) for p in os.listdir("/proc") if p.isdigit())
        if (env := _environ(pid)).get("SLURMD_NODENAME") == node and env.get("SLURM_JOB_ID") == str(job)
    ]
    stepds = {int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1]) for pid in tasks}
    slurmd = int((SLURM_DIR / f"slurmd-{node}.pid").read_text())
    killed = [*tasks, *sorted(stepds), slurmd]
    for pid in killed:
        with contextlib.suppress(ProcessLookupError):  # a task that ended just now
            os.kill(pid, signal.SIGKILL)
    update = ["scontrol", "update", f"nodename={node}", "state=down", "reason=emulated loss"]
    subprocess.run(update, env=slurm_env(conf), check=True)
    return killed


def restore_node(conf: str, node: str) -> None:
    """Start ``node``'s slurmd again and wait until the node is back in service."""
    subprocess.run(["slurmd", "-f", conf, "-N", node], env=slurm_env(conf), check=True)
    resume = ["scontrol", "update", f"nodename={node}", "state=resume"]
    subprocess.run(resume, env=slurm_env(conf), capture_output=True)  # fails if already idle

    def idle() -> bool:
        out = subprocess.run(
            ["sinfo", "-h", "-N", "-n", node, "-o", "%T"], env=slurm_env(conf), capture_output=True, text=True
        )
        return out.stdout.strip() == "idle"

    wait_for(f"{node} back in service", idle, 60)


@dataclass(frozen=True)
class EndedJob:
    """A finished job: its id, submit directory, log and run directory."""

    job: int
    cwd: Path
    log: str
    run_dir: Path


def progress(cwd: Path, rank: int) -> int:
    """How many points ``rank`` of a test training script says it has logged (0: none yet)."""
    text = (cwd / f"progress{rank}.txt").read_text().strip() if (cwd / f"progress{rank}.txt").exists() else ""
    return int(text) if text else 0


# Logs until SIGTERM; the handler (installed after start_run, chained to yprov's) writes how many
# points it had logged when the signal came, then lets yprov end the run.
UNTIL_CANCELLED = """
import os, signal, sys, time, yprov_hpc as prov4ml
out = sys.argv[1]
run = prov4ml.start_run("www.example.org", "forever")
yprov_handler = signal.getsignal(signal.SIGTERM)
logged = 0
def on_term(signum, frame):
    with open(os.path.join(out, f"logged{run.rank}.txt"), "w") as f:
        f.write(str(logged))
    yprov_handler(signum, frame)
signal.signal(signal.SIGTERM, on_term)
progress = open(os.path.join(out, f"progress{run.rank}.txt"), "w")
while True:
    prov4ml.log_metric("loss", 1.0 / (logged + 1), prov4ml.Context.TRAINING, logged)
    logged += 1
    if logged % 50 == 0:
        progress.seek(0); progress.write(f"{logged:10d}"); progress.flush()
    time.sleep(0.002)
"""
