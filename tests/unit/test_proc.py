"""A process's start time read without psutil agrees with psutil's."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import psutil
import pytest

from yprov_hpc.core import proc
from yprov_hpc.core.proc import create_time


def test_start_times_agree_with_psutil() -> None:
    """This process, its parent and a child started now: /proc alone (no psutil fallback) gives
    the same start time as psutil's."""
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(5)"])
    try:
        for pid in (os.getpid(), os.getppid(), child.pid):
            ours = proc._from_proc(pid)
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


def test_the_boot_time_is_found_after_many_cpus(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """On a node with hundreds of CPUs ``btime`` stands far past the first 4 KB of /proc/stat."""
    real = Path("/proc/stat").read_bytes().split(b"\n")
    btime = next(line for line in real if line.startswith(b"btime "))
    big = tmp_path / "stat"
    big.write_bytes(b"".join(b"cpu%d 1 2 3 4 5 6 7 8 9 10\n" % i for i in range(1024)) + btime + b"\n")
    opened = open

    def fake_open(path: str, *args: Any, **kwargs: Any) -> Any:
        return opened(big if path == "/proc/stat" else path, *args, **kwargs)

    monkeypatch.setattr(proc, "open", fake_open, raising=False)
    monkeypatch.setattr(proc, "_boot_time", None)
    assert big.stat().st_size > 4 * 4096
    assert proc._boot() == float(btime.split()[1])
