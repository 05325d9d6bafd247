"""yProv4ML's PyTorch verbs: ``log_model``, ``save_model_version``, ``log_dataset``, and FLOP counts.

Both argument orders are accepted and told apart by type: a model is a ``torch.nn.Module`` (or a
state_dict for ``save_model_version``), a dataset anything that is not the label, a label a
``str``. torch is imported only by the real API, once it is handed a torch object.
"""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Any

from yprov_hpc import api as _api
from yprov_hpc.compat import pending
from yprov_hpc.compat.binding import bind
from yprov_hpc.compat.coerce import is_model, step_of
from yprov_hpc.compat.contexts import resolve_context
from yprov_hpc.compat.warn import ignored, warn_once
from yprov_hpc.core.errors import InvalidArgumentError, InvalidKeyError

__all__ = ["log_dataset", "log_model", "save_model_version"]


def _ctx(context: Any) -> Any:
    return None if context is None else resolve_context(context)


def _is_context_like(value: Any) -> bool:
    return isinstance(value, (str, Enum))


# --- save_model_version ----------------------------------------------------------------------
_SMV_NEW = ("model_name", "model", "context", "source", "step", "incremental", "is_input",
            "log_copy_in_prov_directory", "other_attrs")  # fmt: skip
_SMV_OLD = ("model", "model_name", "context", "step", "timestamp")
_SMV_KEYWORDS = set(_SMV_NEW) | set(_SMV_OLD)


def _smv_layout(args: tuple[Any, ...]) -> tuple[str, ...]:
    if len(args) < 2:
        return _SMV_NEW if args and isinstance(args[0], str) else _SMV_OLD
    first, second = args[0], args[1]
    if isinstance(first, str) and not isinstance(second, str):
        layout = list(_SMV_NEW)
        if len(args) > 3 and not isinstance(args[3], str) and args[3] is not None:  # an int 4th: a step
            layout[3], layout[4] = "step", "source"
        return tuple(layout)
    if isinstance(second, str) and not isinstance(first, str):
        return _SMV_OLD
    raise InvalidArgumentError(
        "save_model_version", "model", (first, second), "a model (nn.Module or state_dict) beside a str name"
    )


def save_model_version(*args: Any, **kwargs: Any) -> Path | None:
    """The next numbered checkpoint of a model: ``(model_name, model, context, source, step, ...)``
    as in 3.2.8 or ``(model, model_name, context, step, timestamp)`` as in the older docs."""
    if pending.hold_if_no_run(save_model_version, *args, **kwargs):
        return None
    opts = bind("save_model_version", args, kwargs, _smv_layout(args), _SMV_KEYWORDS)
    model, name = opts.get("model"), opts.get("model_name")
    if type(name) is not str or not name:
        raise InvalidKeyError("save_model_version", name)
    if opts.get("incremental") is False:
        warn_once("save_model_version.incremental", "incremental=False: every save is a new numbered version")
    ignored(
        "save_model_version",
        source=opts.get("source"),
        is_input=opts.get("is_input"),
        log_copy_in_prov_directory=opts.get("log_copy_in_prov_directory"),
        other_attrs=opts.get("other_attrs"),
    )
    return _api.save_model_version(
        model,
        name,
        context=_ctx(opts.get("context")),
        step=step_of("save_model_version", opts.get("step")),
        timestamp=opts.get("timestamp"),
    )


# --- log_model -------------------------------------------------------------------------------
_LM_NEW = ("model_name", "model", "context", "source", "log_model_info", "log_model_layers",
           "log_copy_in_prov_directory", "is_input", "other_attrs")  # fmt: skip
_LM_REAL = ("model_name", "model", "log_model_info", "log_model_layers", "is_input", "sample_input",
            "context", "step")  # fmt: skip
_LM_KEYWORDS = set(_LM_NEW) | set(_LM_REAL) | {"model_label", "log_as_artifact"}


