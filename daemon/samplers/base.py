"""The sampler protocol. A sampler reads one source of the node and returns plain values."""

from __future__ import annotations

from typing import Any, Protocol


class SamplerUnavailable(Exception):
    """The source cannot be read here; ``reason`` says why, for one clear warning."""

    def __init__(self, source: str, reason: str) -> None:
        self.source = source
        self.reason = reason
        super().__init__(f"{source}: {reason}")


class Sampler(Protocol):
    """A source of node samples."""

    name: str

    def open(self) -> None:
        """Check the source can be read; raise SamplerUnavailable if not."""

    def sample(self) -> dict[str, Any]:
        """One reading: JSON-able values, cumulative counters already unwrapped."""

    def close(self) -> None:
        """Release the source."""
