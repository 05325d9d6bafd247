"""A generated MNIST-like data set (28x28 grey images, 10 classes): no download, learnable.

Each class has a fixed random template; a sample is its class template plus noise. Samples are
generated from their index, so the data set is the same on every rank and every run.
"""

from __future__ import annotations

import torch
from torch.utils.data import Dataset


class SyntheticMNIST(Dataset[tuple[torch.Tensor, int]]):
    """``len`` samples of shape (1, 28, 28), labels 0-9."""

    def __init__(self, size: int = 2000, seed: int = 0, transform: object = None) -> None:
        self.size = size
        self.seed = seed
        self.transform = transform
        gen = torch.Generator().manual_seed(seed)
        self.templates = torch.rand(10, 1, 28, 28, generator=gen)

    def __len__(self) -> int:
        return self.size

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        label = index % 10
        gen = torch.Generator().manual_seed(self.seed * 1_000_003 + index)
        image = (self.templates[label] + 0.3 * torch.randn(1, 28, 28, generator=gen)).clamp(0, 1)
        if self.transform is not None:
            image = self.transform(image)  # type: ignore[operator]
        return image, label


class Compose:
    """Apply transforms in order (torchvision's Compose, without needing torchvision)."""

    def __init__(self, transforms: list[object]) -> None:
        self.transforms = transforms

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        for t in self.transforms:
            x = t(x)  # type: ignore[operator]
        return x

    def __repr__(self) -> str:
        return f"Compose({self.transforms!r})"


class RandomNoise:
    """Add Gaussian noise (a random augmentation, like the paper's RandomRotation)."""

    def __init__(self, std: float) -> None:
        self.std = std

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.std * torch.randn_like(x)

    def __repr__(self) -> str:
        return f"RandomNoise(std={self.std})"


class MNISTModel(torch.nn.Module):
    """A small MLP classifier."""

    def __init__(self, hidden: int = 64) -> None:
        super().__init__()
        self.net = torch.nn.Sequential(
            torch.nn.Flatten(), torch.nn.Linear(28 * 28, hidden), torch.nn.ReLU(), torch.nn.Linear(hidden, 10)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)  # type: ignore[no-any-return]
