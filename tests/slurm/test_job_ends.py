"""The ways a Slurm job ends by force, on a real local Slurm: scancel, the time limit (with
``--signal=B:TERM@60``) and a killed sidecar. Each keeps every event the ranks logged, and the
dependent merge job writes the documents after the job."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from tests.conftest import PYTHON, entity, literal, load
from tests.slurm.conftest import (
    UNTIL_CANCELLED,
    EndedJob,
    alarming_lines,
    job_end,
    job_info,
    merge_job_of,
    progress,
    run_dir_of,
    sbatch,
    slurm_env,
    wait_for,
    wait_gone,
)


def _after_merge_job(conf: str, job: int, cwd: Path) -> EndedJob:
    """Wait for ``job`` and then for its dependent merge job; the job as it ended."""
    wait_gone(conf, job)
    log = (cwd / "job.out").read_text()
    wait_gone(conf, merge_job_of(log))
    merge_log = (cwd / f"yprov-merge-{job}.out").read_text()
    assert "merged 4 rank(s)" in merge_log, merge_log
    return EndedJob(job, cwd, log, run_dir_of(cwd))


@pytest.fixture(scope="module")
def cancelled_job(slurm_conf: str, tmp_path_factory: pytest.TempPathFactory) -> EndedJob:
    """A 4-rank job cancelled with scancel once every rank logged 200 points; then merged."""
    cwd = tmp_path_factory.mktemp("cancelled")
    (cwd / "forever.py").write_text(UNTIL_CANCELLED)
    job = sbatch(slurm_conf, cwd, [PYTHON, str(cwd / "forever.py"), str(cwd)])
    wait_for("200 points on every rank", lambda: all(progress(cwd, r) >= 200 for r in range(4)), 120)
    subprocess.run(["scancel", str(job)], env=slurm_env(slurm_conf), check=True)
    return _after_merge_job(slurm_conf, job, cwd)


def test_scancel_keeps_everything_logged_up_to_the_signal(cancelled_job: EndedJob) -> None:
    """Every rank's document holds at least the points it had logged when SIGTERM came, gapless."""
    for rank in range(4):
        logged = int((cancelled_job.cwd / f"logged{rank}.txt").read_text())
        doc = load(cancelled_job.run_dir / f"prov_forever_rank{rank}.json")
        loss = entity(doc, f"run:rank{rank}.metric.loss.training")
        assert loss["yprov:count"] >= logged >= 200, f"rank {rank}: {loss['yprov:count']} < {logged}"
        assert loss["yprov:count"] == loss["yprov:last_step"] + 1


def test_scancel_ranks_end_with_status_killed(cancelled_job: EndedJob) -> None:
    """Each rank ended its run on SIGTERM (status killed), not by an incomplete journal."""
    for rank in range(4):
        doc = load(cancelled_job.run_dir / f"prov_forever_rank{rank}.json")
        assert literal(doc["activity"][f"run:rank{rank}"]["yprov:status"]) == "killed"


def test_scancel_sidecars_serve_the_ranks_last_events(cancelled_job: EndedJob) -> None:
    """Slurm's SIGTERM reaches the sidecars with the ranks': node2's serves on until its ranks
    have ended, the aggregator (node1) also until node2's has gone quiet (or the script stops
    it), so the ranks' last points and run ends are journaled, none spilled, and every
    forwarded copy was acked."""
    log = cancelled_job.log
    assert log.count("the job is ending; serving on until this node's ranks end") == 2, log[-3000:]
    assert log.count("(this is the job's aggregator) have stopped, or are quiet") == 1, log[-3000:]
    assert "stopping: every rank said bye\n" in log, log[-3000:]
    assert "0 unacked at stop" in log and "scancel: error" not in log, log[-3000:]
    for rank in range(4):
        doc = load(cancelled_job.run_dir / f"prov_forever_rank{rank}.json")
        assert literal(doc["activity"][f"run:rank{rank}"]["yprov:events_spilled"]) == 0


def test_scancel_records_cancelled(slurm_conf: str, cancelled_job: EndedJob) -> None:
    """journal/job.end says cancelled, and the job is CANCELLED in Slurm."""
    assert job_end(cancelled_job.run_dir)["cause"] == "cancelled"
    assert job_info(slurm_conf, cancelled_job.job)["JobState"] == "CANCELLED"


