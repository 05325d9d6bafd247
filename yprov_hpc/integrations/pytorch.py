"""PyTorch: the verbs ``log_model``, ``save_model_version`` and ``log_dataset``, and the
descriptions of models, checkpoints and datasets they record.

Imported only when one of those verbs is called (``Run`` delegates to the functions here);
torch is never imported by ``import yprov_hpc``. Everything here runs in the calling (training)
thread, so it only reads: it never changes the model's mode, weights or RNG state, or a
loader's order.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import time
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from yprov_hpc.core.errors import InvalidArgumentError
from yprov_hpc.core.layout import safe_name
from yprov_hpc.rank.values import info_value, name_value, timestamp_value, where
from yprov_hpc.wire.records import Kind

if TYPE_CHECKING:
    from yprov_hpc.core.context import Context
    from yprov_hpc.rank.run import Run

FINGERPRINT_SAMPLES = 3


# --- the verbs (Run's methods of the same names call these) -------------------------------------
def log_model(
    run: Run,
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
    if isinstance(model_label, str) and not isinstance(model, str):
        label, module = model_label, model
    elif isinstance(model, str):
        label, module = model, model_label
    else:
        raise InvalidArgumentError("log_model", "model_label", model_label, "a str label")
    if not is_module(module):
        raise InvalidArgumentError("log_model", "model", module, "a torch.nn.Module")
    label = name_value("log_model", label)
    ctx, st = where("log_model", context, step)
    info: dict[str, Any] = (
        model_info(module)
        if log_model_info
        else {"class": type(module).__qualname__, "state_sha256": state_fingerprint(module.state_dict())}
    )
    info["is_input"] = bool(is_input)
    if log_model_layers:
        from yprov_hpc.core.atomic import write_bytes_atomic
        from yprov_hpc.core.hashing import sha256_file

        table = layer_table(module, sample_input)
        path = run.layout.artifacts_dir(run.rank) / "models" / f"{safe_name(label)}_layers.json"
        info["layers"] = len(table)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            write_bytes_atomic(path, json.dumps(table, indent=1).encode())
        except OSError as exc:  # a full disk: the model is still recorded, without its table
            info["layers_error"] = f"layer table not written: {exc}"[:4096]
        else:
            rel = path.relative_to(run.layout.root).as_posix()
            info.update(layers_path=rel, layers_sha256=sha256_file(path))
    run.emit((int(Kind.MODEL), time.time_ns(), label, ctx, st, info_value("log_model", info)))


def save_model_version(
    run: Run,
    model: Any,
    model_name: str,
    context: Context | str | None = None,
    step: int | None = None,
    timestamp: float | None = None,
) -> Path:
    """Save the model's state_dict as the next numbered version of ``model_name`` inside the
    run directory; versions of one name form a wasDerivedFrom chain. Returns the file."""
    model_name = name_value("save_model_version", model_name)
    if not (is_module(model) or isinstance(model, Mapping)):
        raise InvalidArgumentError("save_model_version", "model", model, "a torch.nn.Module or a state_dict")
    ctx, st = where("save_model_version", context, step)
    ts = timestamp_value("save_model_version", timestamp)
    version = run.next_model_version(model_name)
    name = safe_name(model_name)
    path = run.layout.artifacts_dir(run.rank) / "models" / name / f"{name}_v{version}.pt"
    file_sha, state_sha, size = save_checkpoint(model, path)
    info = {
        "version": version,
        "path": path.relative_to(run.layout.root).as_posix(),
        "size_bytes": size,
        "sha256": file_sha,
        "state_sha256": state_sha,
        "format": "torch.save(state_dict)",
        "user_timestamp": ts,
    }
    run.emit((int(Kind.MODEL_VERSION), time.time_ns(), model_name, ctx, st, info))
    return path


def log_dataset(run: Run, dataset: Any, label: str, context: Context | str | None = None) -> None:
    """Record a Dataset or DataLoader as an input of ``context`` (or of the run): samples,
    batch size, batches per epoch, shuffle, drop_last, workers, sampler (DistributedSampler:
    replicas and rank), dataset class, transforms, and a content fingerprint."""
    label = name_value("log_dataset", label)
    ctx, _ = where("log_dataset", context, None)
    info = info_value("log_dataset", dataset_info(dataset))
    run.emit((int(Kind.DATASET), time.time_ns(), label, ctx, info))


# --- descriptions -------------------------------------------------------------------------------


def _tensor_digest(h: Any, tensor: torch.Tensor) -> None:
    t = tensor.detach()
    h.update(f"{t.dtype}:{tuple(t.shape)}:".encode())
    if t.numel():
        flat = t.to("cpu").contiguous().reshape(-1)
        h.update(flat.view(torch.uint8).numpy().tobytes())


def state_fingerprint(state: Mapping[str, Any]) -> str:
    """sha256 of a state_dict's names, dtypes, shapes and values: equal iff the weights are equal."""
    h = hashlib.sha256()
    for name in sorted(state):
        h.update(name.encode() + b"\0")
        value = state[name]
        if isinstance(value, torch.Tensor):
            _tensor_digest(h, value)
        else:
            h.update(repr(value).encode())
    return h.hexdigest()


