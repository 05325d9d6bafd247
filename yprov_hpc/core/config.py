"""Settings: one frozen dataclass, resolved when a run starts (never at import).

Precedence: explicit arguments > ``YPROV_*`` environment variables > defaults.
Every environment variable the library reads is a constant in this module.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from yprov_hpc.core.errors import ConfigError

# --- environment variables (documented in docs/configuration.md) ---------------------------
ENV_SAVE_DIR = "YPROV_SAVE_DIR"
ENV_EXPERIMENT = "YPROV_EXPERIMENT"
ENV_NAMESPACE = "YPROV_NAMESPACE"
ENV_RUN_ID = "YPROV_RUN_ID"
ENV_RUN_DIR = "YPROV_RUN_DIR"  # a batch script's run directory, shared with its sidecars
ENV_SIDECAR = "YPROV_SIDECAR"  # "auto" (default), "off", or an endpoint such as ipc:///path
ENV_BATCH_EVENTS = "YPROV_BATCH_EVENTS"
ENV_FLUSH_INTERVAL_S = "YPROV_FLUSH_INTERVAL_S"
ENV_ACK_TIMEOUT_S = "YPROV_ACK_TIMEOUT_S"
ENV_END_TIMEOUT_S = "YPROV_END_TIMEOUT_S"
ENV_MAX_BUFFER_EVENTS = "YPROV_MAX_BUFFER_EVENTS"
ENV_MAX_INFLIGHT_BATCHES = "YPROV_MAX_INFLIGHT_BATCHES"
ENV_ARTIFACT_COPY_MAX_BYTES = "YPROV_ARTIFACT_COPY_MAX_BYTES"
ENV_HANDLE_SIGTERM = "YPROV_HANDLE_SIGTERM"
ENV_AUTO_MERGE = "YPROV_AUTO_MERGE"  # 0 means YPROV_MERGE=off
ENV_MERGE = "YPROV_MERGE"  # "auto" (default), "job" (a batch script merges) or "off"
ENV_MERGE_WAIT_S = "YPROV_MERGE_WAIT_S"
ENV_PARENT_RUN = "YPROV_PARENT_RUN"
# read by the sidecar (yprov sidecar / the embedded one, which inherits the environment)
ENV_SAMPLE_INTERVAL_S = "YPROV_SAMPLE_INTERVAL_S"
ENV_SAMPLERS = "YPROV_SAMPLERS"
ENV_RAPL_ROOT = "YPROV_RAPL_ROOT"
ENV_NVML_MODULE = "YPROV_NVML_MODULE"
ENV_AGGREGATE = "YPROV_AGGREGATE"
ENV_FORWARD = "YPROV_FORWARD"
# read by the merge
ENV_CARBON_REGION = "YPROV_CARBON_REGION"
ENV_CARBON_INTENSITY = "YPROV_CARBON_INTENSITY"
ENV_CPU_TDP_W = "YPROV_CPU_TDP_W"


MERGE_MODES = ("auto", "job", "off")


@dataclass(frozen=True)
class Config:
    """Everything a run needs to know, fixed for its whole life."""

    namespace: str
    experiment: str = "experiment"
    save_dir: Path = Path("prov")
    run_id: str | None = None
    run_dir: Path | None = None
    sidecar: str = "auto"
    batch_events: int = 100
    flush_interval_s: float = 0.25
    ack_timeout_s: float = 2.0
    end_timeout_s: float = 10.0
    max_buffer_events: int = 2_000_000
    max_inflight_batches: int = 256
    artifact_copy_max_bytes: int = 100 * 1024 * 1024
    handle_sigterm: bool = True
    merge: str = "auto"
    merge_wait_s: float = 120.0
    collect_all_processes: bool = False
    parent_run: str | None = None

    def __post_init__(self) -> None:
        if not self.namespace or not isinstance(self.namespace, str):
            raise ConfigError("prov_user_namespace", self.namespace, "must be a non-empty str")
        if not self.experiment or "/" in self.experiment or self.experiment in {".", ".."}:
            raise ConfigError("experiment_name", self.experiment, "must be a plain name, no '/'")
        for name in ("batch_events", "max_buffer_events", "max_inflight_batches"):
            if getattr(self, name) < 1:
                raise ConfigError(name, getattr(self, name), "must be >= 1")
        for name in ("flush_interval_s", "ack_timeout_s", "end_timeout_s"):
            if not getattr(self, name) > 0:
                raise ConfigError(name, getattr(self, name), "must be > 0")
        if self.merge not in MERGE_MODES:
            raise ConfigError("merge", self.merge, "must be one of " + ", ".join(MERGE_MODES))
        if not self.merge_wait_s >= 0:
            raise ConfigError("merge_wait_s", self.merge_wait_s, "must be >= 0")
        if self.artifact_copy_max_bytes < 0:
            raise ConfigError("artifact_copy_max_bytes", self.artifact_copy_max_bytes, "must be >= 0")


_ENV_FIELDS: dict[str, str] = {
    "save_dir": ENV_SAVE_DIR,
    "experiment": ENV_EXPERIMENT,
    "namespace": ENV_NAMESPACE,
    "run_id": ENV_RUN_ID,
    "run_dir": ENV_RUN_DIR,
    "sidecar": ENV_SIDECAR,
    "batch_events": ENV_BATCH_EVENTS,
    "flush_interval_s": ENV_FLUSH_INTERVAL_S,
    "ack_timeout_s": ENV_ACK_TIMEOUT_S,
    "end_timeout_s": ENV_END_TIMEOUT_S,
    "max_buffer_events": ENV_MAX_BUFFER_EVENTS,
    "max_inflight_batches": ENV_MAX_INFLIGHT_BATCHES,
    "artifact_copy_max_bytes": ENV_ARTIFACT_COPY_MAX_BYTES,
    "handle_sigterm": ENV_HANDLE_SIGTERM,
    "merge": ENV_MERGE,
    "merge_wait_s": ENV_MERGE_WAIT_S,
    "parent_run": ENV_PARENT_RUN,
}

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


def _parse(name: str, env: str, raw: str, kind: type) -> Any:
    if kind is bool:
        low = raw.strip().lower()
        if low in _TRUE:
            return True
        if low in _FALSE:
            return False
        raise ConfigError(env, raw, "expected one of 1/0, true/false, yes/no, on/off")
    try:
        return kind(raw)
    except ValueError as exc:
        raise ConfigError(env, raw, f"expected {kind.__name__} for {name}") from exc


def resolve(explicit: Mapping[str, Any], environ: Mapping[str, str] | None = None) -> Config:
    """Build the run's Config from explicit arguments (None = not given), then env, then defaults."""
    env = os.environ if environ is None else environ
    kinds = {f.name: f.type for f in fields(Config)}
    values: dict[str, Any] = {}
    for name, env_name in _ENV_FIELDS.items():
        given = explicit.get(name)
        if given is not None:
            values[name] = given
        elif env_name in env and env[env_name] != "":
            kind_text = str(kinds[name])
            kind: type = (
                bool
                if "bool" in kind_text
                else int
                if kind_text.startswith("int")
                else float
                if kind_text.startswith("float")
                else str
            )
            values[name] = _parse(name, env_name, env[env_name], kind)
    for name, given in explicit.items():
        if name not in _ENV_FIELDS and name != "auto_merge" and given is not None:
            values[name] = given
    if explicit.get("merge") is None:  # auto_merge=False (argument, else variable) means merge="off"
        auto = explicit.get("auto_merge")
        if auto is None and "merge" not in values and env.get(ENV_AUTO_MERGE):
            auto = _parse("auto_merge", ENV_AUTO_MERGE, env[ENV_AUTO_MERGE], bool)
        if auto is False:
            values["merge"] = "off"
    for name in ("save_dir", "run_dir"):
        if name in values:
            values[name] = Path(values[name])
    if "namespace" not in values:
        raise ConfigError("prov_user_namespace", None, f"required (argument or {ENV_NAMESPACE})")
    return Config(**values)
