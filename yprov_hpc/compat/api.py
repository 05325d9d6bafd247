"""yProv4ML's module-level verbs, on top of yprov-hpc's real API (``yprov_hpc.api``).

Each function accepts the signatures of yprov4ml 3.2.8, of the older documented ``prov4ml`` API
and of the paper, resolves argument orders by the values' types, maps the keywords that mean
something here and warns once about the others (docs/compat.md has the table). The PyTorch
verbs are in ``torch_api``.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from yprov_hpc import api as _api
from yprov_hpc.compat import finals as _finals
from yprov_hpc.compat import hooks, pending
from yprov_hpc.compat.binding import bind
from yprov_hpc.compat.coerce import looks_like_namespace, metric_points, step_of
from yprov_hpc.compat.contexts import _SUBCONTEXTS, resolve_context
from yprov_hpc.compat.enums import CompressorType, MetricsType
from yprov_hpc.compat.warn import ignored, warn_once
from yprov_hpc.core.config import ENV_NAMESPACE
from yprov_hpc.core.context import Context as _CoreContext
from yprov_hpc.core.errors import (
    InvalidArgumentError,
    MetricValueError,
    NoActiveRunError,
)

if TYPE_CHECKING:
    from yprov_hpc.rank.ending import RunReport
    from yprov_hpc.rank.run import Run

__all__ = [
    "DEFAULT_NAMESPACE",
    "end_run",
    "get_artifacts_dir",
    "get_run_dir",
    "log_carbon_metrics",
    "log_current_execution_time",
    "log_metric",
    "log_metric_if_active",
    "log_metrics",
    "log_param",
    "log_params",
    "log_provenance_documents",
    "log_system_metrics",
    "start_run",
]

log = logging.getLogger("yprov_hpc")

DEFAULT_NAMESPACE = "www.example.org"  # yProv4ML's own default (its itwinai logger's)

_START_LAYOUT = (
    "provenance_save_dir",
    "collect_all_processes",
    "save_after_n_logs",
    "rank",
    "metrics_file_type",
    "csv_separator",
    "use_compressor",
    "use_run_id",
)
_START_KEYWORDS = {
    "experiment_name",
    "prov_user_namespace",
    "disable_codecarbon",
    "unify_experiments",
    # the real API's keyword-only settings, passed through
    "world_size",
    "local_rank",
    "run_id",
    "sidecar",
    "end_timeout_s",
    "handle_sigterm",
    "auto_merge",
    "merge",
}


def _names_from_positionals(args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[Any, ...]:
    """Move the leading name positionals into ``kwargs`` by what they look like (3.2.8: the
    experiment first; the paper and older docs: the namespace first); return the rest."""
    slots = [n for n in ("prov_user_namespace", "experiment_name") if n not in kwargs]
    lead = args[: len(slots)]
    if len(lead) == 1:
        if len(slots) == 1:
            kwargs[slots[0]] = lead[0]
        else:
            kwargs["prov_user_namespace" if looks_like_namespace(lead[0]) else "experiment_name"] = lead[0]
    elif len(lead) == 2:
        first, second = lead
        if second is None or (looks_like_namespace(second) and not looks_like_namespace(first)):
            kwargs["experiment_name"], kwargs["prov_user_namespace"] = first, second
        elif first is None or (looks_like_namespace(first) and not looks_like_namespace(second)):
            kwargs["prov_user_namespace"], kwargs["experiment_name"] = first, second
        else:
            raise InvalidArgumentError(
                "start_run",
                "experiment_name/prov_user_namespace",
                tuple(lead),
                "told apart: pass experiment_name= and prov_user_namespace= by keyword "
                "(yprov4ml 3.2.8 takes the experiment first, the paper the namespace first)",
            )
    return args[len(lead) :]


def start_run(*args: Any, **kwargs: Any) -> Run:
    """Start the run. Accepts ``start_run(experiment_name, prov_user_namespace=None, ...)`` as in
    yprov4ml 3.2.8, ``start_run(prov_user_namespace, experiment_name, ...)`` as in the paper, and
    every keyword of both; the namespace defaults to ``$YPROV_NAMESPACE`` or www.example.org."""
    rest = _names_from_positionals(args, kwargs)
    layout = list(_START_LAYOUT)
    if len(rest) > 4 and isinstance(rest[4], bool):  # the older docs' 7th: disable_codecarbon
        layout[4] = "disable_codecarbon"
    opts = bind("start_run", rest, kwargs, layout, _START_KEYWORDS)
    _warn_start_options(opts)
    use_run_id = opts.pop("use_run_id", None)
    if use_run_id is not None:
        opts.setdefault("run_id", str(use_run_id))
    if opts.get("prov_user_namespace") is None and not os.environ.get(ENV_NAMESPACE):
        opts["prov_user_namespace"] = DEFAULT_NAMESPACE
    real = {k: v for k, v in opts.items() if v is not None}
    run = _api.start_run(**real)
    pending.replay()
    return run


_requested: dict[str, Any] = {}


def requested_options() -> dict[str, Any]:
    """The yProv4ML-only options the last start_run was given (for ``PROV4ML_DATA``)."""
    return dict(_requested)


def _warn_start_options(opts: dict[str, Any]) -> None:
    _requested.clear()
    _requested.update(
        {
            k: opts.get(k)
            for k in (
                "metrics_file_type",
                "csv_separator",
                "use_compressor",
                "unify_experiments",
                "disable_codecarbon",
            )
        }
    )
    kind = opts.pop("metrics_file_type", None)
    if kind is not None and kind not in ("csv", MetricsType.CSV):
        warn_once("start_run.metrics_file_type", "metrics_file_type is accepted; series are Parquet here")
    separator = opts.pop("csv_separator", None)
    if separator not in (None, ","):
        warn_once("start_run.csv_separator", "csv_separator is accepted; no CSV series are written")
    compressor = opts.pop("use_compressor", None)
    if compressor not in (None, False, CompressorType.NONE):
        warn_once("start_run.use_compressor", "use_compressor is accepted; series are always compressed")
    ignored("start_run", disable_codecarbon=opts.pop("disable_codecarbon", None))
    ignored("start_run", unify_experiments=opts.pop("unify_experiments", None))


def end_run(
    create_graph: bool | None = False,
    create_svg: bool | None = False,
    crate_ro_crate: bool | None = False,
    create_card: bool | None = False,
) -> RunReport:
    """End the run (yProv4ML's four flags). The RO-Crate and model-card requests go to
    ``hooks.after_end_run`` and never turn a finished training into a failed run."""
    if _api.active_run() is not None:
        _finals.flush()
    report = _api.end_run(create_graph=bool(create_graph), create_svg=bool(create_svg))
    if crate_ro_crate or create_card:
        try:
            hooks.after_end_run(report, bool(crate_ro_crate), bool(create_card))
        except Exception:  # an export must never fail the finished run
            log.exception("yprov: end_run: the export after the run failed; the run is finished")
            report.problems.append("the RO-Crate / model card export failed (see the log)")
    return report


def log_provenance_documents(
    create_graph: bool | None = False, create_svg: bool | None = False, crate_ro_crate: bool | None = False
) -> RunReport:
    """yProv4ML's itwinai spelling of ``end_run``."""
    return end_run(create_graph, create_svg, crate_ro_crate)


def get_run_dir() -> Path:
    """The active run's directory."""
    return _api.get_run_dir()


def get_artifacts_dir() -> Path:
    """This rank's artifacts directory in the active run."""
    run = _api.active_run()
    if run is None:
        raise NoActiveRunError("get_artifacts_dir")
    return run.layout.artifacts_dir(run.rank)


def log_metric(
    key: str,
    value: Any,
    context: Any = None,
    step: Any = None,
    source: Any = None,
    timestamp: Any = None,
) -> None:
    """One metric value (3.2.8's signature). The real API's fast path is tried first; on a value
    or step it refuses, yProv4ML's coercions apply: None -> NaN, a list -> one point per
    element, an integral float step -> int."""
    if source is not None or timestamp is not None:
        ignored("log_metric", source=source, timestamp=timestamp)
    if type(context) is str:
        if _SUBCONTEXTS:
            context = _SUBCONTEXTS.get(context, context)
    elif context is not None and not isinstance(context, _CoreContext):
        context = resolve_context(context)
    if _finals.REGISTERED and key in _finals.REGISTERED:
        for point in metric_points(key, value):
            _finals.update(key, point)
    run = _api._active  # straight to the Run: one frame less on the hot path
    try:
        if run is None:
            _api.log_metric(key, value, context, step)  # raises NoActiveRunError, naming the call
        else:
            run.log_metric(key, value, context, step)
    except (MetricValueError, InvalidArgumentError):
        points = metric_points(key, value)
        whole_step = step_of("log_metric", step)
        if not points:
            warn_once(f"log_metric.empty.{key}", f"log_metric({key!r}): an empty list records nothing")
        for point in points:
            _api.log_metric(key, point, context, whole_step)


def log_metric_if_active(key: str, value: Any, context: Any = None, step: Any = None) -> None:
    """``log_metric`` for the wrappers (a loss function, a forward hook), which run inside
    training: with no active run the value is skipped with a one-time warning, not raised."""
    if _api.active_run() is None:
        warn_once("wrapper.no_run", f"{key!r} from a tracked function or model: not recorded, no active run")
        return
    log_metric(key, value, context, step)


def log_metrics(metrics: Mapping[str, Any], context: Any = None, step: Any = None) -> None:
    """Several metrics at one step, each as ``log_metric``."""
    if not isinstance(metrics, Mapping):
        raise InvalidArgumentError("log_metrics", "metrics", metrics, "a mapping of name to value")
    for key, value in metrics.items():
        log_metric(key, value, context, step)


def log_param(key: str, value: Any, context: Any = None, source: Any = None, is_input: Any = None) -> None:
    """A param (3.2.8's signature). Logged again with a new value, it becomes the param's next
    revision (``prov:wasRevisionOf`` the previous value); the same value again is a no-op."""
    if pending.hold_if_no_run(log_param, key, value, context, source, is_input):
        return
    ignored("log_param", context=context, source=source, is_input=is_input)
    run = _api.active_run()
    if run is None:
        _api.log_param(key, value)  # raises NoActiveRunError, naming the call
        return
    run.log_param(key, value, revision=True)


def log_params(params: Mapping[str, Any]) -> None:
    """Several params, each as ``log_param``."""
    if not isinstance(params, Mapping):
        raise InvalidArgumentError("log_params", "params", params, "a mapping of name to value")
    for key, value in params.items():
        log_param(key, value)


def log_current_execution_time(label: str, context: Any = None, step: Any = None) -> None:
    """Seconds since start_run under ``label``."""
    ctx = None if context is None else resolve_context(context)
    _api.log_current_execution_time(label, ctx, step_of("log_current_execution_time", step))


def log_system_metrics(context: Any = None, step: Any = None) -> None:
    """Mark this moment for the node sidecar's system samples."""
    ctx = None if context is None else resolve_context(context)
    _api.log_system_metrics(ctx, step_of("log_system_metrics", step))


def log_carbon_metrics(context: Any = None, step: Any = None) -> None:
    """Mark this moment for energy and carbon (from the node sidecar)."""
    ctx = None if context is None else resolve_context(context)
    _api.log_carbon_metrics(ctx, step_of("log_carbon_metrics", step))
