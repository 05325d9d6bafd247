"""Settings: one frozen dataclass, resolved when a run starts (never at import).

Precedence: explicit arguments > ``YPROV_*`` environment variables > defaults. Every
environment variable the library reads is a constant in this module, with its check in
``_CHECKS``: ``check_environment`` parses and checks every one that is set (the rank's
``start_run`` and the sidecar both call it), and a bad value is a ``ConfigError`` naming the
variable and the value. ``YPROV_*`` names this library does not read are left alone (the batch
scripts use some of their own).
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
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
ENV_MAX_BUFFER_BYTES = "YPROV_MAX_BUFFER_BYTES"
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
ENV_SIDECAR_ON_SIGTERM = "YPROV_SIDECAR_ON_SIGTERM"  # "auto" (default), "stop" or "wait"
# read by the merge
ENV_CARBON_REGION = "YPROV_CARBON_REGION"
ENV_CARBON_INTENSITY = "YPROV_CARBON_INTENSITY"
ENV_CPU_TDP_W = "YPROV_CPU_TDP_W"
# read by the batch scripts (scripts/slurm)
ENV_AGGREGATOR_PORT = "YPROV_AGGREGATOR_PORT"
ENV_NPROC_PER_NODE = "YPROV_NPROC_PER_NODE"


MERGE_MODES = ("auto", "job", "off")
SIGTERM_MODES = ("auto", "stop", "wait")  # a sidecar's SIGTERM: see daemon.sidecar
SAMPLERS = ("system", "rapl", "nvml")
MIN_SAMPLE_INTERVAL_S = 0.1
_RUN_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.\-]{0,199}")
_MODULE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*")
_REGION = re.compile(r"[A-Za-z]{3}")
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}

Check = Callable[[str, str], Any]  # (name, raw text) -> parsed value, or ConfigError


def _number(kind: type, low: float, *, above: bool = False, high: float | None = None) -> Check:
    """A check for an int or a finite float >= low (> low with ``above``), at most ``high``."""

    def check(name: str, raw: str) -> Any:
        try:
            value = kind(raw.strip())
        except ValueError:
            raise ConfigError(name, raw, f"expected {'an integer' if kind is int else 'a number'}") from None
        bad_low = value <= low if above else value < low
        if (kind is float and not math.isfinite(value)) or bad_low or (high is not None and value > high):
            limits = f"{'>' if above else '>='} {low:g}" + (f" and <= {high:g}" if high is not None else "")
            raise ConfigError(name, raw, f"must be {limits}")
        return value

    return check


def check_bool(name: str, raw: str) -> bool:
    """1/0, true/false, yes/no, on/off (any case)."""
    low = raw.strip().lower()
    if low in _TRUE or low in _FALSE:
        return low in _TRUE
    raise ConfigError(name, raw, "expected one of 1/0, true/false, yes/no, on/off")


def _choice(*choices: str) -> Check:
    def check(name: str, raw: str) -> str:
        if raw not in choices:
            raise ConfigError(name, raw, "must be one of " + ", ".join(choices))
        return raw

    return check


def _endpoint(*schemes: str, words: tuple[str, ...] = ()) -> Check:
    def check(name: str, raw: str) -> str:
        if raw in words or (raw.startswith(schemes) and len(raw) > max(map(len, schemes))):
            return raw
        allowed = [*words, *(f"an {s}... endpoint" if s[0] == "i" else f"a {s}... endpoint" for s in schemes)]
        raise ConfigError(name, raw, "must be " + " or ".join(allowed))

    return check


def check_run_id(name: str, raw: str) -> str:
    """A run id: letters, digits, '_', '.' and '-', starting with a letter or digit, 1-200 chars."""
    if not _RUN_ID.fullmatch(raw):
        raise ConfigError(name, raw, "must be 1-200 of A-Z a-z 0-9 _ . - (starting with a letter or digit)")
    return raw


def check_experiment(name: str, raw: str) -> str:
    """An experiment name: a plain file name (no '/', not '.' or '..', no NUL), 1-200 chars."""
    if not raw or "/" in raw or "\0" in raw or raw in {".", ".."} or len(raw) > 200:
        raise ConfigError(name, raw, "must be a plain name of 1-200 characters, no '/'")
    return raw


def _text(name: str, raw: str) -> str:
    if "\0" in raw or len(raw) > 4096:
        raise ConfigError(name, raw, "must be text of at most 4096 characters, without NUL")
    return raw


def _path(name: str, raw: str) -> Path:
    return Path(_text(name, raw))


def _pattern(regex: re.Pattern[str], what: str) -> Check:
    def check(name: str, raw: str) -> str:
        if not regex.fullmatch(raw.strip()):
            raise ConfigError(name, raw, f"must be {what}")
        return raw.strip()

    return check


def _samplers(name: str, raw: str) -> tuple[str, ...]:
    names = tuple(n.strip() for n in raw.split(",") if n.strip())
    if names == ("none",):
        return ()
    unknown = [n for n in names if n not in SAMPLERS]
    if unknown or not names:
        raise ConfigError(name, raw, f"must be 'none' or a comma-separated list of {', '.join(SAMPLERS)}")
    return names


# Every variable the library reads, with its check (and parser).
_CHECKS: dict[str, Check] = {
    ENV_SAVE_DIR: _path,
    ENV_EXPERIMENT: check_experiment,
    ENV_NAMESPACE: _text,
    ENV_RUN_ID: check_run_id,
    ENV_RUN_DIR: _path,
    ENV_SIDECAR: _endpoint("ipc://", "tcp://", words=("auto", "off")),
    ENV_BATCH_EVENTS: _number(int, 1),
    ENV_FLUSH_INTERVAL_S: _number(float, 0, above=True),
    ENV_ACK_TIMEOUT_S: _number(float, 0, above=True),
    ENV_END_TIMEOUT_S: _number(float, 0, above=True),
    ENV_MAX_BUFFER_EVENTS: _number(int, 1),
    ENV_MAX_BUFFER_BYTES: _number(int, 1 << 20),
    ENV_MAX_INFLIGHT_BATCHES: _number(int, 1),
    ENV_ARTIFACT_COPY_MAX_BYTES: _number(int, 0),
    ENV_HANDLE_SIGTERM: check_bool,
    ENV_AUTO_MERGE: check_bool,
    ENV_MERGE: _choice(*MERGE_MODES),
    ENV_MERGE_WAIT_S: _number(float, 0),
    ENV_PARENT_RUN: _text,
    ENV_SAMPLE_INTERVAL_S: _number(float, MIN_SAMPLE_INTERVAL_S),
    ENV_SAMPLERS: _samplers,
    ENV_RAPL_ROOT: _path,
    ENV_NVML_MODULE: _pattern(_MODULE, "a Python module name such as pynvml"),
    ENV_AGGREGATE: _endpoint("tcp://"),
    ENV_FORWARD: _endpoint("tcp://"),
    ENV_SIDECAR_ON_SIGTERM: _choice(*SIGTERM_MODES),
    ENV_CARBON_REGION: _pattern(_REGION, "an ISO 3166 alpha-3 country code such as FRA"),
    ENV_CARBON_INTENSITY: _number(float, 0),
    ENV_CPU_TDP_W: _number(float, 0, above=True, high=10_000),
    ENV_AGGREGATOR_PORT: _number(int, 1, high=65535),
    ENV_NPROC_PER_NODE: _number(int, 1, high=4096),
}


def check_environment(env: Mapping[str, str] | None = None) -> dict[str, Any]:
    """Check every ``YPROV_*`` variable this library reads that is set (an empty value counts
    as unset); return their parsed values by variable name. ConfigError for the first bad one."""
    environ = os.environ if env is None else env
    return {
        name: check(name, environ[name]) for name, check in _CHECKS.items() if environ.get(name, "") != ""
    }


# the rank's event buffer is bounded in bytes (docs/configuration.md, rank/batching.py)
DEFAULT_MAX_BUFFER_BYTES = 256 << 20


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
    max_buffer_bytes: int = DEFAULT_MAX_BUFFER_BYTES
    max_inflight_batches: int = 256
    artifact_copy_max_bytes: int = 100 * 1024 * 1024
    handle_sigterm: bool = True
    merge: str = "auto"
    merge_wait_s: float = 120.0
    collect_all_processes: bool = False
    parent_run: str | None = None

    def __post_init__(self) -> None:
        """Arguments get the same checks as the variables (named by their argument)."""
        if not self.namespace or not isinstance(self.namespace, str):
            raise ConfigError("prov_user_namespace", self.namespace, "must be a non-empty str")
        check_experiment("experiment_name", str(self.experiment))
        if self.run_id is not None:
            check_run_id("run_id", str(self.run_id))
        _CHECKS[ENV_SIDECAR]("sidecar", str(self.sidecar))
        _choice(*MERGE_MODES)("merge", str(self.merge))
        for name in ("batch_events", "max_buffer_events", "max_buffer_bytes", "max_inflight_batches"):
            if not isinstance(getattr(self, name), int) or getattr(self, name) < 1:
                raise ConfigError(name, getattr(self, name), "must be an int >= 1")
        for name in ("flush_interval_s", "ack_timeout_s", "end_timeout_s"):
            if not getattr(self, name) > 0:
                raise ConfigError(name, getattr(self, name), "must be > 0")
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
    "max_buffer_bytes": ENV_MAX_BUFFER_BYTES,
    "max_inflight_batches": ENV_MAX_INFLIGHT_BATCHES,
    "artifact_copy_max_bytes": ENV_ARTIFACT_COPY_MAX_BYTES,
    "handle_sigterm": ENV_HANDLE_SIGTERM,
    "merge": ENV_MERGE,
    "merge_wait_s": ENV_MERGE_WAIT_S,
    "parent_run": ENV_PARENT_RUN,
}


def resolve(explicit: Mapping[str, Any], environ: Mapping[str, str] | None = None) -> Config:
    """Build the run's Config from explicit arguments (None = not given), then the environment
    (every variable checked, also those only the sidecar or the merge read), then defaults."""
    env = check_environment(environ)
    values: dict[str, Any] = {}
    for name, env_name in _ENV_FIELDS.items():
        if explicit.get(name) is not None:
            values[name] = explicit[name]
        elif env_name in env:
            values[name] = env[env_name]
    for name, given in explicit.items():
        if name not in _ENV_FIELDS and name != "auto_merge" and given is not None:
            values[name] = given
    if explicit.get("merge") is None:  # auto_merge=False (argument, else variable) means merge="off"
        auto = explicit.get("auto_merge")
        if auto is None and "merge" not in values:
            auto = env.get(ENV_AUTO_MERGE)
        if auto is False:
            values["merge"] = "off"
    for name in ("save_dir", "run_dir"):
        if name in values:
            values[name] = Path(values[name])
    if "namespace" not in values:
        raise ConfigError("prov_user_namespace", None, f"required (argument or {ENV_NAMESPACE})")
    return Config(**values)