def test_scancel_leaves_the_merge_to_the_merge_job(cancelled_job: EndedJob) -> None:
    """On a signal the batch script does not merge: the log has no merge line."""
    assert not [line for line in cancelled_job.log.splitlines() if line.startswith("merged ")]


# A training that takes a warning signal (SIGNAL) as a checkpoint would: it logs on for GRACE
# (a Python expression: ns) after it, then ends its run and exits 0. It writes: points logged,
# the first signal's ts, the end ts, how many signals came.
_WARNED = """
import os, signal, sys, time, yprov_hpc as prov4ml
out = sys.argv[1]
warned = []
signal.signal(signal.SIGNAL, lambda signum, frame: warned.append(time.time_ns()))
run = prov4ml.start_run("www.example.org", "EXPERIMENT", handle_sigterm=False)
grace_ns = GRACE
progress = open(os.path.join(out, f"progress{run.rank}.txt"), "w")
step = 0
while not warned or time.time_ns() - warned[0] < grace_ns:
    prov4ml.log_metric("loss", 1.0 / (step + 1), prov4ml.Context.TRAINING, step)
    step += 1
    if step % 50 == 0:
        progress.seek(0); progress.write(f"{step:10d}"); progress.flush()
    time.sleep(0.005)
end_ns = time.time_ns()
prov4ml.end_run()
with open(os.path.join(out, f"done{run.rank}.txt"), "w") as f:
    f.write(f"{step} {warned[0]} {end_ns} {len(warned)}")
"""


def _warned(signal_name: str, experiment: str, grace: str) -> str:
    return _WARNED.replace("SIGNAL", signal_name).replace("EXPERIMENT", experiment).replace("GRACE", grace)


# the time-limit warning (SIGTERM, passed on by the batch script); 3 s to go on
_UNTIL_WARNED = _warned("SIGTERM", "limited", "3_000_000_000")


@pytest.fixture(scope="module")
def time_limited_job(slurm_conf: str, tmp_path_factory: pytest.TempPathFactory) -> EndedJob:
    """A 4-rank job of a 2-minute limit, warned 60 s before it by --signal=B:TERM@60."""
    cwd = tmp_path_factory.mktemp("time_limit")
    (cwd / "limited.py").write_text(_UNTIL_WARNED)
    env = slurm_env(slurm_conf, YPROV_SAMPLE_INTERVAL_S="0.5")
    args = ("--nodes=2", "--ntasks-per-node=2", "--time=2", "--signal=B:TERM@60")
    job = sbatch(slurm_conf, cwd, [PYTHON, str(cwd / "limited.py"), str(cwd)], env, args)
    return _after_merge_job(slurm_conf, job, cwd)


def _done(job: EndedJob, rank: int) -> tuple[int, int, int]:
    steps, warned_ns, end_ns = (int(x) for x in (job.cwd / f"done{rank}.txt").read_text().split()[:3])
    return steps, warned_ns, end_ns


def _signals(job: EndedJob, rank: int) -> int:
    """How many times the rank got its warning signal."""
    return int((job.cwd / f"done{rank}.txt").read_text().split()[3])


def test_time_limit_warning_reaches_the_ranks(time_limited_job: EndedJob) -> None:
    """The batch shell's warning is passed on: every rank got SIGTERM and finished by itself.
    (Here slurmstepd delivers the one step signal the script sends twice, 4 ms apart: see
    docs/slurm.md. At most twice.)"""
    for rank in range(4):
        steps, warned_ns, end_ns = _done(time_limited_job, rank)
        assert end_ns - warned_ns >= 3_000_000_000 and steps > 0
        assert 1 <= _signals(time_limited_job, rank) <= 2


def test_time_limit_keeps_what_the_ranks_logged_after_the_warning(time_limited_job: EndedJob) -> None:
    """Each rank's document holds every point, the ones logged after the warning included."""
    for rank in range(4):
        doc = load(time_limited_job.run_dir / f"prov_limited_rank{rank}.json")
        loss = entity(doc, f"run:rank{rank}.metric.loss.training")
        assert loss["yprov:count"] == _done(time_limited_job, rank)[0]


