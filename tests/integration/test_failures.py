"""Failures: a killed or frozen sidecar, a terminated rank, a fork. Nothing logged is lost."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

import yprov_hpc as prov4ml
from tests.conftest import PYTHON, entity, literal, load, python_env, run_dirs, run_example, start


def _sidecar_pid(run_dir: Path) -> int:
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        for ready in run_dir.glob("journal/sidecar-*.json"):
            return int(json.loads(ready.read_text())["pid"])
        time.sleep(0.01)
    raise AssertionError("no sidecar started")


def _wait_acked(run: prov4ml.Run, batches: int) -> None:
    deadline = time.monotonic() + 10
    while run._sender.stats.batches_acked < batches:  # test reads the counters it asserts on
        assert time.monotonic() < deadline
        time.sleep(0.01)


def test_kill_9_of_the_sidecar_loses_nothing(save_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """After kill -9 of the sidecar mid-run, the output still holds every logged event (journal + spool)."""
    monkeypatch.setenv("YPROV_ACK_TIMEOUT_S", "0.3")
    run = start(save_dir, "kill9")
    for i in range(3000):
        prov4ml.log_metric("loss", float(i), step=i)
    _wait_acked(run, 1)
    os.kill(_sidecar_pid(run.run_dir), signal.SIGKILL)
    for i in range(3000, 6000):
        prov4ml.log_metric("loss", float(i), step=i)
        if i % 500 == 0:
            time.sleep(0.05)  # let batches go out to the dead sidecar and time out
    report = prov4ml.end_run()
    assert report.delivery.events_spilled > 0
    loss = entity(load(report.documents[0]), "run:rank0.metric.loss.run")
    assert loss["yprov:count"] == 6000 and loss["yprov:last_step"] == 5999
    act = {k: literal(v) for k, v in load(report.documents[0])["activity"]["run:rank0"].items()}
    assert act["yprov:events_missing"] == 0


def test_frozen_sidecar_gets_resends_and_duplicates_are_dropped(
    save_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A sidecar that stops answering: batches are resent, then spilled; when it wakes up and
    journals them too, the merge keeps each event once."""
    monkeypatch.setenv("YPROV_ACK_TIMEOUT_S", "0.2")
    run = start(save_dir, "frozen")
    prov4ml.log_metric("loss", 0.0, step=0)
    _wait_acked(run, 1)
    pid = _sidecar_pid(run.run_dir)
    os.kill(pid, signal.SIGSTOP)
    try:
        for i in range(1, 2001):
            prov4ml.log_metric("loss", float(i), step=i)
        deadline = time.monotonic() + 10
        while run._sender.stats.batches_spilled == 0:
            assert time.monotonic() < deadline
            time.sleep(0.02)
    finally:
        os.kill(pid, signal.SIGCONT)
    report = prov4ml.end_run()
    assert report.delivery.batches_resent > 0 and report.delivery.events_spilled > 0
    doc = load(report.documents[0])
    assert entity(doc, "run:rank0.metric.loss.run")["yprov:count"] == 2001
    merge = json.loads((run.run_dir / "merge_report.json").read_text())
    assert merge["ranks"]["0"]["duplicates_dropped"] > 0 and merge["ranks"]["0"]["gaps"] == []


_LOOP = """
import sys, time, yprov_hpc as prov4ml
prov4ml.start_run("www.example.org", "sigterm", sys.argv[1])
step = 0
while True:
    prov4ml.log_metric("loss", 1.0 / (step + 1), prov4ml.Context.TRAINING, step)
    if step % 100 == 0:
        print(step, flush=True)
    step += 1
    time.sleep(0.0005)
"""


def _looping_rank(tmp_path: Path) -> tuple[subprocess.Popen[str], int]:
    """A rank logging in a loop, once it printed step 1000 or more; the last step it printed."""
    script = tmp_path / "loop.py"
    script.write_text(_LOOP)
    proc = subprocess.Popen(
        [PYTHON, str(script), str(tmp_path / "prov")], env=python_env(), stdout=subprocess.PIPE, text=True
    )
    last = -1
    assert proc.stdout is not None
    for line in proc.stdout:
        last = int(line)
        if last >= 1000:
            break
    return proc, last


