"""The sidecar's live status: what ``yprov top`` shows of a running job.

Rewritten in place every sample interval to ``journal/status-<node>.json`` on the run's shared
directory, so a login node can read it. In place, through one descriptor kept open: no new
directory entry per write, so deleting the run directory never races with it; a reader that
catches a write half done gets JSON that does not parse, and reads again. It holds the
sidecar's pid and time, events per second, batches it holds without an ack, the ranks' spool
bytes, the node's power, and per rank its pid, whether it is alive, its last step and the
latest value of each metric (the first ``MAX_METRICS`` names). Only the tail of each batch is
looked at (``TAIL_EVENTS``): the cost is per batch, not per event, and the file is small.
"""

from __future__ import annotations

import os
import time
from typing import Any

import orjson

from yprov_hpc.core.layout import RunLayout
from yprov_hpc.wire.blocks import block_tail, is_block, tail_metrics

__all__ = ["MAX_METRICS", "STATUS_VERSION", "LiveStatus"]

STATUS_VERSION = 1
MAX_METRICS = 32  # per rank
TAIL_EVENTS = 32  # per batch: the latest values, not every one


class LiveStatus:
    """Keeps the latest facts of the node and its ranks and writes them every interval."""

    def __init__(self, layout: RunLayout, node: str, interval_s: float) -> None:
        self._layout = layout
        self._node = node
        self._path = layout.status_file(node)
        self._interval_s = interval_s
        self._started = time.time()
        self._next = 0.0
        self._last_events = 0
        self._last_at = time.monotonic()
        self._ranks: dict[int, dict[str, Any]] = {}
        self._power: dict[str, float] = {}
        self._energy: dict[str, tuple[float, float]] = {}  # RAPL domain -> (time, energy J)
        self.writes = 0
        self._fd: int | None = None

    def note_batch(self, rank: int, events: list[list[Any]]) -> None:
        """The last step and metric values of one journaled batch of ``rank`` (its tail only)."""
        if rank < 0:
            return
        state = self._ranks.get(rank)
        if state is None:
            if len(self._ranks) >= 4096:
                return
            state = self._ranks[rank] = {"metrics": {}, "last_step": None, "last_ts_ns": 0}
        metrics: dict[str, float] = state["metrics"]
        last: Any = events[-1] if events else None
        if is_block(last) and len(last) == 6 and len(last[2]) >= TAIL_EVENTS:  # the common case
            names, values, step, last_ns = block_tail(last, TAIL_EVENTS)
            self._note(state, metrics, dict(zip(names, values, strict=True)), step, last_ns)
            return
        tail = tail_metrics(events, TAIL_EVENTS)
        if not tail.names:
            return
        step = next((s for s in reversed(tail.steps) if s is not None), None)
        self._note(state, metrics, dict(zip(tail.names, tail.values, strict=True)), step, max(tail.ts_ns))

    @staticmethod
    def _note(
        state: dict[str, Any],
        metrics: dict[str, float],
        latest: dict[str, float],
        step: int | None,
        last_ns: int,
    ) -> None:
        """Keep the latest values (the first MAX_METRICS names), the last step and time."""
        if len(metrics) + len(latest) <= MAX_METRICS:
            metrics.update(latest)
        else:
            for name, value in latest.items():
                if name in metrics or len(metrics) < MAX_METRICS:
                    metrics[name] = value
        if step is not None:
            state["last_step"] = step
        state["last_ts_ns"] = max(state["last_ts_ns"], last_ns)

    def note_sample(self, ts_ns: int, source: str, values: dict[str, Any]) -> None:
        """The node's power from a sample: GPUs' power, and RAPL energy over time."""
        if source == "nvml":
            gpus = values.get("gpus") or {}
            self._power["gpus"] = sum(float(g.get("power_w") or 0.0) for g in gpus.values())
        elif source == "rapl":
            now = ts_ns / 1e9
            total = 0.0
            for name, domain in (values.get("domains") or {}).items():
                energy = float(domain.get("energy_j") or 0.0)
                before = self._energy.get(name)
                self._energy[name] = (now, energy)
                if before is not None and now > before[0]:
                    total += (energy - before[1]) / (now - before[0])
            self._power["cpu_dram"] = total

    def maybe_write(self, now: float, events: int, not_acked: int, procs: dict[int, dict[str, Any]]) -> bool:
        """Write the status file if an interval passed since the last write; True if written."""
        if now < self._next:
            return False
        self._next = now + self._interval_s
        rate = (events - self._last_events) / (now - self._last_at) if now > self._last_at else 0.0
        self._last_events, self._last_at = events, now
        ranks = {}
        for rank, state in sorted(self._ranks.items()):
            pid = (procs.get(rank) or {}).get("pid")
            ranks[str(rank)] = {**state, "pid": pid, "alive": _alive(pid)}
        for rank, proc in procs.items():  # ranks that said hello but sent no metric yet
            ranks.setdefault(
                str(rank), {"pid": proc.get("pid"), "alive": _alive(proc.get("pid")), "metrics": {}}
            )
        status = {
            "version": STATUS_VERSION,
            "node": self._node,
            "sidecar_pid": os.getpid(),
            "started": self._started,
            "written": time.time(),
            "interval_s": self._interval_s,
            "events": events,
            "events_per_s": round(rate, 1),
            "not_acked_batches": not_acked,
            "spool_bytes": _spool_bytes(self._layout),
            "power_w": round(sum(self._power.values()), 2) if self._power else None,
            "ranks": ranks,
        }
        data = orjson.dumps(status)
        try:
            if self._fd is None:
                self._fd = os.open(self._path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o644)
            os.pwrite(self._fd, data, 0)
            os.ftruncate(self._fd, len(data))
        except OSError:
            return False  # a full disk or a deleted directory: reported elsewhere; this is a view
        self.writes += 1
        return True

    def remove(self) -> None:
        """At stop: the status file goes with the sidecar (``top`` then says it stopped)."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
        self._path.unlink(missing_ok=True)


def _alive(pid: Any) -> bool:
    if type(pid) is not int or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _spool_bytes(layout: RunLayout) -> int:
    total = 0
    try:
        entries = list(os.scandir(layout.journal_dir))
    except OSError:
        return 0
    for entry in entries:
        if entry.name.startswith("spool-") and entry.name.endswith(".journal"):
            try:
                total += entry.stat(follow_symlinks=False).st_size
            except OSError:
                continue
    return total
