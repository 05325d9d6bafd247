"""Settings: explicit > YPROV_* > defaults, checked when the run starts."""

from __future__ import annotations

from pathlib import Path

import pytest

from yprov_hpc.core.config import ENV_BATCH_EVENTS, ENV_HANDLE_SIGTERM, ENV_SAVE_DIR, resolve
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