def _kept_up_to(tmp_path: Path, last: int) -> None:
    """The rank's document has every point up to ``last``, gapless, and says killed."""
    (doc_path,) = (tmp_path / "prov").glob("*/prov_sigterm_rank0.json")
    doc = load(doc_path)
    loss = entity(doc, "run:rank0.metric.loss.training")
    assert loss["yprov:last_step"] >= last and loss["yprov:count"] == loss["yprov:last_step"] + 1
    assert literal(doc["activity"]["run:rank0"]["yprov:status"]) == "killed"


def test_sigterm_of_a_rank_keeps_its_events(tmp_path: Path) -> None:
    """A rank stopped by SIGTERM (as Slurm does) still has every event up to the signal in the output."""
    proc, last = _looping_rank(tmp_path)
    proc.send_signal(signal.SIGTERM)
    proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGTERM  # the default action still happens after the flush
    _kept_up_to(tmp_path, last)


def test_sigterm_again_while_the_run_ends_keeps_its_events(tmp_path: Path) -> None:
    """SIGTERM again and again while the first one ends the run (a step signal can reach a
    task twice): the run still ends whole, status killed, every event up to the signal kept;
    then the default action."""
    proc, last = _looping_rank(tmp_path)
    deadline = time.monotonic() + 30
    while proc.poll() is None and time.monotonic() < deadline:
        proc.send_signal(signal.SIGTERM)
        time.sleep(0.002)
    proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGTERM
    _kept_up_to(tmp_path, last)


_FORK = """
import os, sys, yprov_hpc as prov4ml
prov4ml.start_run("www.example.org", "fork", sys.argv[1])
prov4ml.log_metric("parent", 1.0, step=0)
pid = os.fork()
if pid == 0:
    prov4ml.log_metric("child", 2.0, step=0)
    prov4ml.end_run()
    os._exit(0)
_, status = os.waitpid(pid, 0)
prov4ml.log_metric("parent", 3.0, step=1)
report = prov4ml.end_run()
print(report.merged, status, report.delivery.events_spilled)
"""


def test_forked_child_logs_on_its_own_stream(tmp_path: Path) -> None:
    """A forked child can log without deadlock; its events join the same rank, the parent's run goes on."""
    script = tmp_path / "fork.py"
    script.write_text(_FORK)
    out = run_example(tmp_path, PYTHON, str(script), str(tmp_path / "prov"), timeout_s=60)
    assert out.stdout.split() == ["True", "0", "0"]  # nothing spilled: the sidecar served the parent on
    (doc_path,) = (tmp_path / "prov").glob("*/prov_fork_rank0.json")
    doc = load(doc_path)
    assert entity(doc, "run:rank0.metric.child.run")["yprov:count"] == 1
    assert entity(doc, "run:rank0.metric.parent.run")["yprov:count"] == 2
    assert literal(doc["activity"]["run:rank0"]["yprov:status"]) == "finished"


_RANK = """
import sys, yprov_hpc as prov4ml
rank = int(sys.argv[2])
prov4ml.start_run("www.example.org", "race", sys.argv[1], rank=rank, world_size=3, run_id="race1")
for i in range(500):
    prov4ml.log_metric("loss", float(i), step=i)
prov4ml.end_run()
"""


