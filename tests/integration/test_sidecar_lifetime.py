"""The sidecar's lifetime with real processes: dead and zombie ranks, a vanished run directory,
lost markers, and the embedded sidecar's final merge."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import PYTHON, python_env
from tests.integration.sidecar_proc import dealer, metric, send_batch, start_sidecar, stop

EXIT_WAIT_S = 30  # generous: the machine is shared; the rule under test is "it exits", not how fast


def _hello(pid: int, world_size: int = 1) -> tuple[Any, ...]:
    return (11, time.time_ns(), {"pid": pid, "world_size": world_size})


def _bye(pid: int) -> tuple[Any, ...]:
    return (12, time.time_ns(), {"pid": pid})


def _wait_for(path: Path, timeout_s: float = EXIT_WAIT_S) -> None:
    deadline = time.monotonic() + timeout_s
    while not path.exists():
        assert time.monotonic() < deadline, f"{path.name} never appeared"
        time.sleep(0.05)


def _sleeper() -> subprocess.Popen[bytes]:
    """A process that stands for a rank (its pid goes in the hello)."""
    return subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])


def test_a_rank_that_dies_without_bye_gets_a_lost_marker(tmp_path: Path) -> None:
    """kill -9 of a rank: the sidecar writes journal/rank<r>.lost with its pid, node and last seq."""
    run_dir = tmp_path / "exp_r1"
    proc, endpoint = start_sidecar(run_dir)
    rank = _sleeper()
    sock = dealer(endpoint)
    try:
        assert send_batch(sock, [_hello(rank.pid, world_size=2)], 0, rank=1).refused is None
        assert send_batch(sock, [metric(1), metric(2)], 1, rank=1).refused is None
        rank.kill()
        rank.wait()
        marker = run_dir / "journal" / "rank1.lost"
        _wait_for(marker)
        lost = json.loads(marker.read_text())
        assert proc.poll() is None, "a standalone sidecar keeps serving the other ranks"
    finally:
        sock.close()
        stop(proc)
    assert {k: lost[k] for k in ("rank", "pid", "node", "stream", "last_seq")} == {
        "rank": 1,
        "pid": rank.pid,
        "node": "n0",
        "stream": 7,
        "last_seq": 2,
    }
    assert type(lost["detected_ts_ns"]) is int


def test_a_zombie_rank_counts_as_gone(tmp_path: Path) -> None:
    """A rank that exited but was never reaped (a zombie) ends the embedded sidecar like a dead one."""
    run_dir = tmp_path / "exp_r1"
    proc, endpoint = start_sidecar(run_dir, "--embedded", "--idle-timeout", "600")
    rank = subprocess.Popen([sys.executable, "-c", "pass"])
    sock = dealer(endpoint)
    try:
        assert send_batch(sock, [_hello(rank.pid)], 0).refused is None
        deadline = time.monotonic() + EXIT_WAIT_S
        while os.waitid(os.P_PID, rank.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is None:
            assert time.monotonic() < deadline
            time.sleep(0.02)  # exited, not reaped: a zombie
        out = proc.communicate(timeout=EXIT_WAIT_S)[0].decode()
    finally:
        sock.close()
        stop(proc)
        rank.wait()
    assert proc.returncode == 0
    assert "every rank process ended" in out
    assert (run_dir / "journal" / "rank0.lost").exists()


def test_a_rank_that_said_bye_is_not_lost(tmp_path: Path) -> None:
    """Hello, bye, then the process exits: the embedded sidecar stops with no lost marker."""
    run_dir = tmp_path / "exp_r1"
    proc, endpoint = start_sidecar(run_dir, "--embedded", "--idle-timeout", "600")
    rank = _sleeper()
    sock = dealer(endpoint)
    try:
        assert send_batch(sock, [_hello(rank.pid), metric(1)], 0).refused is None
        assert send_batch(sock, [_bye(rank.pid)], 2).refused is None
        rank.kill()
        rank.wait()
        out = proc.communicate(timeout=EXIT_WAIT_S)[0].decode()
    finally:
        sock.close()
        stop(proc)
    assert "every rank said bye" in out
    assert not (run_dir / "journal" / "rank0.lost").exists()


@pytest.mark.parametrize("embedded", [True, False], ids=["embedded", "standalone"])
def test_the_sidecar_exits_when_its_run_directory_disappears(tmp_path: Path, embedded: bool) -> None:
    """Removing the run directory under a running sidecar makes it stop (exit 0) instead of lingering."""
    run_dir = tmp_path / "exp_r1"
    proc, endpoint = start_sidecar(run_dir, *(["--embedded", "--idle-timeout", "600"] if embedded else []))
    rank = _sleeper()
    sock = dealer(endpoint)
    try:
        assert send_batch(sock, [_hello(rank.pid)], 0).refused is None
        for _ in range(20):  # as `rm -rf` again would: the sidecar re-creates a journal deleted
            try:  # under it while its directory is still there, so one pass may find it not empty
                shutil.rmtree(run_dir)
                break
            except OSError:
                time.sleep(0.05)
        assert not run_dir.exists()
        out = proc.communicate(timeout=EXIT_WAIT_S)[0].decode()
    finally:
        sock.close()
        stop(proc)
        rank.kill()
        rank.wait()
    assert proc.returncode == 0
    assert "run directory" in out and "is gone" in out


_RANK = """
import os, signal, sys, time
from pathlib import Path
import yprov_hpc as prov4ml
rank, save = int(sys.argv[1]), sys.argv[2]
run = prov4ml.start_run("www.example.org", "life", save, rank=rank, world_size=2, run_id="r1",
                        handle_sigterm=False)
