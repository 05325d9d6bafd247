"""The sidecar's lifetime with real processes: dead and zombie ranks, a vanished run directory,
lost markers, and the embedded sidecar's final merge."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import PYTHON, entity, literal, load, python_env
from tests.integration.sidecar_proc import dealer, metric, send_batch, start_sidecar, stop
from yprov_hpc.merge import merge_run

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


# A rank that logs until told to go on (a file), then 500 more points, and ends its run.
_RANK_UNTIL_GO = """
import os, sys, time, yprov_hpc as prov4ml
go = sys.argv[1]
run = prov4ml.start_run("www.example.org", "term", handle_sigterm=False, auto_merge=False, run_id="r1")
step = 0
while not os.path.exists(go) or step < 500:
    prov4ml.log_metric("loss", float(step), prov4ml.Context.TRAINING, step)
    step += 1
    if step == 100:
        open(go + ".started", "w").close()
    time.sleep(0.001 if os.path.exists(go) else 0.005)
prov4ml.end_run()
open(go + ".done", "w").write(str(step))
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _takes(pid: int, signum: int) -> bool:
    """Whether process ``pid`` now catches, ignores or blocks ``signum`` (/proc: SigCgt, SigIgn,
    SigBlk)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return False
    fields = ("SigCgt:", "SigIgn:", "SigBlk:")
    masks = [int(line.split()[1], 16) for line in status.splitlines() if line.startswith(fields)]
    return any(mask >> (signum - 1) & 1 for mask in masks)


def _in_a_slurm_step() -> dict[str, str]:
    env = python_env()
    env.update(SLURM_JOB_ID="4242", SLURM_STEP_ID="1")
    return env


def test_sigterm_in_a_slurm_step_serves_the_ranks_until_they_end(tmp_path: Path) -> None:
    """Inside a Slurm step (scancel, a time limit: Slurm signals every step at once) a SIGTERM
    does not stop the sidecar while its node's rank logs on: the rank's last points and its
    run's end are journaled, nothing is spilled, and the sidecar stops once the rank said bye."""
    run_dir = tmp_path / "term_r1"
    proc, _ = start_sidecar(run_dir, env=_in_a_slurm_step())
    go = tmp_path / "go"
    env = python_env()
    env.update(YPROV_RUN_DIR=str(run_dir), SLURMD_NODENAME="n0")  # the node the sidecar serves
    rank = subprocess.Popen([PYTHON, "-c", _RANK_UNTIL_GO, str(go)], env=env, stderr=subprocess.PIPE)
    try:
        _wait_for(Path(str(go) + ".started"))
        proc.send_signal(signal.SIGTERM)
        time.sleep(0.5)
        assert proc.poll() is None, "the sidecar stopped while its rank was still logging"
        go.touch()
        assert rank.wait(timeout=60) == 0, rank.communicate()[1].decode()[-2000:]
        out, _ = proc.communicate(timeout=EXIT_WAIT_S)
    finally:
        stop(proc)
        if rank.poll() is None:
            rank.kill()
    assert proc.returncode == 0, out.decode()[-2000:]
    assert b"the job is ending; serving on until this node's ranks end" in out
    assert b"stopping: every rank said bye" in out, out.decode()[-2000:]
    merge_run(run_dir)
    steps = int(Path(str(go) + ".done").read_text())
    doc = load(run_dir / "prov_term_rank0.json")
    act = {k: literal(v) for k, v in doc["activity"]["run:rank0"].items()}
    assert (act["yprov:events_spilled"], act["yprov:events_missing"]) == (0, 0)
    assert act["yprov:status"] == "finished"
    assert entity(doc, "run:rank0.metric.loss.training")["yprov:count"] == steps