def test_ranks_racing_to_start_share_one_sidecar(tmp_path: Path) -> None:
    """Three ranks starting at once on one machine start exactly one embedded sidecar."""
    script = tmp_path / "rank.py"
    script.write_text(_RANK)
    procs = [
        subprocess.Popen([PYTHON, str(script), str(tmp_path / "prov"), str(r)], env=python_env())
        for r in range(3)
    ]
    assert [p.wait(timeout=60) for p in procs] == [0, 0, 0]
    run_dir = tmp_path / "prov" / "race_race1"
    assert len(list((run_dir / "journal").glob("node-*.journal"))) == 1
    assert (run_dir / "journal" / f"sidecar-{_node()}.log").read_text().count("serving") == 1
    assert not list((run_dir / "journal").glob("spool-*"))
    coll = load(run_dir / "prov_race_collection.json")
    assert len(coll["hadMember"]) == 3


def _node() -> str:
    from yprov_hpc.rank.discovery import node_name

    return node_name({})


def test_pytest_runs_this_file_with_the_checkout() -> None:
    """The subprocesses above import this checkout's yprov_hpc (guards against a stale install)."""
    out = subprocess.run(
        [PYTHON, "-c", "import yprov_hpc; print(yprov_hpc.__file__)"],
        env=python_env(),
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert Path(out.strip()).parent.parent == Path(__file__).resolve().parent.parent.parent


_TORCHRUN_WORKER = """
import sys, yprov_hpc as prov4ml
run = prov4ml.start_run("www.example.org", "elastic", sys.argv[1])
for i in range(200):
    prov4ml.log_metric("loss", float(i), prov4ml.Context.TRAINING, i)
print(run.rank, run.placement.launcher, run.run_id)
prov4ml.end_run()
"""


def test_torchrun_style_workers_share_one_run(tmp_path: Path) -> None:
    """Workers with torchrun's environment (RANK, LOCAL_RANK, WORLD_SIZE, TORCHELASTIC_RUN_ID)
    agree on one run and one sidecar. (torchrun itself is exercised with the PyTorch tests.)"""
    script = tmp_path / "worker.py"
    script.write_text(_TORCHRUN_WORKER)
    procs = []
    for rank in range(4):
        env = python_env() | {
            "RANK": str(rank),
            "LOCAL_RANK": str(rank),
            "WORLD_SIZE": "4",
            "LOCAL_WORLD_SIZE": "4",
            "TORCHELASTIC_RUN_ID": "a1b2c3",
            "TORCHELASTIC_RESTART_COUNT": "0",
        }
        procs.append(
            subprocess.Popen(
                [PYTHON, str(script), str(tmp_path / "prov")], env=env, stdout=subprocess.PIPE, text=True
            )
        )
    lines = sorted(p.communicate(timeout=60)[0].split() for p in procs)
    assert [line[:2] for line in lines] == [[str(r), "torchrun"] for r in range(4)]
    assert len({line[2] for line in lines}) == 1
    (run_dir,) = run_dirs(tmp_path / "prov")
    assert len(load(run_dir / "prov_elastic_collection.json")["hadMember"]) == 4
    assert len(list((run_dir / "journal").glob("node-*.journal"))) == 1


_NO_END = """
import sys, yprov_hpc as prov4ml
prov4ml.start_run("www.example.org", "noend", sys.argv[1])
for i in range(500):
    prov4ml.log_metric("loss", float(i), step=i)
if sys.argv[2] == "raise":
    raise RuntimeError("training crashed")
"""


def test_forgetting_end_run_or_crashing_keeps_everything(tmp_path: Path) -> None:
    """A script that never calls end_run, or dies of an exception, still gets its documents at exit."""
    script = tmp_path / "noend.py"
    script.write_text(_NO_END)
    for mode, status, code in (("exit", "exited without end_run", 0), ("raise", "failed", 1)):
        save = tmp_path / mode
        out = subprocess.run(
            [PYTHON, str(script), str(save), mode],
            env=python_env(),
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert out.returncode == code, out.stderr
        (doc_path,) = save.glob("*/prov_noend_rank0.json")
        doc = load(doc_path)
        assert entity(doc, "run:rank0.metric.loss.run")["yprov:count"] == 500
        assert literal(doc["activity"]["run:rank0"]["yprov:status"]) == status