def _lm_layout(args: tuple[Any, ...]) -> tuple[str, ...]:
    swap = len(args) >= 2 and not isinstance(args[0], str) and isinstance(args[1], str)
    third_is_context = len(args) >= 3 and args[2] is not None and _is_context_like(args[2])
    layout = list(_LM_NEW if third_is_context else _LM_REAL)
    if swap or (len(args) == 1 and not isinstance(args[0], str)):
        layout[0], layout[1] = "model", "model_name"
    return tuple(layout)


def log_model(*args: Any, **kwargs: Any) -> None:
    """A model's description: ``(model_name, model, context, source, log_model_info, ...)`` as in
    3.2.8, ``(model, model_name, log_model_info, ...)`` as in the paper; a third positional is a
    context when it is a str or Enum, ``log_model_info`` when it is a bool. With
    ``log_copy_in_prov_directory=True`` or ``log_as_artifact=True`` the weights are also saved
    as a model version."""
    if pending.hold_if_no_run(log_model, *args, **kwargs):
        return
    opts = bind("log_model", args, kwargs, _lm_layout(args), _LM_KEYWORDS)
    name = opts.get("model_name", opts.get("model_label", "default"))
    if "model_name" in opts and "model_label" in opts:
        raise TypeError("log_model() got both model_name and model_label")
    model = opts.get("model")
    if not isinstance(name, str) and is_model(name) and isinstance(model, str):
        name, model = model, name  # keywords given the other way round
    ignored("log_model", source=opts.get("source"), other_attrs=opts.get("other_attrs"))
    context, step = _ctx(opts.get("context")), step_of("log_model", opts.get("step"))
    _api.log_model(
        name,
        model,
        log_model_info=bool(opts.get("log_model_info", True)),
        log_model_layers=bool(opts.get("log_model_layers", False)),
        is_input=bool(opts.get("is_input", False)),
        sample_input=opts.get("sample_input"),
        context=context,
        step=step,
    )
    if opts.get("log_copy_in_prov_directory") or opts.get("log_as_artifact"):
        _api.save_model_version(model, name, context=context, step=step)


# --- log_dataset -----------------------------------------------------------------------------
_LD_KEYWORDS = {"dataset", "dataset_label", "label", "context", "source", "log_dataset_info", "other_attrs"}


def log_dataset(*args: Any, **kwargs: Any) -> None:
    """A Dataset or DataLoader as an input: ``(dataset_label, dataset, context, ...)`` as in 3.2.8
    or ``(dataset, label, context)`` as in the older docs; the label is the ``str``."""
    if pending.hold_if_no_run(log_dataset, *args, **kwargs):
        return
    if len(args) >= 2 and isinstance(args[0], str) and isinstance(args[1], str):
        raise InvalidArgumentError("log_dataset", "dataset", args[:2], "a dataset beside a str label")
    swap = len(args) >= 2 and isinstance(args[1], str)
    first = ("dataset", "dataset_label") if swap or (args and not isinstance(args[0], str)) else (
        "dataset_label", "dataset")  # fmt: skip
    opts = bind("log_dataset", args, kwargs, (*first, "context", "source", "log_dataset_info",
                "other_attrs"), _LD_KEYWORDS)  # fmt: skip
    if "label" in opts and "dataset_label" in opts:
        raise TypeError("log_dataset() got both label and dataset_label")
    label = opts.get("dataset_label", opts.get("label"))
    if type(label) is not str or not label:
        raise InvalidKeyError("log_dataset", label)
    if opts.get("log_dataset_info") is False:
        warn_once(
            "log_dataset.log_dataset_info", "log_dataset_info=False: the dataset's shape is recorded anyway"
        )
    ignored("log_dataset", source=opts.get("source"), other_attrs=opts.get("other_attrs"))
    _api.log_dataset(opts.get("dataset"), label, _ctx(opts.get("context")))
