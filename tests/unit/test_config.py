"""Settings: explicit > YPROV_* > defaults, every variable checked when the run starts."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

import yprov_hpc as prov4ml
from tests.conftest import start
from yprov_hpc.core.config import (
    ENV_BATCH_EVENTS,
    ENV_HANDLE_SIGTERM,
    ENV_SAVE_DIR,
    check_environment,
    resolve,
)
from yprov_hpc.core.errors import ConfigError


def test_precedence() -> None:
    """An explicit argument beats the environment, which beats the default."""
    env = {ENV_SAVE_DIR: "/from/env", ENV_BATCH_EVENTS: "7"}
    cfg = resolve({"namespace": "ns", "save_dir": "/explicit"}, env)
    assert cfg.save_dir == Path("/explicit") and cfg.batch_events == 7
    assert resolve({"namespace": "ns"}, {}).batch_events == 100


def test_bad_environment_value_names_the_variable() -> None:
    """A YPROV_* variable with an unusable value raises ConfigError naming it."""
    with pytest.raises(ConfigError, match=ENV_BATCH_EVENTS):
        resolve({"namespace": "ns"}, {ENV_BATCH_EVENTS: "many"})
    with pytest.raises(ConfigError, match=ENV_HANDLE_SIGTERM):
        resolve({"namespace": "ns"}, {ENV_HANDLE_SIGTERM: "perhaps"})


def test_namespace_required_and_values_checked() -> None:
    """No namespace, a path-like experiment name or a zero batch size are refused."""
    with pytest.raises(ConfigError, match="prov_user_namespace"):
        resolve({}, {})
    with pytest.raises(ConfigError, match="experiment_name"):
        resolve({"namespace": "ns", "experiment": "a/b"}, {})
    with pytest.raises(ConfigError, match="batch_events"):
        resolve({"namespace": "ns", "batch_events": 0}, {})


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("YPROV_BATCH_EVENTS", "abc"),
        ("YPROV_SIDECAR", "bogus"),
        ("YPROV_RUN_ID", "bad/id"),
        ("YPROV_CARBON_INTENSITY", "abc"),
        ("YPROV_CPU_TDP_W", "-5"),
        ("YPROV_CPU_TDP_W", "lots"),
        ("YPROV_SAMPLE_INTERVAL_S", "0.05"),
        ("YPROV_SAMPLERS", "foo"),
        ("YPROV_SAMPLERS", "system,gpu"),
        ("YPROV_MERGE", "sometimes"),
        ("YPROV_MERGE_WAIT_S", "-1"),
        ("YPROV_FLUSH_INTERVAL_S", "nan"),
        ("YPROV_CARBON_REGION", "France"),
        ("YPROV_NVML_MODULE", "py nvml"),
        ("YPROV_AGGREGATE", "udp://host:1"),
        ("YPROV_AUTO_MERGE", "maybe"),
        ("YPROV_AGGREGATOR_PORT", "70000"),
        ("YPROV_SIDECAR_ON_SIGTERM", "later"),
    ],
)
def test_every_variable_is_checked_and_named(name: str, value: str) -> None:
    """A bad value of any variable the library reads raises ConfigError with the variable and value."""
    with pytest.raises(ConfigError) as info:
        check_environment({name: value})
    assert (info.value.name, info.value.value) == (name, value)
    assert name in str(info.value) and repr(value) in str(info.value)


def test_good_values_parse_to_their_types() -> None:
    """Valid values of the sidecar's and the merge's variables are accepted and parsed."""
    parsed = check_environment(
        {
            "YPROV_SAMPLERS": "system, nvml",
            "YPROV_SAMPLE_INTERVAL_S": "0.5",
            "YPROV_SIDECAR": "tcp://node1:5555",
            "YPROV_CARBON_REGION": "fra",
            "YPROV_RUN_ID": "slurm12.0-r2",
            "YPROV_OTHER_SCRIPT_VARIABLE": "anything",
        }
    )
    assert parsed["YPROV_SAMPLERS"] == ("system", "nvml") and parsed["YPROV_SAMPLE_INTERVAL_S"] == 0.5
    assert check_environment({"YPROV_SAMPLERS": "none"})["YPROV_SAMPLERS"] == ()
    assert "YPROV_OTHER_SCRIPT_VARIABLE" not in parsed


def test_start_run_checks_the_sidecars_variables_too(save_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A variable only the sidecar reads is checked when start_run starts, before any sidecar."""
    monkeypatch.setenv("YPROV_SAMPLERS", "foo")
    with pytest.raises(prov4ml.ConfigError, match="YPROV_SAMPLERS"):
        start(save_dir)
    assert not save_dir.exists()


def test_bad_arguments_are_refused_by_name() -> None:
    """Arguments get the variables' checks, named by the argument."""
    with pytest.raises(ConfigError, match="setting sidecar='bogus'"):
        resolve({"namespace": "ns", "sidecar": "bogus"}, {})
    with pytest.raises(ConfigError, match="setting run_id='a/b'"):
        resolve({"namespace": "ns", "run_id": "a/b"}, {})


def test_batch_events_variable_is_honoured_unless_the_argument_is_given(
    save_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """YPROV_BATCH_EVENTS sets save_after_n_logs when start_run is not given one."""
    monkeypatch.setenv("YPROV_BATCH_EVENTS", "7")
    assert start(save_dir, sidecar="off").config.batch_events == 7
    prov4ml.end_run()
    assert start(save_dir, sidecar="off", save_after_n_logs=3).config.batch_events == 3


@pytest.mark.parametrize(
    ("explicit", "env", "mode"),
    [
        ({"auto_merge": False}, {"YPROV_MERGE": "job"}, "off"),
        ({"merge": "auto"}, {"YPROV_MERGE": "job"}, "auto"),
        ({}, {"YPROV_AUTO_MERGE": "0"}, "off"),
        ({}, {"YPROV_MERGE": "job", "YPROV_AUTO_MERGE": "0"}, "job"),
        ({"auto_merge": True}, {"YPROV_MERGE": "job"}, "job"),
        ({}, {}, "auto"),
    ],
)
def test_merge_mode_precedence(explicit: dict[str, object], env: dict[str, str], mode: str) -> None:
    """merge= > auto_merge=False > YPROV_MERGE > YPROV_AUTO_MERGE=0 > "auto"."""
    assert resolve({"namespace": "ns", **explicit}, env).merge == mode


def test_sidecar_off_does_not_warn_about_the_spool(save_dir: Path, caplog: pytest.LogCaptureFixture) -> None:
    """With the documented YPROV_SIDECAR=off, spooled events are expected: no problem, no warning."""
    start(save_dir, sidecar="off")
    prov4ml.log_metric("loss", 1.0)
    with caplog.at_level(logging.WARNING, logger="yprov_hpc"):
        report = prov4ml.end_run()
    assert report.delivery.events_spilled > 0 and report.merged
    assert report.problems == [] and not [r for r in caplog.records if "spool" in r.getMessage()]
