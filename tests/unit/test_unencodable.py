"""An event msgpack cannot pack (a lone surrogate that slipped into an info dict) is isolated:
the events around it are packed and delivered, it is counted as lost and reported, and the
sender thread lives on."""

from __future__ import annotations

import time
from collections import deque
from pathlib import Path

import pytest

import yprov_hpc as prov4ml
from tests.conftest import start
from yprov_hpc.rank.batching import BufferBound, Cutter
from yprov_hpc.wire.blocks import expand
from yprov_hpc.wire.codec import decode_body, decode_header
from yprov_hpc.wire.records import Kind


def _bad_artifact() -> tuple[object, ...]:
    return (int(Kind.ARTIFACT), time.time_ns(), "a.txt", None, None, {"source": "bad\udcff.txt"})


def test_the_cutter_isolates_an_event_it_cannot_encode() -> None:
    """Of 41 events with one unencodable, 40 are packed in sequence and one is counted."""
    good = [(int(Kind.METRIC), time.time_ns(), "m", float(i), None, i) for i in range(40)]
    buffer: deque[tuple[object, ...]] = deque([*good[:20], _bad_artifact(), *good[20:]])
    cutter = Cutter("r", 0, "n", 1, 1024, BufferBound(1 << 20))
    fits, oversized = cutter.cut(buffer, 41)
    assert not buffer and not oversized and cutter.unencodable == 1
    events = [e for p in fits for e in expand(decode_body(p.body, decode_header(p.header)))]
    assert [e[3] for e in events] == [float(i) for i in range(40)]
    assert [p.seq_start for p in fits] == sorted(p.seq_start for p in fits) and cutter.next_seq == 40


def test_a_run_with_an_unencodable_event_reports_it_and_keeps_the_rest(
    save_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The run finishes, events_lost says 1, the log names the cause, every metric is merged."""
    run = start(save_dir, "unencodable")
    for i in range(100):
        prov4ml.log_metric("m", float(i), step=i)
    run.emit(_bad_artifact())
    for i in range(100, 200):
        prov4ml.log_metric("m", float(i), step=i)
    report = prov4ml.end_run()
    import pyarrow.parquet as pq

    assert report.status == "finished" and report.delivery.events_lost == 1
    assert pq.read_table(run.run_dir / "metrics" / "rank0.parquet").num_rows == 200
    assert any("could not be encoded" in r.getMessage() for r in caplog.records)
    assert any("1 events could not be kept" in p for p in report.problems)