def test_time_limit_keeps_node_telemetry_to_the_end_of_training(time_limited_job: EndedJob) -> None:
    """The sidecars sample until the training step has ended, not only until the warning."""
    coll = load(time_limited_job.run_dir / "prov_limited_collection.json")
    for node, ranks in (("node1", (0, 1)), ("node2", (2, 3))):
        series = time_limited_job.run_dir / literal(coll["entity"][f"run:node.{node}"]["yprov:series_path"])
        last_sample_ns = max(pq.read_table(series, columns=["ts_ns"]).column("ts_ns").to_pylist())
        last_end_ns = max(_done(time_limited_job, r)[2] for r in ranks)
        assert last_sample_ns >= last_end_ns - 1_500_000_000, (
            f"{node}: samples end {last_end_ns - last_sample_ns} ns early"
        )


def test_time_limit_records_time_limit(slurm_conf: str, time_limited_job: EndedJob) -> None:
    """journal/job.end says time_limit; the training exited 0 in time, so Slurm says COMPLETED."""
    end = job_end(time_limited_job.run_dir)
    assert (end["cause"], end["exit_code"]) == ("time_limit", 0)
    assert job_info(slurm_conf, time_limited_job.job)["JobState"] == "COMPLETED"


@pytest.fixture(scope="module")
def shell_killed_job(slurm_conf: str, tmp_path_factory: pytest.TempPathFactory) -> EndedJob:
    """A 4-rank job whose batch shell alone is killed (``scancel -b``: SIGKILL on Slurm 22.05,
    so no trap runs) once every rank logged 200 points; Slurm then ends the steps."""
    cwd = tmp_path_factory.mktemp("shell_killed")
    (cwd / "forever.py").write_text(UNTIL_CANCELLED)
    job = sbatch(slurm_conf, cwd, [PYTHON, str(cwd / "forever.py"), str(cwd)])
    wait_for("200 points on every rank", lambda: all(progress(cwd, r) >= 200 for r in range(4)), 120)
    subprocess.run(["scancel", "-b", str(job)], env=slurm_env(slurm_conf), check=True)
    return _after_merge_job(slurm_conf, job, cwd)


def test_a_killed_batch_shell_has_its_end_recorded_by_the_merge_job(
    slurm_conf: str, shell_killed_job: EndedJob
) -> None:
    """The shell could not write journal/job.end; the merge job records the cause from Slurm's
    job state, says so in its log, and the ranks keep every point they logged."""
    job = shell_killed_job
    end = job_end(job.run_dir)
    state = job_info(slurm_conf, job.job)["JobState"]
    assert (end["recorded_by"], end["slurm_state"]) == ("merge job", state), end
    assert end["cause"] == {"FAILED": "failed", "CANCELLED": "cancelled"}[state]
    merge_log = (job.cwd / f"yprov-merge-{job.job}.out").read_text()
    assert f"ended without recording how (its batch shell was killed); Slurm says {state}" in merge_log
    for rank in range(4):
        logged = int((job.cwd / f"logged{rank}.txt").read_text())
        doc = load(job.run_dir / f"prov_forever_rank{rank}.json")
        assert entity(doc, f"run:rank{rank}.metric.loss.training")["yprov:count"] >= logged >= 200


# On SIGTERM node1's ranks (0, 1) end at once; node2's (2, 3) log on for 3 s (a checkpoint, say)
_UNEVEN_END = _warned("SIGTERM", "uneven", "3_000_000_000 if run.rank >= 2 else 0")


@pytest.fixture(scope="module")
def steps_terminated_job(slurm_conf: str, tmp_path_factory: pytest.TempPathFactory) -> EndedJob:
    """A 4-rank job whose steps, not its batch shell, get SIGTERM once every rank logged 200
    points (``scancel --signal=TERM <job>``; ``--signal=TERM@N`` without ``B:`` does the same
    at the warning), node2's ranks logging on for 3 s after it."""
    cwd = tmp_path_factory.mktemp("steps_term")
    (cwd / "uneven.py").write_text(_UNEVEN_END)
    env = slurm_env(slurm_conf, YPROV_SAMPLE_INTERVAL_S="0.5")
    job = sbatch(slurm_conf, cwd, [PYTHON, str(cwd / "uneven.py"), str(cwd)], env)
    wait_for("200 points on every rank", lambda: all(progress(cwd, r) >= 200 for r in range(4)), 120)
    subprocess.run(["scancel", "--signal=TERM", str(job)], env=slurm_env(slurm_conf), check=True)
    wait_gone(slurm_conf, job)
    return EndedJob(job, cwd, (cwd / "job.out").read_text(), run_dir_of(cwd))