def _bytes(tensors: Any) -> int:
    return int(sum(t.numel() * t.element_size() for t in tensors))


def is_module(obj: Any) -> bool:
    """Whether ``obj`` is a torch.nn.Module."""
    return isinstance(obj, nn.Module)


def model_info(model: nn.Module) -> dict[str, Any]:
    """Size, memory, dtypes and devices of a model, and a fingerprint of its weights."""
    params = list(model.parameters())
    grads = [p.grad for p in params if p.grad is not None]
    buffers = list(model.buffers())
    return {
        "class": f"{type(model).__module__}.{type(model).__qualname__}",
        "parameters_total": int(sum(p.numel() for p in params)),
        "parameters_trainable": int(sum(p.numel() for p in params if p.requires_grad)),
        "parameter_bytes": _bytes(params),
        "gradient_bytes": _bytes(grads),
        "buffer_bytes": _bytes(buffers),
        "dtypes": sorted({str(t.dtype).replace("torch.", "") for t in [*params, *buffers]}),
        "devices": sorted({str(t.device) for t in [*params, *buffers]}),
        "modules": sum(1 for _ in model.modules()),
        "training_mode": model.training,
        "state_sha256": state_fingerprint(model.state_dict()),
    }


def _shapes(value: Any) -> Any:
    if isinstance(value, torch.Tensor):
        return list(value.shape)
    if isinstance(value, (list, tuple)):
        return [_shapes(v) for v in value]
    if isinstance(value, Mapping):
        return {str(k): _shapes(v) for k, v in value.items()}
    return type(value).__name__


def layer_table(model: nn.Module, sample_input: Any = None) -> list[dict[str, Any]]:
    """One row per module: name, type, parameter shapes and count, and, when a sample input is
    given, the input and output shapes seen in one forward pass (no_grad, eval mode, then the
    model's mode is restored)."""
    rows: dict[str, dict[str, Any]] = {}
    for name, module in model.named_modules():
        own = dict(module.named_parameters(recurse=False))
        rows[name or "(model)"] = {
            "name": name or "(model)",
            "type": type(module).__name__,
            "parameters": int(sum(p.numel() for p in own.values())),
            "parameter_shapes": {k: list(p.shape) for k, p in own.items()},
            "children": sum(1 for _ in module.children()),
        }
    if sample_input is not None:
        hooks = []
        for name, module in model.named_modules():
            row = rows[name or "(model)"]

            def hook(_m: nn.Module, inputs: Any, output: Any, row: dict[str, Any] = row) -> None:
                row["input_shapes"] = _shapes(inputs)
                row["output_shapes"] = _shapes(output)

            hooks.append(module.register_forward_hook(hook))
        was_training = model.training
        try:
            model.eval()
            with torch.no_grad():
                if isinstance(sample_input, Mapping):
                    model(**sample_input)
                elif isinstance(sample_input, tuple):
                    model(*sample_input)
                else:
                    model(sample_input)
        finally:
            model.train(was_training)
            for handle in hooks:
                handle.remove()
    return list(rows.values())


def save_checkpoint(model: nn.Module | Mapping[str, Any], path: Path) -> tuple[str, str, int]:
    """Save a state_dict to ``path``; return (file sha256, weights fingerprint, size)."""
    from yprov_hpc.core.hashing import sha256_file

    state = model.state_dict() if isinstance(model, nn.Module) else dict(model)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    torch.save(state, tmp)
    tmp.replace(path)
    return sha256_file(path), state_fingerprint(state), path.stat().st_size