@pytest.mark.parametrize(
    ("mode", "slurm", "stops"),
    [("auto", True, False), ("auto", False, True), ("stop", True, True), ("wait", False, False)],
)
def test_which_sigterm_stops_a_sidecar_with_a_rank(
    tmp_path: Path, mode: str, slurm: bool, stops: bool
) -> None:
    """YPROV_SIDECAR_ON_SIGTERM: 'auto' waits for the ranks only inside a Slurm step; 'stop' and
    'wait' force it. With no rank yet, or on SIGINT, every sidecar stops at once."""
    run_dir = tmp_path / "exp_r1"
    env = _in_a_slurm_step() if slurm else python_env()
    env["YPROV_SIDECAR_ON_SIGTERM"] = mode
    proc, endpoint = start_sidecar(run_dir, env=env)
    rank = _sleeper()
    sock = dealer(endpoint)
    try:
        assert send_batch(sock, [_hello(rank.pid)], 0).refused is None
        proc.send_signal(signal.SIGTERM)
        if stops:
            proc.communicate(timeout=EXIT_WAIT_S)
            assert proc.returncode == 0
            return
        time.sleep(1.0)
        assert proc.poll() is None
        assert send_batch(sock, [metric(1)], 1).refused is None, "it acks on after the SIGTERM"
        proc.send_signal(signal.SIGINT)  # the batch script's stop: at once
        out, _ = proc.communicate(timeout=EXIT_WAIT_S)
        assert proc.returncode == 0 and b"(SIGINT): draining and stopping" in out
    finally:
        sock.close()
        stop(proc)
        rank.kill()
        rank.wait()


def test_sigterm_in_a_slurm_step_with_no_rank_stops_at_once(tmp_path: Path) -> None:
    """A job cancelled before any rank of the node said hello: nothing to wait for."""
    proc, _ = start_sidecar(tmp_path / "exp_r1", env=_in_a_slurm_step())
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=EXIT_WAIT_S)
    assert proc.returncode == 0, out.decode()[-2000:]
    assert b"stopping: the job is ending and no rank of this node said hello" in out


def _sigterm_then_the_rank_ends(proc: subprocess.Popen[bytes], sock: Any, pid: int, run_dir: Path) -> None:
    """Rank 0 (``pid``) says hello, the sidecar gets SIGTERM, then the rank's done marker is
    there and it says bye: by the rank rules the sidecar may stop now."""
    assert send_batch(sock, [_hello(pid)], 0).refused is None
    proc.send_signal(signal.SIGTERM)
    (run_dir / "journal" / "rank0.done").write_text("{}")
    assert send_batch(sock, [_bye(pid)], 1).refused is None


@pytest.mark.parametrize("other_ends", ["stops", "killed"])
def test_the_aggregator_serves_on_after_sigterm_while_other_nodes_forward(
    tmp_path: Path, other_ends: str
) -> None:
    """The job's aggregator (first node) does not stop when its own ranks end after Slurm's
    SIGTERM while another node's sidecar still forwards to it (its samples, at least). It stops
    by itself once that one has stopped (its ready file gone), or, if it was killed -9 (the
    ready file stays), once nothing was forwarded for 5 s."""
    run_dir = tmp_path / "exp_r1"
    agg = f"tcp://127.0.0.1:{_free_port()}"
    proc, endpoint = start_sidecar(run_dir, "--aggregate", agg, env=_in_a_slurm_step())
    sampling = ("--samplers", "system", "--interval", "0.2")
    other, _ = start_sidecar(run_dir, "--forward", agg, *sampling, node="n1", env=_in_a_slurm_step())
    rank = _sleeper()
    sock = dealer(endpoint)
    try:
        _sigterm_then_the_rank_ends(proc, sock, rank.pid, run_dir)
        time.sleep(6.0)
        assert proc.poll() is None, "the aggregator stopped while another node still forwards"
        if other_ends == "stops":
            other.send_signal(signal.SIGINT)
            other_out, _ = other.communicate(timeout=EXIT_WAIT_S)
            assert b"0 unacked at stop" in other_out, other_out.decode()[-2000:]
        else:
            other.kill()
            other.communicate(timeout=EXIT_WAIT_S)
        out, _ = proc.communicate(timeout=EXIT_WAIT_S)
    finally:
        sock.close()
        stop(other)
        stop(proc)
        rank.kill()
        rank.wait()
    assert proc.returncode == 0, out.decode()[-2000:]
    assert b"(this is the job's aggregator) have stopped, or are quiet for 5 s" in out
    why = b"have stopped" if other_ends == "stops" else b"quiet for 5 s"
    assert b"stopping: every rank said bye; the other nodes' sidecars " + why in out, out.decode()[-2000:]
    term = json.loads((run_dir / "journal" / "sigterm-n0.json").read_text())
    assert term["node"] == "n0" and type(term["ts_ns"]) is int