def test_sigterm_to_the_steps_only_is_recorded_as_cancelled(steps_terminated_job: EndedJob) -> None:
    """The batch shell saw no signal, but the sidecars did: job.end says cancelled, at the
    signal, with the training's exit code; the script merged once; the log is clean."""
    job, log = steps_terminated_job, steps_terminated_job.log
    end = job_end(job.run_dir)
    assert (end["cause"], end["exit_code"]) == ("cancelled", 0), end
    first_term = min(_done(job, r)[1] for r in range(4))
    assert abs(end["ts_ns"] - first_term) < 2_000_000_000
    assert "the steps got SIGTERM: cancelled" in log and "merged 4 rank(s)" in log, log[-3000:]
    slurms_own = re.compile(r"^slurmstepd-node\d: error: \*\*\* STEP \d+\.\d ON node\d CANCELLED AT ")
    assert [line for line in alarming_lines(log) if not slurms_own.match(line)] == [], log[-3000:]


def test_sigterm_to_the_steps_keeps_every_point_and_the_forwarded_copies(
    steps_terminated_job: EndedJob,
) -> None:
    """node2's ranks log for 3 s after the signal: their sidecar serves them, the aggregator
    on node1 serves on (its own ranks are done) and acks every copy node2 forwards; nothing is
    spilled, every point is in the documents, and node1's telemetry has no gap."""
    job = steps_terminated_job
    assert "0 unacked at stop" in job.log, job.log[-3000:]
    for rank in range(4):
        assert 1 <= _signals(job, rank) <= 2
        doc = load(job.run_dir / f"prov_uneven_rank{rank}.json")
        act = {k: literal(v) for k, v in doc["activity"][f"run:rank{rank}"].items()}
        assert (act["yprov:events_spilled"], act["yprov:status"]) == (0, "finished")
        assert entity(doc, f"run:rank{rank}.metric.loss.training")["yprov:count"] == _done(job, rank)[0]
    report = json.loads((job.run_dir / "merge_report.json").read_text())
    assert not [g for g in report["telemetry_gaps"] if g["node"] == "node1"], report["telemetry_gaps"]


# Handles SIGUSR1 as Lightning's requeue support does (here: logs on for 1 s, then ends its run)
_WARNED_BY_USR1 = _warned("SIGUSR1", "usr1", "1_000_000_000")


@pytest.fixture(scope="module")
def usr1_warned_job(slurm_conf: str, tmp_path_factory: pytest.TempPathFactory) -> EndedJob:
    """A 4-rank job whose steps all get SIGUSR1 once every rank logged 200 points: what
    ``--signal=USR1@N`` without ``B:`` does at the warning (``scancel --signal=USR1 <job>``
    takes the same path: every step's tasks, the sidecars' included, not the batch shell)."""
    cwd = tmp_path_factory.mktemp("usr1")
    (cwd / "usr1.py").write_text(_WARNED_BY_USR1)
    job = sbatch(slurm_conf, cwd, [PYTHON, str(cwd / "usr1.py"), str(cwd)])
    wait_for("200 points on every rank", lambda: all(progress(cwd, r) >= 200 for r in range(4)), 120)
    subprocess.run(["scancel", "--signal=USR1", str(job)], env=slurm_env(slurm_conf), check=True)
    wait_gone(slurm_conf, job)
    return EndedJob(job, cwd, (cwd / "job.out").read_text(), run_dir_of(cwd))


