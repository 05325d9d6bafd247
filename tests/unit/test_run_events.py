"""The events the Run emits are exactly the schema's records: the hot path's literal tuple and
every other verb's event decode to their record, field by field."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

import yprov_hpc as prov4ml
from tests.conftest import start
from yprov_hpc.core.context import MAX_CONTEXT_CHARS
from yprov_hpc.wire import records
from yprov_hpc.wire.codec import decode_body, decode_header
from yprov_hpc.wire.journal import read_frames


def _quiet_run(save_dir: Path, monkeypatch: pytest.MonkeyPatch) -> prov4ml.Run:
    """A run whose sender ships the start events and then leaves new events in the buffer."""
    monkeypatch.setenv("YPROV_FLUSH_INTERVAL_S", "1000")
    monkeypatch.setenv("YPROV_BATCH_EVENTS", "1000000")
    run = start(save_dir, sidecar="off")
    deadline = time.monotonic() + 10
    while run._sender.stats.events < 2:  # RUN_START and HELLO shipped; the buffer is ours now
        assert time.monotonic() < deadline
        time.sleep(0.01)
    time.sleep(0.05)  # the environment event follows the first send
    return run


def test_the_hot_path_tuple_is_the_metric_record(save_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """log_metric's literal tuple has Metric's fields, in Metric's order, and decodes to a Metric."""
    run = _quiet_run(save_dir, monkeypatch)
    run.log_metric("loss", 0.5, prov4ml.Context.TRAINING, 7)
    event = run._buffer[-1]
    assert len(event) == len(records.Metric._fields)
    metric = records.Metric(*event)
    assert (metric.kind, metric.key, metric.value, metric.context, metric.step) == (
        records.Kind.METRIC,
        "loss",
        0.5,
        "training",
        7,
    )
    assert records.decode_event(list(event)) == metric


def _spooled(run_dir: Path) -> list[list[Any]]:
    events: list[list[Any]] = []
    for spool in sorted((run_dir / "journal").glob("spool-*.journal")):
        for _offset, header, body in read_frames(spool):
            events.extend(decode_body(body, decode_header(header)))
    return events


def test_every_event_the_run_emits_decodes_to_its_record(save_dir: Path, tmp_path: Path) -> None:
    """Each verb's event (params, marks, artifacts, versions, start, hello, environment, end, bye)
    passes the schema's decoder and carries its values under the record's field names."""
    art = tmp_path / "a.txt"
    art.write_text("content")
    run = start(save_dir, sidecar="off", auto_merge=False)
    run.log_param("lr", 0.1)
    run.log_metric("loss", 1.0, "my ctx/é", 2**63 - 1)
    run.log_current_execution_time("epoch", prov4ml.Context.TRAINING, 1)
    run.log_system_metrics(prov4ml.Context.TRAINING, 2)
    run.log_artifact(art, step=3)
    run.record_model_version_file(art, "ckpt", prov4ml.Context.TRAINING, 4)
    run.end_run()
    decoded = {type(r).__name__: r for r in map(records.decode_event, _spooled(run.run_dir))}
    assert set(decoded) >= {"RunStart", "Hello", "Environment", "Param", "Metric", "ExecTime", "Mark"}
    assert set(decoded) >= {"Artifact", "ModelVersion", "RunEnd", "Bye"}
    assert (decoded["Param"].key, decoded["Param"].value) == ("lr", 0.1)
    assert (decoded["Metric"].context, decoded["Metric"].step) == ("my ctx/é", 2**63 - 1)
    assert (decoded["ExecTime"].label, decoded["ExecTime"].step) == ("epoch", 1)
    assert (decoded["Mark"].what, decoded["Mark"].step) == ("system", 2)
    assert (decoded["Artifact"].step, decoded["Artifact"].info["size_bytes"]) == (3, 7)
    assert (decoded["ModelVersion"].name, decoded["ModelVersion"].step) == ("ckpt", 4)
    assert decoded["RunStart"].info["run_id"] == run.run_id and decoded["RunEnd"].status == "finished"


def test_context_bound_is_the_schema_name_bound() -> None:
    """A Context is bounded exactly like every name in the event schema."""
    assert MAX_CONTEXT_CHARS == records.MAX_NAME_CHARS
