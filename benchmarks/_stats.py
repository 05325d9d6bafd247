"""Shared helpers for the benchmarks: latency summaries and machine description."""

from __future__ import annotations

import os
import platform
import statistics
from typing import Any


def summarize(samples_ns: list[int]) -> dict[str, float]:
    """mean/p50/p99/p99.9/max in microseconds, and how many calls took over 1 ms."""
    s = sorted(samples_ns)
    n = len(s)

    def pct(p: float) -> float:
        return s[min(n - 1, int(p * n))] / 1000

    return {
        "mean_us": statistics.fmean(s) / 1000,
        "p50_us": pct(0.50),
        "p99_us": pct(0.99),
        "p99.9_us": pct(0.999),
        "max_us": s[-1] / 1000,
        "over_1ms": sum(1 for x in s if x > 1_000_000),
    }


def machine() -> dict[str, Any]:
    """What the numbers were measured on."""
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "os": platform.platform(),
    }