for i in range(200):
    prov4ml.log_metric("loss", float(i), step=i)
if rank == 1:
    time.sleep(1.5)  # the batches are shipped and acked
    os.kill(os.getpid(), signal.SIGKILL)
lost = run.run_dir / "journal" / "rank1.lost"
deadline = time.monotonic() + 60
while not lost.exists() and time.monotonic() < deadline:  # a survivor can tell
    time.sleep(0.05)
print("saw lost" if lost.exists() else "no lost marker", flush=True)
prov4ml.end_run()
"""


def test_the_embedded_sidecar_merges_after_a_rank_is_lost(tmp_path: Path) -> None:
    """Rank 1 is killed, rank 0 ends: the embedded sidecar marks rank 1 lost and runs the final merge."""
    script = tmp_path / "rank.py"
    script.write_text(_RANK)
    save = tmp_path / "prov"
    ranks = [
        subprocess.Popen([PYTHON, str(script), str(r), str(save)], env=python_env(), stdout=subprocess.PIPE)
        for r in range(2)
    ]
    outs = [p.communicate(timeout=120)[0].decode() for p in ranks]
    assert ranks[1].returncode == -signal.SIGKILL
    assert ranks[0].returncode == 0 and "saw lost" in outs[0]
    run_dir = save / "life_r1"
    state = run_dir / "journal" / "merge.state.json"
    _wait_for(state, timeout_s=90)
    merged = json.loads(state.read_text())
    assert merged["by"].startswith("sidecar ") and merged["ranks"] == 2
    log = next((run_dir / "journal").glob("sidecar-*.log")).read_text()
    assert "merging 2 ranks" in log and "merged in" in log
    assert (run_dir / "prov_life_rank0.json").exists() and (run_dir / "prov_life_rank1.json").exists()


@pytest.mark.parametrize("embedded", [True, False], ids=["embedded", "standalone"])
def test_the_ready_file_says_whether_the_sidecar_merges(tmp_path: Path, embedded: bool) -> None:
    """The ready file says "merges": true for an embedded sidecar (it runs the final merge), else false."""
    run_dir = tmp_path / "exp_r1"
    proc, _ = start_sidecar(run_dir, *(["--embedded"] if embedded else []))
    try:
        ready = json.loads((run_dir / "journal" / "sidecar-n0.json").read_text())
    finally:
        stop(proc)
    assert ready["merges"] is embedded and ready["embedded"] is embedded


def test_an_incomplete_world_does_not_keep_the_sidecar_waiting(tmp_path: Path) -> None:
    """World size 4, one rank said hello and died: the embedded sidecar stops without its idle timeout."""
    run_dir = tmp_path / "exp_r1"
    proc, endpoint = start_sidecar(run_dir, "--embedded", "--idle-timeout", "600")
    rank = _sleeper()
    sock = dealer(endpoint)
    try:
        assert send_batch(sock, [_hello(rank.pid, world_size=4)], 0).refused is None
        rank.kill()
        rank.wait()
        out = proc.communicate(timeout=EXIT_WAIT_S)[0].decode()
    finally:
        sock.close()
        stop(proc)
    assert "every rank process ended" in out


def test_no_merge_while_ranks_of_the_world_have_no_marker(tmp_path: Path) -> None:
    """Rank 1 of 2 never said hello: the embedded sidecar stops, says why it does not merge, and does not."""
    run_dir = tmp_path / "exp_r1"
    proc, endpoint = start_sidecar(run_dir, "--embedded", "--idle-timeout", "600")
    rank = _sleeper()
    sock = dealer(endpoint)
    try:
        assert send_batch(sock, [_hello(rank.pid, world_size=2)], 0).refused is None
        assert send_batch(sock, [_bye(rank.pid)], 1).refused is None
        (run_dir / "journal" / "rank0.done").write_text("{}")
        rank.kill()
        rank.wait()
        out = proc.communicate(timeout=EXIT_WAIT_S)[0].decode()
    finally:
        sock.close()
        stop(proc)
    assert "not merging: 1 of 2 ranks have no done or lost marker (1)" in out
    assert not (run_dir / "journal" / "merge.state.json").exists()
