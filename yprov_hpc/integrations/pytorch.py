"""PyTorch: models, checkpoints and datasets, described for the PROV documents.

Imported only when ``log_model``, ``save_model_version`` or ``log_dataset`` is called; torch is
never imported by ``import yprov_hpc``. Everything here runs in the calling (training) thread,
so it only reads: it never changes the model's mode, weights or RNG state, or a loader's order.
"""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

FINGERPRINT_SAMPLES = 3


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
