"""psutil: node CPU and memory, disk and network I/O, and each rank process's CPU and memory."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import psutil

from .base import SamplerUnavailable


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

    def open(self) -> None:
        try:
            psutil.cpu_times()
            psutil.virtual_memory()
        except Exception as exc:
            raise SamplerUnavailable(self.name, f"psutil cannot read the node ({exc})") from None
        psutil.cpu_percent(None)  # prime the node's utilisation counter

    def sample(self) -> dict[str, Any]:
        mem = psutil.virtual_memory()
        values: dict[str, Any] = {
            "cpu_percent": psutil.cpu_percent(None),
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
                    proc.cpu_percent(None)
                with proc.oneshot():
                    cpu = proc.cpu_times()
                    ranks[str(rank)] = {
                        **known,  # pid, local rank, the rank's GPU hints
                        "local_rank": known.get("local_rank", rank),
                        "cpu_s": float(cpu.user + cpu.system + cpu.children_user + cpu.children_system),
                        "cpu_percent": proc.cpu_percent(None),
                        "rss_bytes": int(proc.memory_info().rss),
                    }
            except psutil.Error:  # the rank ended
                self._procs.pop(pid, None)
        values["ranks"] = ranks
        return values

    def close(self) -> None:
        self._procs.clear()
