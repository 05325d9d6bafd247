"""A Run: the state of one rank's provenance recording, and the log_* verbs.

The hot path (``log_metric``) checks its arguments, appends one tuple to the sender's deque
and returns: no I/O, no packing, no lock. Everything else happens on the sender thread, in
the sidecar and in the merge.
"""

from __future__ import annotations

import logging
import os
import secrets
import time
from collections.abc import Mapping
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any

from yprov_hpc.core.config import Config
from yprov_hpc.core.context import Context
from yprov_hpc.core.errors import (
    InvalidArgumentError,
    MissingExtraError,
    NoActiveRunError,
    ParamConflictError,
)
from yprov_hpc.rank import artifacts, environment, values
from yprov_hpc.rank.artifacts import ArtifactStore
from yprov_hpc.rank.delivery import Delivery, new_delivery
from yprov_hpc.rank.discovery import Placement
from yprov_hpc.rank.ending import RunReport, RunStatus, directory_id, done_marker, finish
from yprov_hpc.rank.run_ids import open_run_directory
from yprov_hpc.rank.values import PLAIN_CONTEXTS as _plain_contexts  # the hot path's names
from yprov_hpc.rank.values import context_value, metric_value, name_value, step_value
from yprov_hpc.wire.records import Event, Kind

if TYPE_CHECKING:
    from yprov_hpc.rank.sidecar_client import SidecarInfo

log = logging.getLogger("yprov_hpc")

_METRIC = int(Kind.METRIC)
_MARK = int(Kind.MARK)
_time_ns = time.time_ns


def _torch(feature: str) -> ModuleType:
    """The PyTorch integration, or MissingExtraError naming the extra when torch is not installed."""
    try:
        from yprov_hpc.integrations import pytorch
    except ImportError as exc:
        top = (exc.name or "").split(".")[0]
        if top in ("torch", "numpy"):
            raise MissingExtraError(feature, "torch", top) from None
        raise
    return pytorch


