"""Delivery under load with real sidecars: a slow or paused sidecar gets no spill and few copies."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import msgpack
import pytest

import yprov_hpc as prov4ml
from tests.conftest import PYTHON, python_env, run_dirs, start
from yprov_hpc.wire.codec import decode_header
from yprov_hpc.wire.journal import read_frames


def copies_and_events(journal_dir: Path) -> tuple[float, dict[int, int]]:
    """(bytes of every rank batch in journals and spools / bytes of one copy, unique events per rank)."""
    seen: set[tuple[int, int, int]] = set()
    total = unique = 0
    events: dict[int, int] = {}
    for path in journal_dir.glob("*.journal"):
        for _, header, body in read_frames(path):
            h = decode_header(header)
            if h.rank < 0:
                continue
            total += len(header) + len(body)
            if (h.rank, h.stream, h.seq_start) not in seen:
                seen.add((h.rank, h.stream, h.seq_start))
                unique += len(header) + len(body)
                events[h.rank] = events.get(h.rank, 0) + h.n_events
    return total / max(1, unique), events


def spooled_kinds(journal_dir: Path) -> list[tuple[str, list[int]]]:
    """The event kinds in each spool: what went there, for a failure message."""
    return [
        (path.name, [event[0] for _, _, body in read_frames(path) for event in msgpack.unpackb(body)])
        for path in journal_dir.glob("spool-*")
    ]


def _sidecar_pid(run_dir: Path) -> int:
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        for ready in run_dir.glob("journal/sidecar-*.json"):
            return int(json.loads(ready.read_text())["pid"])
        time.sleep(0.01)
    raise AssertionError("no sidecar started")


def test_a_briefly_paused_sidecar_gets_no_spill_and_few_copies(
    save_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A sidecar frozen for 3x ack_timeout_s, then resumed: nothing is spilled, and the journal
    holds each event about once (a probe resend at most)."""
    monkeypatch.setenv("YPROV_ACK_TIMEOUT_S", "0.5")
    run = start(save_dir, "paused", auto_merge=False)
    for i in range(2000):
        prov4ml.log_metric("loss", float(i), step=i)
    deadline = time.monotonic() + 10
    while run._sender.stats.batches_acked < 1:  # test reads the counter it waits on
        assert time.monotonic() < deadline
        time.sleep(0.01)
    pid = _sidecar_pid(run.run_dir)
    os.kill(pid, signal.SIGSTOP)
    try:
        for i in range(2000, 20_000):
            prov4ml.log_metric("loss", float(i), step=i)
            if i % 1000 == 0:
                time.sleep(0.08)  # batches go out to the frozen sidecar over 1.5 s
    finally:
        os.kill(pid, signal.SIGCONT)
    report = prov4ml.end_run()
    copies, events = copies_and_events(run.run_dir / "journal")
    assert report.delivery.events_spilled == 0 and not report.delivery.sidecar_lost
    assert events[0] == report.delivery.events and copies <= 1.2


_RANK = """
import json, sys, yprov_hpc as prov4ml
rank = int(sys.argv[2])
prov4ml.start_run("www.example.org", "load", sys.argv[1], rank=rank, world_size=4, run_id="load1",
                  handle_sigterm=False, auto_merge=False)
for i in range(50_000):
    prov4ml.log_metric("loss", 0.5, prov4ml.Context.TRAINING, i)
print(json.dumps(prov4ml.end_run().delivery.as_dict()))
"""


def test_four_ranks_logging_flat_out_deliver_every_event_once(tmp_path: Path) -> None:
    """Four rank processes logging as fast as they can through one sidecar, on a machine they
    saturate: nothing lost, at most 1 % spilled, the journal holds about one copy."""
    script = tmp_path / "rank.py"
    script.write_text(_RANK)
    save = tmp_path / "prov"
    procs = [
        subprocess.Popen(
            [PYTHON, str(script), str(save), str(r)], env=python_env(), stdout=subprocess.PIPE, text=True
        )
        for r in range(4)
    ]
    stats = [json.loads(p.communicate(timeout=120)[0].strip().splitlines()[-1]) for p in procs]
    (run_dir,) = run_dirs(save)
    copies, events = copies_and_events(run_dir / "journal")
    assert sum(s["events_lost"] for s in stats) == 0
    spilled = sum(s["events_spilled"] for s in stats)
    assert spilled <= 0.01 * sum(s["events"] for s in stats), spooled_kinds(run_dir / "journal")
    assert [events[r] for r in range(4)] == [s["events"] for s in stats] and copies <= 1.2