# --- datasets ----------------------------------------------------------------------------------
def _describe_transform(dataset: Any) -> str:
    parts = []
    for attr in ("transform", "transforms", "target_transform"):
        value = getattr(dataset, attr, None)
        if value is not None:
            parts.append(f"{attr}={value!r}")
    return "; ".join(parts)


def _digest_sample(h: Any, sample: Any) -> None:
    if isinstance(sample, torch.Tensor):
        _tensor_digest(h, sample)
    elif isinstance(sample, (list, tuple)):
        for item in sample:
            _digest_sample(h, item)
    elif isinstance(sample, Mapping):
        for key in sorted(sample, key=str):
            h.update(str(key).encode())
            _digest_sample(h, sample[key])
    elif hasattr(sample, "__array__"):
        import numpy as np

        arr = np.asarray(sample)
        h.update(f"{arr.dtype}:{arr.shape}:".encode() + arr.tobytes())
    elif hasattr(sample, "tobytes"):  # PIL images
        h.update(sample.tobytes())
    else:
        h.update(repr(sample).encode())


def dataset_fingerprint(dataset: Any) -> str:
    """A cheap content fingerprint: sha256 of the length and of the samples at the first,
    middle and last index, read with the dataset's random transforms switched off for the read
    (so that the same data gives the same fingerprint). Empty when the dataset cannot be indexed."""
    try:
        n = len(dataset)
    except TypeError:
        return ""
    if n == 0:
        return hashlib.sha256(b"empty").hexdigest()
    base = dataset
    while hasattr(base, "dataset") and hasattr(base, "indices"):  # Subset
        base = base.dataset
    saved = {a: getattr(base, a) for a in ("transform", "target_transform", "transforms") if hasattr(base, a)}
    h = hashlib.sha256(str(n).encode())
    try:
        for attr in saved:
            setattr(base, attr, None)
        for index in sorted({0, n // 2, n - 1})[:FINGERPRINT_SAMPLES]:
            _digest_sample(h, dataset[index])
    except Exception:  # a dataset whose raw samples cannot be read without its transforms
        return ""
    finally:
        for attr, value in saved.items():
            setattr(base, attr, value)
    return h.hexdigest()


def dataset_info(data: Any) -> dict[str, Any]:
    """Counts, batching, shuffling, sampler and content fingerprint of a Dataset or DataLoader."""
    from torch.utils.data import DataLoader, RandomSampler
    from torch.utils.data.distributed import DistributedSampler

    info: dict[str, Any] = {}
    dataset = data
    if isinstance(data, DataLoader):
        dataset = data.dataset
        sampler = data.sampler
        batch_size = data.batch_size
        if batch_size is None:  # a custom batch_sampler
            batch_size = getattr(data.batch_sampler, "batch_size", None)
        info["loader"] = "DataLoader"
        info["batch_size"] = batch_size
        info["drop_last"] = bool(data.drop_last)
        info["num_workers"] = int(data.num_workers)
        info["sampler"] = type(sampler).__name__
        info["shuffle"] = isinstance(sampler, RandomSampler) or bool(getattr(sampler, "shuffle", False))
        with contextlib.suppress(TypeError):  # an iterable dataset has no length
            info["batches_per_epoch"] = len(data)
        if isinstance(sampler, DistributedSampler):
            info["num_replicas"] = sampler.num_replicas
            info["replica_rank"] = sampler.rank
            info["samples_per_replica"] = len(sampler)
            info["seed"] = sampler.seed
    info["dataset_class"] = f"{type(dataset).__module__}.{type(dataset).__qualname__}"
    try:
        info["samples"] = len(dataset)
    except TypeError:
        info["samples"] = None
    if hasattr(dataset, "indices") and hasattr(dataset, "dataset"):
        info["subset_of"] = f"{type(dataset.dataset).__qualname__} ({len(dataset.dataset)} samples)"
    inner = getattr(dataset, "dataset", dataset)  # a Subset's transforms live on its dataset
    info["transform"] = _describe_transform(inner) or _describe_transform(dataset)
    info["fingerprint_sha256"] = dataset_fingerprint(dataset)
    return info