class Run:
    """One rank's recording. Created by ``start_run``; usable as a context manager."""

    def __init__(self, config: Config, placement: Placement, run_id: str) -> None:
        self.config = config
        self.placement = placement
        self.run_id = run_id
        self.layout = open_run_directory(config, placement, run_id)
        self._root_id = directory_id(self.layout.root)
        self.rank = placement.rank
        self.stream = secrets.randbits(63)
        self.started_ns = _time_ns()
        self._started_monotonic = time.monotonic()
        self._active = True
        self._fork_child = False
        self._ended_report: RunReport | None = None
        self._params: dict[str, tuple[Any, str]] = {}
        self._artifacts = ArtifactStore(self.layout, self.rank, config.artifact_copy_max_bytes)
        self._model_versions: dict[str, int] = {}
        self._sidecar: SidecarInfo | None = None  # set on the sender thread once it found one
        self._sender = self._new_sender()
        self._buffer = self._sender.buffer
        self._emit_start()
        self._sender.start()

    # --- wiring ----------------------------------------------------------------------------
    def _new_sender(self) -> Delivery:
        def found(info: SidecarInfo | None) -> None:
            self._sidecar = info

        cfg, layout, p = self.config, self.layout, self.placement
        return new_delivery(cfg, layout, p, self.run_id, self.stream, self._emit_environment, found)

    def _emit_start(self) -> None:
        info = environment.start_info(self.config, self.placement, self.run_id, self.stream)
        self._buffer.append((int(Kind.RUN_START), self.started_ns, info))
        self._buffer.append((int(Kind.HELLO), self.started_ns, environment.hello_info(self.placement)))

    def _emit_environment(self) -> None:
        """Runs on the sender thread: capture the environment without slowing training."""
        try:
            copy_to = self.layout.environment_file(self.rank).with_suffix(".entry_script")
            info = values.info_value("environment", environment.capture(self.placement, copy_to))
        except Exception as exc:  # best effort: a broken probe or an oversized value must not stop delivery
            info = {"error": f"{type(exc).__name__}: {exc}"[:4096]}
        self._buffer.append((int(Kind.ENVIRONMENT), _time_ns(), info))

    def after_fork_in_child(self) -> None:
        """In a forked child: a new stream with its own buffer and sender (the parent's thread
        does not exist here). The child's events are recorded under the same rank."""
        self.stream = secrets.randbits(63)
        self._fork_child = True
        self._sender = self._new_sender()
        self._buffer = self._sender.buffer
        hello = {"pid": os.getpid(), "forked": True, "world_size": self.placement.world_size}
        self._buffer.append((int(Kind.HELLO), _time_ns(), hello))
        self._sender.start()

    # --- state -----------------------------------------------------------------------------
    @property
    def active(self) -> bool:
        """True between start_run and end_run."""
        return self._active

    @property
    def run_dir(self) -> Path:
        """The run directory, where documents, series and artifacts go."""
        return self.layout.root

    def _check(self, call: str) -> None:
        if not self._active:
            raise NoActiveRunError(call, "the run has ended")

    def __enter__(self) -> Run:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: Any) -> None:
        if self._active:
            if exc_type is None:
                status = "finished"
            elif issubclass(exc_type, KeyboardInterrupt):
                status = "interrupted"
            else:
                status = "failed"
            self.end_run(status=status)

    # --- the log verbs -----------------------------------------------------------------------
    def emit(self, event: Event) -> None:
        """Append one event (a record's fields, as a tuple) for the sender; for the verbs that
        live in other modules (PyTorch, artifacts). The hot path inlines the same two lines."""
        buf = self._buffer
        buf.append(event)
        if len(buf) > self._sender.limit:
            self._sender.relieve()

    def log_metric(
        self, key: str, value: float, context: Context | str | None = None, step: int | None = None
    ) -> None:
        """Record one value of a metric series (NaN and inf are kept)."""
        if not self._active:
            raise NoActiveRunError("log_metric", "the run has ended")
        if type(key) is not str or not 0 < len(key) <= 1024 or not key.isascii():  # MAX_NAME_CHARS; UTF-8
            key = name_value("log_metric", key)
        if type(value) is not float:
            value = metric_value(key, value)
        if context is not None:
            try:
                context = _plain_contexts[context]
            except (KeyError, TypeError):  # a new context, or not a str at all (even unhashable)
                context = context_value(context, "log_metric")
        if step is not None and (type(step) is not int or not -(2**63) <= step < 2**63):  # int64
            step = step_value("log_metric", step)
        buf = self._buffer
        buf.append((_METRIC, _time_ns(), key, value, context, step))  # = records.Metric (a test pins it)
        if len(buf) > self._sender.limit:
            self._sender.relieve()

    def log_metrics(
        self, metrics: Mapping[str, float], context: Context | str | None = None, step: int | None = None
    ) -> None:
        """Record several metrics at one step."""
        if not isinstance(metrics, Mapping):
            raise InvalidArgumentError("log_metrics", "metrics", metrics, "a mapping of name to value")
        for key, value in metrics.items():
            self.log_metric(key, value, context, step)

    def log_param(self, key: str, value: Any, *, revision: bool = False) -> None:
        """Record a one-time input of the run. Logging the same key again with another value
        raises ParamConflictError, unless ``revision=True``: then the new value is recorded as the
        param's next revision (``prov:wasRevisionOf`` the previous one). The same value again is
        a no-op."""
        self._check("log_param")
        key = name_value("log_param", key)
        stored = values.param_value(value)
        old = self._params.get(key)
        if old is not None:
            if values.same_param(old, stored):
                return
            if not revision:
                raise ParamConflictError(key, old[0], stored[0])
        self._params[key] = stored
        self.emit((int(Kind.PARAM), _time_ns(), key, stored[0], stored[1]))

    def log_params(self, params: Mapping[str, Any]) -> None:
        """Record several params."""
        if not isinstance(params, Mapping):
            raise InvalidArgumentError("log_params", "params", params, "a mapping of name to value")
        for key, value in params.items():
            self.log_param(key, value)

    def log_current_execution_time(
        self, label: str, context: Context | str | None = None, step: int | None = None
    ) -> None:
        """Record the seconds since start_run under ``label`` (a series, like a metric)."""
        self._check("log_current_execution_time")
        label = name_value("log_current_execution_time", label)
        ctx, st = values.where("log_current_execution_time", context, step)
        elapsed = time.monotonic() - self._started_monotonic
        self.emit((int(Kind.EXEC_TIME), _time_ns(), label, elapsed, ctx, st))

    def _mark(self, call: str, what: str, context: Context | str | None, step: int | None) -> None:
        if not self._active:
            raise NoActiveRunError(call, "the run has ended")
        ctx, st = values.where(call, context, step)
        self.emit((_MARK, _time_ns(), what, ctx, st))

    def log_system_metrics(self, context: Context | str | None = None, step: int | None = None) -> None:
        """Mark this moment; the node sidecar's samples at the mark become this rank's system metrics."""
        self._mark("log_system_metrics", "system", context, step)

    def log_carbon_metrics(self, context: Context | str | None = None, step: int | None = None) -> None:
        """Mark this moment; energy and emissions up to the mark come from the node sidecar."""
        self._mark("log_carbon_metrics", "carbon", context, step)

    def log_artifact(
        self,
        artifact_path: str | os.PathLike[str],
        context: Context | str | None = None,
        step: int | None = None,
        timestamp: float | None = None,
    ) -> None:
        """Record a file or directory: copied into the run directory (up to the size limit) with
        its size and sha256; larger ones are referenced in place with their hash. Devices, FIFOs
        and sockets are refused (``ArtifactTypeError``); see ``rank.artifacts``."""
        self._check("log_artifact")
        artifacts.log_artifact(self, self._artifacts, artifact_path, context, step, timestamp)

    def next_model_version(self, model_name: str) -> int:
        """The next version number of ``model_name`` in this rank (1, 2, ...)."""
        version = self._model_versions.get(model_name, 0) + 1
        self._model_versions[model_name] = version
        return version

    def record_model_version_file(
        self, path: Path, model_name: str, context: Context | str | None = None, step: int | None = None
    ) -> None:
        """Record a checkpoint file written by someone else (Lightning) as the next version of
        ``model_name``: hashed, and copied into the run directory up to the artifact size limit."""
        self._check("record_model_version_file")
        artifacts.record_model_version_file(self, self._artifacts, path, model_name, context, step)

    # --- PyTorch: in integrations.pytorch (torch is imported on first use, never by `import yprov_hpc`)
    def log_model(
        self,
        model_label: Any,
        model: Any,
        log_model_info: bool = True,
        log_model_layers: bool = False,
        is_input: bool = False,
        sample_input: Any = None,
        context: Context | str | None = None,
        step: int | None = None,
    ) -> None:
        """Record a PyTorch model; see ``integrations.pytorch.log_model``."""
        self._check("log_model")
        _torch("log_model").log_model(
            self, model_label, model, log_model_info, log_model_layers, is_input, sample_input, context, step
        )

    def save_model_version(
        self,
        model: Any,
        model_name: str,
        context: Context | str | None = None,
        step: int | None = None,
        timestamp: float | None = None,
    ) -> Path:
        """Save the next numbered checkpoint; see ``integrations.pytorch.save_model_version``."""
        self._check("save_model_version")
        path: Path = _torch("save_model_version").save_model_version(
            self, model, model_name, context, step, timestamp
        )
        return path

    def log_dataset(self, dataset: Any, label: str, context: Context | str | None = None) -> None:
        """Record a Dataset or DataLoader as an input; see ``integrations.pytorch.log_dataset``."""
        self._check("log_dataset")
        _torch("log_dataset").log_dataset(self, dataset, label, context)

    # --- the end ---------------------------------------------------------------------------
    def end_run(
        self, create_graph: bool = False, create_svg: bool = False, status: RunStatus = "finished"
    ) -> RunReport:
        """Deliver everything (acked by the sidecar or spilled to the spool), write this rank's
        done marker, and, on the last rank to end, wait (bounded) for the merge that runs in
        another process (see ``rank.ending``). Idempotent."""
        if self._ended_report is not None:
            return self._ended_report
        self._active = False
        end_ns = _time_ns()
        flags = {"create_graph": bool(create_graph), "create_svg": bool(create_svg)}
        if not self._fork_child:
            self._buffer.append((int(Kind.RUN_END), end_ns, status, flags))
        self._buffer.append((int(Kind.BYE), end_ns, {"pid": os.getpid()}))
        problems = []
        try:
            stats = self._sender.close(self.config.end_timeout_s)
        except Exception as exc:  # never into training: what was not delivered is counted below
            log.exception("yprov: delivery at end_run failed")
            stats, problems = self._sender.stats, [f"delivery at end_run failed: {exc}"]
        report = RunReport(self.layout.root, self.rank, status, stats, problems=problems)
        if self._fork_child:  # the parent owns the rank's end: only this stream is flushed
            self._ended_report = report
            return report
        marker = done_marker(report, self.placement, self.stream, end_ns, flags)
        marker["merge"] = self.config.merge  # "job"/"off": the embedded sidecar leaves the merge alone
        finish(report, self.layout, self.config, marker, self._sidecar, self._root_id)
        self._ended_report = report
        return report
