"""yProv4ML's torch wrappers. Importing this module imports torch; ``import yprov_hpc`` does not
(the names load on first use).

- ``IndexedDatasetWrapper``: a Dataset whose items are ``(index, item)``.
- ``WeightDistributionTrackedModel``: ``log_epoch(epoch)`` logs each weight layer's statistics
  (mean, std, min, max, p25, p50, p75) as metrics ``<label>/<layer>/<stat>`` at step ``epoch``.
- ``ProvenanceTrackedModel``: every forward pass logs each Linear/Conv layer's output mean and
  std as metrics ``<label>/<layer>/output_mean`` and ``.../output_std``, at the forward count.
  yProv4ML wrote every activation to a Zarr store; the summary is what yprov-hpc keeps.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from torch.utils.data import Dataset

from yprov_hpc.compat.api import log_metric_if_active as log_metric

__all__ = ["IndexedDatasetWrapper", "ProvenanceTrackedModel", "WeightDistributionTrackedModel"]

_WEIGHT_LAYERS = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Embedding, nn.LayerNorm,
                  nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)  # fmt: skip
_ACTIVATION_LAYERS = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)


class IndexedDatasetWrapper(Dataset):  # type: ignore[type-arg]
    """A dataset whose item ``i`` is ``(i, dataset[i])``, so a training loop knows its indices."""

    def __init__(self, dataset: Any) -> None:
        super().__init__()
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> tuple[int, Any]:
        return index, self.dataset[index]


class _WrappedModel(nn.Module):
    """A model wrapped under a label, with the context its metrics go to."""

    def __init__(self, model_label: str, model: nn.Module, context: Any = None, chunk_size: int = 64) -> None:
        super().__init__()
        self.model = model
        self.model_name = model_label
        self.context = context
        self.chunk_size = chunk_size  # yProv4ML's Zarr chunking: accepted, nothing is chunked here

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        return self.model(*args, **kwargs)


class WeightDistributionTrackedModel(_WrappedModel):
    """Wraps ``model``; ``log_epoch(epoch)`` logs the weight statistics of every layer that has
    trainable weights."""

    def tracked_layers(self) -> dict[str, nn.Module]:
        """The layers whose weights are tracked, by name."""
        return {
            name: module
            for name, module in self.model.named_modules()
            if isinstance(module, _WEIGHT_LAYERS)
            and any(p.requires_grad for p in module.parameters(recurse=False))
        }

    def log_epoch(self, epoch: int) -> None:
        """Log each tracked layer's weight statistics at step ``epoch``."""
        for name, module in self.tracked_layers().items():
            weights = [p.detach().float().flatten().cpu() for n, p in module.named_parameters(recurse=False)
                       if "weight" in n]  # fmt: skip
            if not weights:
                continue
            w = torch.cat(weights)
            q = torch.quantile(w, torch.tensor([0.25, 0.5, 0.75]))
            stats = {"mean": w.mean(), "std": w.std() if w.numel() > 1 else torch.tensor(0.0),
                     "min": w.min(), "max": w.max(), "p25": q[0], "p50": q[1], "p75": q[2]}  # fmt: skip
            for stat, value in stats.items():
                log_metric(f"{self.model_name}/{name}/{stat}", float(value), self.context, epoch)

    def close(self) -> None:
        """Nothing to flush: the statistics were logged as they were computed."""


class ProvenanceTrackedModel(_WrappedModel):
    """Wraps ``model``; each forward pass logs every Linear/Conv layer's output mean and std."""

    def __init__(self, model_label: str, model: nn.Module, context: Any = None, chunk_size: int = 64) -> None:
        super().__init__(model_label, model, context, chunk_size)
        self.forward_count = 0
        self.handles = [
            module.register_forward_hook(self._hook(name))
            for name, module in model.named_modules()
            if isinstance(module, _ACTIVATION_LAYERS)
        ]

    def _hook(self, name: str) -> Any:
        def hook(_module: nn.Module, _inputs: Any, output: Any) -> None:
            if isinstance(output, torch.Tensor):
                out = output.detach().float()
                std = out.std() if out.numel() > 1 else torch.tensor(0.0)
                prefix = f"{self.model_name}/{name}"
                log_metric(f"{prefix}/output_mean", float(out.mean()), self.context, self.forward_count)
                log_metric(f"{prefix}/output_std", float(std), self.context, self.forward_count)

        return hook

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        result = self.model(*args, **kwargs)
        self.forward_count += 1
        return result

    def close(self) -> None:
        """Remove the hooks from the wrapped model."""
        for handle in self.handles:
            handle.remove()
        self.handles.clear()
