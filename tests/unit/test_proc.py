"""A process's start time read without psutil agrees with psutil's."""

from __future__ import annotations

import os
import subprocess
import sys

import psutil

from yprov_hpc.core.proc import create_time


def test_start_times_agree_with_psutil() -> None:
    """This process, its parent and a child started now: the same start time as psutil's."""
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(5)"])
    try:
        for pid in (os.getpid(), os.getppid(), child.pid):
            ours = create_time(pid)
            assert ours is not None and abs(ours - psutil.Process(pid).create_time()) < 0.01
    finally:
        child.kill()
        child.wait()


def test_a_process_that_is_gone_has_no_start_time() -> None:
    """A pid that names no process gives None, not an error."""
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    assert create_time(child.pid) is None


def test_a_lone_process_finds_its_run_key_without_psutil() -> None:
    """The key start_run gives a lone process (pid and start time) needs no psutil import."""
    code = (
        "import sys\n"
        "from yprov_hpc.rank.discovery import discover\n"
        "from yprov_hpc.rank.run_ids import owner_key\n"
        "key = owner_key(discover())\n"
        "print(key.startswith('process '), 'psutil' in sys.modules)\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SLURM_", "YPROV_", "TORCHELASTIC"))}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
    assert out.stdout.split() == ["True", "False"]
