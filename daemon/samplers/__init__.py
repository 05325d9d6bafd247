"""The node's samplers: one protocol, one implementation per source, one schedule each."""

from .base import Sampler, SamplerUnavailable
from .nvml import NvmlSampler
from .rapl import RaplSampler
from .schedule import SamplerThread
from .system import SystemSampler

__all__ = ["NvmlSampler", "RaplSampler", "Sampler", "SamplerThread", "SamplerUnavailable", "SystemSampler"]
