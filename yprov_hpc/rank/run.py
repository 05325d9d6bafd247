"""A Run: the state of one rank's provenance recording, and the log_* verbs.

The hot path (``log_metric``) checks its arguments, appends one tuple to the sender's deque
and returns: no I/O, no packing, no lock. Everything else happens on the sender thread, in
the sidecar and in the merge.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import shutil
import sys
import time
from collections.abc import Mapping
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from yprov_hpc.core.atomic import write_json_atomic
from yprov_hpc.core.config import ENV_RUN_ID, Config
from yprov_hpc.core.context import Context
from yprov_hpc.core.errors import (
    ArtifactNotFoundError,
    ConfigError,
    InvalidArgumentError,
    InvalidKeyError,
    NoActiveRunError,
    ParamConflictError,
)
from yprov_hpc.core.hashing import sha256_path
from yprov_hpc.core.layout import RunLayout, safe_name
from yprov_hpc.rank.discovery import Placement
from yprov_hpc.rank.ending import RunReport, RunStatus, conclude, run_is_complete
from yprov_hpc.rank.sender import Sender, SenderStats
from yprov_hpc.rank.values import PLAIN_CONTEXTS as _plain_contexts
from yprov_hpc.rank.values import context_value, metric_value, param_value, same_param, step_value
from yprov_hpc.wire.records import Kind

if TYPE_CHECKING:
    from yprov_hpc.rank.sidecar_client import SidecarInfo

log = logging.getLogger("yprov_hpc")

_METRIC = int(Kind.METRIC)
_MARK = int(Kind.MARK)
_time_ns = time.time_ns


def _gpu_hint() -> dict[str, Any]:
    """Which GPU this rank uses, as far as the rank itself can tell without touching CUDA:
    CUDA_VISIBLE_DEVICES, and torch's current device if the program already set CUDA up."""
    hint: dict[str, Any] = {}
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        hint["cuda_visible_devices"] = visible
    torch = sys.modules.get("torch")
    try:
        if torch is not None and torch.cuda.is_initialized():
            hint["cuda_device"] = int(torch.cuda.current_device())
    except Exception:  # a broken CUDA set-up must not stop the run
        pass
    return hint


def new_run_id() -> str:
    """A fresh run id: UTC time plus randomness, safe in file names and PROV identifiers."""
    return datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ") + "-" + secrets.token_hex(3)


