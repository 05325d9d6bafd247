"""psutil: node CPU and memory, disk and network I/O, and each rank process's CPU and memory.

Every utilisation figure is measured over a real window: the node's over at least
``MIN_WINDOW_S`` (the first reading waits for it rather than report a 0 % from a window of a
few microseconds), a rank's since its previous reading or, the first time it is seen, since the
process started.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import psutil

from yprov_hpc.core.hardware import cpu_model

from .base import SamplerUnavailable

MIN_WINDOW_S = 0.1


def _busy_s(times: Any) -> float:
    return float(
        sum(v for k, v in times._asdict().items() if k not in ("idle", "iowait", "guest", "guest_nice"))
    )


class SystemSampler:
    """Node and per-rank load. ``rank_procs`` returns the node's live
    {rank: {"pid": ..., "local_rank": ...}} map (from the ranks' hellos)."""

    name = "system"

    def __init__(self, rank_procs: Callable[[], dict[int, dict[str, Any]]]) -> None:
        self._rank_procs = rank_procs
        self._procs: dict[int, psutil.Process] = {}
        self._last: dict[int, tuple[float, float]] = {}  # pid -> (cpu_s, monotonic time) at last reading
        self._primed_at = 0.0
        self._cpu_model = ""

    def open(self) -> None:
        try:
            psutil.cpu_times()
            psutil.virtual_memory()
        except Exception as exc:
            raise SamplerUnavailable(self.name, f"psutil cannot read the node ({exc})") from None
        psutil.cpu_percent(None)  # prime the node's utilisation counter
        self._primed_at = time.monotonic()
        self._cpu_model = cpu_model()

    def sample(self) -> dict[str, Any]:
        wait = self._primed_at + MIN_WINDOW_S - time.monotonic()
        if wait > 0:  # only right after open: measure over a real window, not a few microseconds
            time.sleep(wait)
        mem = psutil.virtual_memory()
        values: dict[str, Any] = {
            "cpu_percent": psutil.cpu_percent(None),
            "cpu_model": self._cpu_model,
            "cpu_busy_s": _busy_s(psutil.cpu_times()),
            "cpu_count": psutil.cpu_count() or 1,
            "mem_used_bytes": int(mem.total - mem.available),
            "mem_total_bytes": int(mem.total),
        }
        disk = psutil.disk_io_counters()
        if disk is not None:
            values["disk_read_bytes"] = int(disk.read_bytes)
            values["disk_write_bytes"] = int(disk.write_bytes)
        net = psutil.net_io_counters()
        if net is not None:
            values["net_sent_bytes"] = int(net.bytes_sent)
            values["net_recv_bytes"] = int(net.bytes_recv)
        ranks: dict[str, Any] = {}
        for rank, known in self._rank_procs().items():
            pid = known["pid"]
            proc = self._procs.get(pid)
            try:
                if proc is None:
                    proc = self._procs[pid] = psutil.Process(pid)
                with proc.oneshot():
                    cpu = proc.cpu_times()
                    cpu_s = float(cpu.user + cpu.system + cpu.children_user + cpu.children_system)
                    ranks[str(rank)] = {
                        **known,  # pid, local rank, the rank's GPU hints
                        "local_rank": known.get("local_rank", rank),
                        "cpu_s": cpu_s,
                        "cpu_percent": self._rank_percent(proc, cpu_s),
                        "rss_bytes": int(proc.memory_info().rss),
                    }
            except psutil.Error:  # the rank ended
                self._procs.pop(pid, None)
                self._last.pop(pid, None)
        values["ranks"] = ranks
        return values

    def _rank_percent(self, proc: psutil.Process, cpu_s: float) -> float:
        """CPU % of one rank since its previous reading (first time: since it started)."""
        now = time.monotonic()
        last = self._last.get(proc.pid)
        self._last[proc.pid] = (cpu_s, now)
        if last is not None and now > last[1]:
            return 100.0 * max(0.0, cpu_s - last[0]) / (now - last[1])
        age_s = time.time() - proc.create_time()
        return 100.0 * cpu_s / age_s if age_s > 0 else 0.0

    def close(self) -> None:
        self._procs.clear()
        self._last.clear()
