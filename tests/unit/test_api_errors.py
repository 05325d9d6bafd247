"""Misuse raises a clear typed error at once, naming what was wrong; odd values are kept faithfully."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

import yprov_hpc as prov4ml
from tests.conftest import entity, load, start
from yprov_hpc import api


def test_calls_before_start_run_raise_no_active_run() -> None:
    """Every verb of the strict API (yprov_hpc.api) refuses to run before start_run, naming itself
    (the top-level yProv4ML names hold some calls for the first run instead: tests/compat)."""
    for call, args in [
        (api.log_metric, ("loss", 1.0)),
        (api.log_param, ("lr", 1)),
        (api.log_artifact, ("x",)),
        (api.log_system_metrics, ()),
        (api.log_current_execution_time, ("t",)),
        (api.end_run, ()),
    ]:
        with pytest.raises(prov4ml.NoActiveRunError, match=call.__name__):
            call(*args)  # type: ignore[operator]


def test_calls_after_end_run_say_the_run_has_ended(save_dir: Path) -> None:
    """After end_run, logging raises NoActiveRunError saying the run ended."""
    start(save_dir, sidecar="off")
    prov4ml.end_run()
    with pytest.raises(prov4ml.NoActiveRunError, match="has ended"):
        prov4ml.log_metric("loss", 1.0)


def test_run_object_refuses_logging_after_its_end(save_dir: Path) -> None:
    """A Run used directly refuses to log after end_run."""
    run = start(save_dir, sidecar="off")
    run.end_run()
    with pytest.raises(prov4ml.NoActiveRunError):
        run.log_metric("loss", 1.0)


def test_second_start_run_while_active_is_refused(save_dir: Path) -> None:
    """Two active runs in one process would mix their events: refused with the first's directory."""
    run = start(save_dir, sidecar="off")
    with pytest.raises(prov4ml.RunAlreadyActiveError, match=str(run.run_dir)):
        start(save_dir, sidecar="off")


def test_reusing_a_finished_run_id_is_refused(save_dir: Path) -> None:
    """A run id whose run directory already holds a finished run cannot be started again."""
    start(save_dir, sidecar="off", run_id="fixed")
    prov4ml.end_run()
    with pytest.raises(prov4ml.ConfigError, match="already holds a finished run"):
        start(save_dir, sidecar="off", run_id="fixed")


def test_param_conflict_names_key_and_both_values(save_dir: Path) -> None:
    """In the strict API, the same param with another value raises ParamConflictError carrying
    key, old and new (the yProv4ML names record a revision instead: tests/compat)."""
    start(save_dir, sidecar="off")
    api.log_param("lr", 0.1)
    api.log_param("lr", 0.1)  # same value: fine
    with pytest.raises(prov4ml.ParamConflictError) as info:
        api.log_param("lr", 0.2)
    assert (info.value.key, info.value.old, info.value.new) == ("lr", 0.1, 0.2)
    assert "lr" in str(info.value) and "0.2" in str(info.value)


@pytest.mark.parametrize("bad", ["1.0", None, 1 + 2j, [1.0], b"1", object()])
def test_non_real_metric_values_raise_metric_value_error(save_dir: Path, bad: object) -> None:
    """In the strict API a metric value that is not a real number raises MetricValueError with
    key and value (the yProv4ML names take None as NaN and a list as points: tests/compat)."""
    start(save_dir, sidecar="off")
    with pytest.raises(prov4ml.MetricValueError) as info:
        api.log_metric("loss", bad)  # type: ignore[arg-type]
    assert info.value.key == "loss" and info.value.value is bad


@pytest.mark.parametrize("bad_key", ["", None, 3, b"loss"])
def test_bad_keys_raise_invalid_key_error(save_dir: Path, bad_key: object) -> None:
    """Keys must be non-empty strings."""
    start(save_dir, sidecar="off")
    with pytest.raises(prov4ml.InvalidKeyError):
        prov4ml.log_metric(bad_key, 1.0)  # type: ignore[arg-type]
    with pytest.raises(prov4ml.InvalidKeyError):
        prov4ml.log_param(bad_key, 1.0)  # type: ignore[arg-type]


