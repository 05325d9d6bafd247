"""``log_flops_per_batch`` / ``log_flops_per_epoch`` with torch's FLOP counter.

As in yProv4ML the value logged is the running total for the label: the FLOPs of one forward
pass over the batch (per epoch: over one sample, times the dataset's length), added to what the
label logged before. The counting pass runs under ``no_grad`` in eval mode (so BatchNorm
statistics and dropout RNG are untouched) and restores the model's mode.
"""

from __future__ import annotations

from typing import Any

from yprov_hpc.compat.api import log_metric
from yprov_hpc.compat.coerce import is_model
from yprov_hpc.compat.scope import run_state
from yprov_hpc.core.errors import InvalidArgumentError

__all__ = ["count_flops", "log_flops_per_batch", "log_flops_per_epoch"]


def count_flops(model: Any, inputs: Any) -> int:
    """FLOPs of one forward pass of ``model`` on ``inputs`` (torch's FlopCounterMode)."""
    if not is_model(model):
        raise InvalidArgumentError("log_flops", "model", model, "a torch.nn.Module")
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    was_training = model.training
    counter = FlopCounterMode(display=False)
    try:
        model.eval()
        with torch.no_grad(), counter:
            model(inputs)
    finally:
        model.train(was_training)
    return int(counter.get_total_flops())


def _inputs_of(batch: Any) -> Any:
    return batch[0] if isinstance(batch, (tuple, list)) and batch else batch


def _add(label: str, flops: int) -> int:
    totals = run_state("flops_totals")
    totals[label] = totals.get(label, 0) + flops
    return int(totals[label])


def log_flops_per_batch(label: str, model: Any, batch: Any, context: Any = None, step: Any = None) -> None:
    """The running total of forward FLOPs for ``label``, adding one pass over ``batch`` (an
    ``(inputs, targets)`` pair or the inputs)."""
    log_metric(label, _add(label, count_flops(model, _inputs_of(batch))), context, step)


def log_flops_per_epoch(label: str, model: Any, dataset: Any, context: Any = None, step: Any = None) -> None:
    """The running total of forward FLOPs for ``label``, adding one epoch over ``dataset``:
    one sample's FLOPs times the dataset's length."""
    sample = _inputs_of(dataset[0])
    batched = sample.unsqueeze(0) if hasattr(sample, "unsqueeze") else sample
    log_metric(label, _add(label, count_flops(model, batched) * len(dataset)), context, step)
