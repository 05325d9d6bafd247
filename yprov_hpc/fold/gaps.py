"""Telemetry gaps: where a node's sample stream has holes, or stops before the job's end (a dead
sidecar or aggregator), so that a node's energy is never silently cut short."""

from __future__ import annotations

import itertools
from typing import Any

__all__ = ["GAP_INTERVALS", "sample_interval_ns", "telemetry_gaps"]

GAP_INTERVALS = 3  # a hole longer than this many sample intervals is a gap
DEFAULT_INTERVAL_NS = 1_000_000_000  # the sidecar's default interval, when the samples cannot tell


def sample_interval_ns(times: list[int], system: list[dict[str, Any]]) -> int:
    """The node's sample interval: what its samples say (``interval_s``), else the median spacing
    of its system samples, else the sidecar's default."""
    for values in system[:1]:
        stated = values.get("interval_s")
        if isinstance(stated, (int, float)) and not isinstance(stated, bool) and 0.01 <= stated <= 86400:
            return int(stated * 1e9)
    steps = sorted(b - a for a, b in itertools.pairwise(times) if b > a)
    return steps[len(steps) // 2] if steps else DEFAULT_INTERVAL_NS


def telemetry_gaps(
    node: str, times: list[int], window: tuple[int, int], interval_ns: int
) -> list[dict[str, Any]]:
    """Gaps longer than GAP_INTERVALS intervals inside the run's ``window``, in time order."""
    t0, t1 = window
    limit = GAP_INTERVALS * interval_ns
    if t1 - t0 <= limit:
        return []
    pts = sorted(set(times))
    if not pts:
        return [_gap(node, t0, t1, "no samples from this node")]
    gaps = []
    if pts[0] - t0 > limit:
        gaps.append(_gap(node, t0, min(pts[0], t1), "no samples yet at the job's start"))
    for a, b in itertools.pairwise(pts):
        lo, hi = max(a, t0), min(b, t1)
        if b - a > limit and hi > lo:
            gaps.append(
                _gap(node, lo, hi, f"no samples for {(b - a) / 1e9:.1f} s (interval {interval_ns / 1e9:g} s)")
            )
    if t1 - pts[-1] > limit:
        gaps.append(
            _gap(
                node,
                max(pts[-1], t0),
                t1,
                "sample stream stopped before the job's end (sidecar or aggregator gone?)",
            )
        )
    return gaps


def _gap(node: str, start: int, end: int, reason: str) -> dict[str, Any]:
    return {"node": node, "from_ts_ns": start, "to_ts_ns": end, "reason": reason}