def test_bad_step_and_context_raise_invalid_argument(save_dir: Path) -> None:
    """A non-integer step or a non-string context is refused by name."""
    start(save_dir, sidecar="off")
    with pytest.raises(prov4ml.InvalidArgumentError, match="step"):
        prov4ml.log_metric("loss", 1.0, step=1.5)  # type: ignore[arg-type]
    with pytest.raises(prov4ml.InvalidArgumentError, match="context"):
        prov4ml.log_metric("loss", 1.0, context=3)  # type: ignore[arg-type]


def test_missing_artifact_raises_artifact_not_found(save_dir: Path, tmp_path: Path) -> None:
    """An artifact path that does not exist raises ArtifactNotFoundError (a FileNotFoundError)."""
    start(save_dir, sidecar="off")
    missing = tmp_path / "nope.bin"
    with pytest.raises(FileNotFoundError) as info:
        prov4ml.log_artifact(missing)
    assert isinstance(info.value, prov4ml.ArtifactNotFoundError) and str(missing) in str(info.value)


class _Transform:
    def __repr__(self) -> str:
        return "Compose([RandomRotation(10), ToTensor()])"


def test_values_are_kept_faithfully(save_dir: Path) -> None:
    """NaN/inf metrics are recorded; object params keep repr and type; numpy-like scalars are accepted."""
    run = start(save_dir, sidecar="off")
    prov4ml.log_param("transform", _Transform())
    prov4ml.log_param("layers", [64, 32])
    prov4ml.log_param("path", Path("/data/x"))
    prov4ml.log_metric("loss", math.nan, prov4ml.Context.TRAINING, 0)
    prov4ml.log_metric("loss", math.inf, prov4ml.Context.TRAINING, 1)
    prov4ml.log_metric("loss", True, prov4ml.Context.TRAINING, 2)
    prov4ml.log_metric("loss", 7, prov4ml.Context.TRAINING, 3)
    report = prov4ml.end_run()
    assert report.merged
    doc = load(report.documents[0])
    t = entity(doc, "run:rank0.param.transform")
    assert t["prov:value"] == "Compose([RandomRotation(10), ToTensor()])"
    assert t["yprov:python_type"].endswith("_Transform")
    assert entity(doc, "run:rank0.param.layers")["prov:value"] == "[64,32]"
    assert entity(doc, "run:rank0.param.path")["yprov:python_type"].endswith("PosixPath")
    loss = entity(doc, "run:rank0.metric.loss.training")
    assert loss["yprov:count"] == 4 and loss["yprov:nan_count"] == 1
    assert loss["yprov:max"] == math.inf and loss["yprov:min"] == 1.0 and loss["yprov:last"] == 7.0
    assert (loss["yprov:first_step"], loss["yprov:last_step"]) == (0, 3)
    assert run.run_dir == report.run_dir


def test_a_full_buffer_spills_instead_of_growing(save_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Past YPROV_MAX_BUFFER_EVENTS the logging call spills the buffer itself; nothing is lost."""
    monkeypatch.setenv("YPROV_MAX_BUFFER_EVENTS", "50")
    monkeypatch.setenv("YPROV_FLUSH_INTERVAL_S", "1000")  # the sender would not ship in time
    monkeypatch.setenv("YPROV_BATCH_EVENTS", "1000000")
    start(save_dir, sidecar="off")
    for i in range(5000):
        prov4ml.log_metric("loss", float(i), step=i)
    report = prov4ml.end_run()
    assert report.delivery.buffer_overflows > 0
    assert entity(load(report.documents[0]), "run:rank0.metric.loss.run")["yprov:count"] == 5000
