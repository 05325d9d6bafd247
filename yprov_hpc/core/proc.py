"""A process's start time without importing psutil (about 8 ms), for the start of a run.

On Linux it is read from ``/proc/<pid>/stat`` (field 22, clock ticks after boot) and
``/proc/stat`` (``btime``), which is exactly what ``psutil.Process(pid).create_time()``
computes; elsewhere, or when those files say something unexpected, psutil answers.
"""

from __future__ import annotations

import os

__all__ = ["create_time"]

_MAX_STAT_BYTES = 4096
_boot_time: float | None = None


def _read(path: str) -> str | None:
    try:
        with open(path, "rb") as f:
            return f.read(_MAX_STAT_BYTES).decode("ascii", "replace")
    except OSError:
        return None


def _boot() -> float | None:
    """``btime`` of ``/proc/stat``, read a line at a time: it follows a line per CPU and the
    interrupt counts, far past the first 4 KB on a large node (at most 64 MiB are read)."""
    global _boot_time
    if _boot_time is None:
        try:
            with open("/proc/stat", "rb") as f:
                for _, line in zip(range(1 << 20), f, strict=False):
                    if line.startswith(b"btime "):
                        value = line[6:].strip()
                        if value.isdigit() and len(value) < 20:
                            _boot_time = float(value)
                        break
        except OSError:
            return None
    return _boot_time


def _from_proc(pid: int) -> float | None:
    text = _read(f"/proc/{pid}/stat")
    if text is None or ")" not in text:
        return None
    fields = text[text.rindex(")") + 2 :].split()  # the name in parentheses may hold spaces
    boot = _boot()
    if len(fields) < 20 or not fields[19].isdigit() or boot is None:
        return None
    try:
        ticks = os.sysconf("SC_CLK_TCK")
    except (ValueError, OSError):
        return None
    return boot + int(fields[19]) / ticks if ticks > 0 else None


def create_time(pid: int) -> float | None:
    """Seconds since the epoch at which ``pid`` started; None if there is no such process."""
    started = _from_proc(pid)
    if started is not None:
        return started
    import psutil

    try:
        return float(psutil.Process(pid).create_time())
    except (psutil.Error, OverflowError, ValueError):
        return None