class Run:
    """One rank's recording. Created by ``start_run``; usable as a context manager."""

    def __init__(self, config: Config, placement: Placement, run_id: str) -> None:
        self.config = config
        self.placement = placement
        self.run_id = run_id
        self.layout = RunLayout.create(config.save_dir, config.experiment, run_id, config.run_dir)
        if run_is_complete(self.layout):
            raise ConfigError(
                "run_id",
                run_id,
                f"{self.layout.root} already holds a finished run; use a new run id "
                f"(unset {ENV_RUN_ID} or pass another run_id)",
            )
        self.rank = placement.rank
        self.stream = secrets.randbits(63)
        self.started_ns = _time_ns()
        self._started_monotonic = time.monotonic()
        self._active = True
        self._fork_child = False
        self._ended_report: RunReport | None = None
        self._params: dict[str, tuple[Any, str]] = {}
        self._artifact_names: dict[str, str] = {}
        self._model_versions: dict[str, int] = {}
        self._sidecar: SidecarInfo | None = None  # set on the sender thread once it found one
        self._max_buffer = config.max_buffer_events
        self._sender = self._new_sender()
        self._buffer = self._sender.buffer
        self._emit_start()
        self._sender.start()

    # --- wiring ----------------------------------------------------------------------------
    def _new_sender(self) -> Sender:
        from yprov_hpc.rank.sidecar_client import locate_or_start

        node = self.placement.node
        sidecar = self.config.sidecar

        def locate() -> str | None:
            if sidecar == "off":
                return None
            if sidecar != "auto":
                return sidecar
            self._sidecar = locate_or_start(self.layout, node)
            return self._sidecar.endpoint if self._sidecar is not None else None

        return Sender(
            layout=self.layout,
            run_id=self.run_id,
            rank=self.rank,
            node=node,
            stream=self.stream,
            batch_events=self.config.batch_events,
            flush_interval_s=self.config.flush_interval_s,
            ack_timeout_s=self.config.ack_timeout_s,
            max_inflight_batches=self.config.max_inflight_batches,
            locate=locate,
            on_connected=self._emit_environment,
        )

    def _emit_start(self) -> None:
        p = self.placement
        info = {
            "run_id": self.run_id,
            "namespace": self.config.namespace,
            "experiment": self.config.experiment,
            "rank": p.rank,
            "local_rank": p.local_rank,
            "world_size": p.world_size,
            "node": p.node,
            "launcher": p.launcher,
            "pid": os.getpid(),
            "stream": self.stream,
            "collect_all_processes": self.config.collect_all_processes,
            "batch_events": self.config.batch_events,
            "parent_run": self.config.parent_run or "",
            "slurm_step_id": os.environ.get("SLURM_STEP_ID", ""),
        }
        self._buffer.append((int(Kind.RUN_START), self.started_ns, info))
        hello = {"pid": os.getpid(), "world_size": p.world_size, "local_rank": p.local_rank, **_gpu_hint()}
        if p.local_world_size is not None:
            hello["local_world_size"] = p.local_world_size
        self._buffer.append((int(Kind.HELLO), self.started_ns, hello))

    def _emit_environment(self) -> None:
        """Runs on the sender thread: capture the environment without slowing training."""
        from yprov_hpc.rank import environment  # imported here: ~20 ms that `import yprov_hpc` need not pay

        try:
            info = environment.capture(self.placement)
        except Exception as exc:  # best effort: a broken probe must not stop delivery
            info = {"error": f"{type(exc).__name__}: {exc}"}
        self._buffer.append((int(Kind.ENVIRONMENT), _time_ns(), info))

    def after_fork_in_child(self) -> None:
        """In a forked child: a new stream with its own buffer and sender (the parent's thread
        does not exist here). The child's events are recorded under the same rank."""
        self.stream = secrets.randbits(63)
        self._fork_child = True
        self._sender = self._new_sender()
        self._buffer = self._sender.buffer
        self._buffer.append(
            (
                int(Kind.HELLO),
                _time_ns(),
                {"pid": os.getpid(), "forked": True, "world_size": self.placement.world_size},
            )
        )
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
    def log_metric(
        self, key: str, value: float, context: Context | str | None = None, step: int | None = None
    ) -> None:
        """Record one value of a metric series (NaN and inf are kept)."""
        if not self._active:
            raise NoActiveRunError("log_metric", "the run has ended")
        if type(key) is not str or not key:
            raise InvalidKeyError("log_metric", key)
        if type(value) is not float:
            value = metric_value(key, value)
        if context is not None:
            context = _plain_contexts.get(context) or context_value(context)
        if step is not None and type(step) is not int:
            step = step_value("log_metric", step)
        buf = self._buffer
        buf.append((_METRIC, _time_ns(), key, value, context, step))
        if len(buf) > self._max_buffer:
            self._sender.relieve()

    def log_metrics(
        self, metrics: Mapping[str, float], context: Context | str | None = None, step: int | None = None
    ) -> None:
        """Record several metrics at one step."""
        if not isinstance(metrics, Mapping):
            raise InvalidArgumentError("log_metrics", "metrics", metrics, "a mapping of name to value")
        for key, value in metrics.items():
            self.log_metric(key, value, context, step)

    def log_param(self, key: str, value: Any) -> None:
        """Record a one-time input of the run. Logging the same key again with another value raises."""
        self._check("log_param")
        if type(key) is not str or not key:
            raise InvalidKeyError("log_param", key)
        stored = param_value(value)
        old = self._params.get(key)
        if old is not None:
            if not same_param(old, stored):
                raise ParamConflictError(key, old[0], stored[0])
            return
        self._params[key] = stored
        self._buffer.append((int(Kind.PARAM), _time_ns(), key, stored[0], stored[1]))

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
        if type(label) is not str or not label:
            raise InvalidKeyError("log_current_execution_time", label)
        ctx = None if context is None else context_value(context)
        st = None if step is None else step_value("log_current_execution_time", step)
        elapsed = time.monotonic() - self._started_monotonic
        self._buffer.append((int(Kind.EXEC_TIME), _time_ns(), label, elapsed, ctx, st))

    def _mark(self, call: str, what: str, context: Context | str | None, step: int | None) -> None:
        if not self._active:
            raise NoActiveRunError(call, "the run has ended")
        if context is not None:
            context = _plain_contexts.get(context) or context_value(context)
        if step is not None and type(step) is not int:
            step = step_value(call, step)
        self._buffer.append((_MARK, _time_ns(), what, context, step))

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
        its size and sha256; larger ones are referenced in place with their hash."""
        self._check("log_artifact")
        if not isinstance(artifact_path, (str, os.PathLike)):
            raise InvalidArgumentError("log_artifact", "artifact_path", artifact_path, "a path")
        src = Path(artifact_path)
        if not src.exists():
            raise ArtifactNotFoundError(str(artifact_path))
        ctx = None if context is None else context_value(context)
        st = None if step is None else step_value("log_artifact", step)
        if timestamp is not None and not isinstance(timestamp, (int, float)):
            raise InvalidArgumentError("log_artifact", "timestamp", timestamp, "seconds since the epoch")
        digest, size = sha256_path(src)
        stored: str | None = None
        if size <= self.config.artifact_copy_max_bytes:
            stored = self._store_artifact(src, digest)
        info = {
            "source": str(src.absolute()),
            "stored": stored or "",
            "size_bytes": size,
            "sha256": digest,
            "is_dir": src.is_dir(),
            "user_timestamp": timestamp,
        }
        self._buffer.append((int(Kind.ARTIFACT), _time_ns(), str(artifact_path), ctx, st, info))

    def _store_artifact(self, src: Path, digest: str) -> str:
        base = self.layout.artifacts_dir(self.rank)
        name = safe_name(src.name)
        seen = self._artifact_names.get(name)
        if seen is not None and seen != digest:  # same name, new content: keep both versions
            name = f"{name}.{digest[:12]}"
        self._artifact_names.setdefault(safe_name(src.name), digest)
        dest = base / name
        base.mkdir(parents=True, exist_ok=True)
        if not dest.exists():
            if src.is_dir():
                shutil.copytree(src, dest)
            else:
                shutil.copy2(src, dest)
        return dest.relative_to(self.layout.root).as_posix()

    # --- PyTorch (torch is imported here, on first use, never by `import yprov_hpc`) ------------
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
        """Record a model: parameter counts, memory of parameters/gradients/buffers, dtypes,
        device, a fingerprint of its weights and, with ``log_model_layers``, a layer table
        (with input/output shapes when ``sample_input`` is given). Takes (label, model) or, as the
        paper's example does, (model, label). ``is_input=True`` records a model the run starts
        from (``used``) rather than one it produced."""
        self._check("log_model")
        if isinstance(model_label, str) and not isinstance(model, str):
            label, module = model_label, model
        elif isinstance(model, str):
            label, module = model, model_label
        else:
            raise InvalidArgumentError("log_model", "model_label", model_label, "a str label")
        from yprov_hpc.integrations import pytorch

        if not pytorch.is_module(module):
            raise InvalidArgumentError("log_model", "model", module, "a torch.nn.Module")
        if not label:
            raise InvalidKeyError("log_model", label)
        ctx = None if context is None else context_value(context)
        st = None if step is None else step_value("log_model", step)
        info: dict[str, Any] = (
            pytorch.model_info(module)
            if log_model_info
            else {
                "class": type(module).__qualname__,
                "state_sha256": pytorch.state_fingerprint(module.state_dict()),
            }
        )
        info["is_input"] = bool(is_input)
        if log_model_layers:
            table = pytorch.layer_table(module, sample_input)
            path = self.layout.artifacts_dir(self.rank) / "models" / f"{safe_name(label)}_layers.json"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(table, indent=1))
            digest, _ = sha256_path(path)
            info.update(
                layers=len(table),
                layers_path=path.relative_to(self.layout.root).as_posix(),
                layers_sha256=digest,
            )
        self._buffer.append((int(Kind.MODEL), _time_ns(), label, ctx, st, info))

    def save_model_version(
        self,
        model: Any,
        model_name: str,
        context: Context | str | None = None,
        step: int | None = None,
        timestamp: float | None = None,
    ) -> Path:
        """Save the model's state_dict as the next numbered version of ``model_name`` inside the
        run directory; versions of one name form a wasDerivedFrom chain. Returns the file."""
        self._check("save_model_version")
        if type(model_name) is not str or not model_name:
            raise InvalidKeyError("save_model_version", model_name)
        from yprov_hpc.integrations import pytorch

        if not (pytorch.is_module(model) or isinstance(model, Mapping)):
            expected = "a torch.nn.Module or a state_dict"
            raise InvalidArgumentError("save_model_version", "model", model, expected)
        ctx = None if context is None else context_value(context)
        st = None if step is None else step_value("save_model_version", step)
        if timestamp is not None and not isinstance(timestamp, (int, float)):
            raise InvalidArgumentError(
                "save_model_version", "timestamp", timestamp, "seconds since the epoch"
            )
        version = self._model_versions.get(model_name, 0) + 1
        self._model_versions[model_name] = version
        name = safe_name(model_name)
        path = self.layout.artifacts_dir(self.rank) / "models" / name / f"{name}_v{version}.pt"
        file_sha, state_sha, size = pytorch.save_checkpoint(model, path)
        info = {
            "version": version,
            "path": path.relative_to(self.layout.root).as_posix(),
            "size_bytes": size,
            "sha256": file_sha,
            "state_sha256": state_sha,
            "format": "torch.save(state_dict)",
            "user_timestamp": timestamp,
        }
        self._buffer.append((int(Kind.MODEL_VERSION), _time_ns(), model_name, ctx, st, info))
        return path

    def record_model_version_file(
        self, path: Path, model_name: str, context: Context | str | None = None, step: int | None = None
    ) -> None:
        """Record a checkpoint file written by someone else (Lightning) as the next version of
        ``model_name``: hashed, and copied into the run directory up to the artifact size limit."""
        self._check("record_model_version_file")
        ctx = None if context is None else context_value(context)
        version = self._model_versions.get(model_name, 0) + 1
        self._model_versions[model_name] = version
        digest, size = sha256_path(path)
        stored = self._store_artifact(path, digest) if size <= self.config.artifact_copy_max_bytes else ""
        info = {
            "version": version,
            "path": stored,
            "source_path": str(path.absolute()),
            "size_bytes": size,
            "sha256": digest,
            "format": path.suffix.lstrip(".") or "file",
        }
        self._buffer.append((int(Kind.MODEL_VERSION), _time_ns(), model_name, ctx, step, info))

    def log_dataset(self, dataset: Any, label: str, context: Context | str | None = None) -> None:
        """Record a Dataset or DataLoader as an input of ``context`` (or of the run): samples,
        batch size, batches per epoch, shuffle, drop_last, workers, sampler (DistributedSampler:
        replicas and rank), dataset class, transforms, and a content fingerprint."""
        self._check("log_dataset")
        if type(label) is not str or not label:
            raise InvalidKeyError("log_dataset", label)
        from yprov_hpc.integrations import pytorch

        ctx = None if context is None else context_value(context)
        self._buffer.append((int(Kind.DATASET), _time_ns(), label, ctx, pytorch.dataset_info(dataset)))

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
        if not self._fork_child:
            flags = {"create_graph": bool(create_graph), "create_svg": bool(create_svg)}
            self._buffer.append((int(Kind.RUN_END), end_ns, status, flags))
        self._buffer.append((int(Kind.BYE), end_ns, {"pid": os.getpid()}))
        stats = self._sender.close(self.config.end_timeout_s)
        report = RunReport(self.layout.root, self.rank, status, stats)
        if self._fork_child:  # the parent owns the rank's end: only this stream is flushed
            self._ended_report = report
            return report
        if stats.events_spilled and self.config.sidecar != "off":
            report.problems.append(
                f"{stats.events_spilled} events went to the spool (sidecar slow or gone); "
                "they are merged from there"
            )
        self._write_done(status, end_ns, stats, create_graph, create_svg)
        cfg = self.config
        conclude(report, self.layout, self.placement.world_size, cfg.merge, cfg.merge_wait_s, self._sidecar)
        for problem in report.problems:
            log.warning("yprov: rank %d: %s", self.rank, problem)
        self._ended_report = report
        return report

    def _write_done(self, status: str, end_ns: int, stats: SenderStats, graph: bool, svg: bool) -> None:
        marker = {
            "rank": self.rank,
            "status": status,
            "world_size": self.placement.world_size,
            "node": self.placement.node,
            "stream": self.stream,
            "ended_ts_ns": end_ns,
            "delivery": stats.as_dict(),
            "create_graph": graph,
            "create_svg": svg,
        }
        write_json_atomic(self.layout.done_marker(self.rank), marker)