def test_usr1_warning_to_every_step_leaves_the_sidecars_serving(
    slurm_conf: str, usr1_warned_job: EndedJob
) -> None:
    """Both sidecars log the warning and serve on; the job ends normally, merged once, with
    every point of every rank, the ones after the warning included, and a clean log."""
    job, log = usr1_warned_job, usr1_warned_job.log
    assert log.count("signal SIGUSR1: not a stop") == 2, log[-3000:]
    assert log.count("yprov-sidecar INFO stopped:") == 2 and "0 unacked at stop" in log, log[-3000:]
    assert alarming_lines(log) == [] and "merged 4 rank(s)" in log, log[-3000:]
    assert job_info(slurm_conf, job.job)["JobState"] == "COMPLETED"
    for rank in range(4):
        steps, warned_ns, end_ns = _done(job, rank)
        assert end_ns - warned_ns >= 1_000_000_000
        doc = load(job.run_dir / f"prov_usr1_rank{rank}.json")
        act = {k: literal(v) for k, v in doc["activity"][f"run:rank{rank}"].items()}
        assert act["yprov:events_spilled"] == 0 and act["yprov:status"] == "finished"
        assert entity(doc, f"run:rank{rank}.metric.loss.training")["yprov:count"] == steps


_STEPS = """
import os, sys, time, yprov_hpc as prov4ml
run = prov4ml.start_run("www.example.org", "steps")
for step in range(int(sys.argv[2])):
    prov4ml.log_metric("loss", float(step), prov4ml.Context.TRAINING, step)
    if step == 300:
        open(os.path.join(sys.argv[1], f"half{run.rank}"), "w").close()
    time.sleep(0.003)
prov4ml.end_run()
"""


@pytest.fixture(scope="module")
def sidecar_killed_job(slurm_conf: str, tmp_path_factory: pytest.TempPathFactory) -> EndedJob:
    """A 4-rank job whose node2 sidecar gets kill -9 once every rank logged 300 points."""
    cwd = tmp_path_factory.mktemp("sidecar_killed")
    (cwd / "steps.py").write_text(_STEPS)
    job = sbatch(slurm_conf, cwd, [PYTHON, str(cwd / "steps.py"), str(cwd), "1500"])
    wait_for("300 points on every rank", lambda: all((cwd / f"half{r}").exists() for r in range(4)), 120)
    ready = json.loads((run_dir_of(cwd) / "journal" / "sidecar-node2.json").read_text())
    os.kill(ready["pid"], signal.SIGKILL)
    (cwd / "killed_at.txt").write_text(str(time.time_ns()))
    wait_gone(slurm_conf, job)
    return EndedJob(job, cwd, (cwd / "job.out").read_text(), run_dir_of(cwd))


def test_kill_9_of_one_nodes_sidecar_loses_nothing(sidecar_killed_job: EndedJob) -> None:
    """kill -9 of node2's sidecar mid-job: its ranks spill, and the merge still has every event."""
    for rank in range(4):
        doc = load(sidecar_killed_job.run_dir / f"prov_steps_rank{rank}.json")
        assert entity(doc, f"run:rank{rank}.metric.loss.training")["yprov:count"] == 1500
        act = {k: literal(v) for k, v in doc["activity"][f"run:rank{rank}"].items()}
        assert act["yprov:events_missing"] == 0
        assert (act["yprov:events_spilled"] > 0) == (rank >= 2), (
            f"rank {rank} spilled {act['yprov:events_spilled']}"
        )


def test_killed_sidecar_is_reported_as_a_telemetry_gap(sidecar_killed_job: EndedJob) -> None:
    """merge_report.json names a gap in node2's telemetry that spans the kill of its sidecar."""
    report = json.loads((sidecar_killed_job.run_dir / "merge_report.json").read_text())
    killed_ns = int((sidecar_killed_job.cwd / "killed_at.txt").read_text())
    spans = [
        g
        for g in report["telemetry_gaps"]
        if g["node"] == "node2"
        and g["from_ts_ns"] <= killed_ns + 2_000_000_000
        and g["to_ts_ns"] >= killed_ns
    ]
    assert spans and all(g["from_ts_ns"] < g["to_ts_ns"] and g["reason"] for g in spans), report[
        "telemetry_gaps"
    ]


def test_the_merge_job_splits_the_merge_into_node_parts(cancelled_job: EndedJob) -> None:
    """The merge job folds the ranks in node parts on its own nodes; its join takes all four."""
    merge_log = (cancelled_job.cwd / f"yprov-merge-{cancelled_job.job}.out").read_text()
    assert re.search(r"^part node1( node2)?: folded", merge_log, re.M), merge_log
    assert "joined: 4 rank(s) from the nodes' parts" in merge_log, merge_log