def test_a_signal_after_a_stop_by_the_rules_keeps_the_reason(tmp_path: Path) -> None:
    """A sidecar that stopped by itself (its rank said bye, its done marker there) and then gets
    the script's SIGINT while it shuts down records why it really stopped."""
    run_dir = tmp_path / "exp_r1"
    # a forwarder to an aggregator that never answers: its stop waits up to 3 s for acks, time
    # enough for the SIGINTs below to land while the sidecar shuts down
    (run_dir / "journal").mkdir(parents=True)
    subprocess.run([PYTHON, "-m", "yprov_hpc.cli", "keys", str(run_dir)], env=python_env(), check=True)
    forward = f"tcp://127.0.0.1:{_free_port()}"
    proc, endpoint = start_sidecar(run_dir, "--forward", forward, env=_in_a_slurm_step())
    rank = _sleeper()
    sock = dealer(endpoint)
    try:
        _sigterm_then_the_rank_ends(proc, sock, rank.pid, run_dir)  # it stops on the bye's turn
        deadline = time.monotonic() + EXIT_WAIT_S
        while proc.poll() is None and time.monotonic() < deadline:
            proc.send_signal(signal.SIGINT)
            time.sleep(0.01)
        out, _ = proc.communicate(timeout=EXIT_WAIT_S)
    finally:
        sock.close()
        stop(proc)
        rank.kill()
        rank.wait()
    assert proc.returncode == 0 and b"stopping: every rank said bye" in out, out.decode()[-2000:]
    assert b"unacked at stop" in out
    stats = json.loads((run_dir / "journal" / "stats-sidecar-n0.json").read_text())
    assert stats["stop_reason"] == "every rank said bye"


@pytest.mark.parametrize("launcher", ["python -m yprov_daemon", "yprov sidecar"])
@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGUSR1])
def test_a_signal_while_the_sidecar_starts_is_not_fatal(
    tmp_path: Path, signum: signal.Signals, launcher: str
) -> None:
    """Signals from the moment the process exists (before the sidecar has its handlers: imports,
    checks, bind; for `yprov sidecar`, what the batch script runs, its exec too): a stop signal
    ends it cleanly, exit 0 and no traceback; SIGUSR1 is ignored and the sidecar comes up."""
    run_dir = tmp_path / "exp_r1"
    command = (
        [str(Path(PYTHON).parent / "yprov"), "sidecar"]
        if launcher == "yprov sidecar"
        else [PYTHON, "-m", "yprov_daemon"]
    )
    proc = subprocess.Popen(
        [*command, "--run-dir", str(run_dir), "--node", "n0", "--samplers", "none"],
        env=python_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    ready = run_dir / "journal" / "sidecar-n0.json"
    try:
        # the interpreter's own start, before any of our code runs, is out of reach: flood from
        # the moment our first line has blocked SIGTERM (`yprov sidecar`, until the sidecar
        # unblocks it) or taken it, which it does last (its imports are still to come; Python
        # itself catches SIGINT from its own start)
        deadline = time.monotonic() + EXIT_WAIT_S
        while not _takes(proc.pid, signal.SIGTERM):
            assert proc.poll() is None and time.monotonic() < deadline, "the sidecar never took the signal"
            time.sleep(0.001)
        assert not ready.exists(), "the sidecar was ready before the flood began"
        while proc.poll() is None and not ready.exists() and time.monotonic() < deadline:
            proc.send_signal(signum)
            time.sleep(0.005)
        if signum == signal.SIGUSR1:
            assert proc.poll() is None and ready.exists(), "SIGUSR1 stopped the sidecar"
            proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=EXIT_WAIT_S)
    finally:
        stop(proc)
    assert proc.returncode == 0, out.decode()[-2000:]
    assert b"Traceback" not in out, out.decode()[-2000:]
