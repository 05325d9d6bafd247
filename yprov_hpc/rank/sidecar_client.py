"""Finding the node's sidecar, and starting an embedded one when none runs.

Ranks of one node race here; a file lock in the run's journal directory makes exactly one of
them start the sidecar, and the others find it. The sidecar writes its ready file only after
its socket is bound, so a found ready file means a live endpoint.
"""

from __future__ import annotations

import fcntl
import logging
import math
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from yprov_hpc.core.layout import RunLayout
from yprov_hpc.core.untrusted import read_small_json

log = logging.getLogger("yprov_hpc")

SIDECAR_START_TIMEOUT_S = 15.0


@dataclass(frozen=True)
class SidecarInfo:
    """What a rank needs from a sidecar's ready file: where to send, who it is, and whether it
    merges the run itself after the last rank's bye (an embedded sidecar that says so)."""

    endpoint: str
    pid: int
    pid_create_time: float
    merges: bool

    @classmethod
    def of(cls, info: dict[str, Any]) -> SidecarInfo:
        """From a ready file's content (already checked to name a live process)."""
        return cls(
            str(info["endpoint"]),
            int(info["pid"]),
            float(info["pid_create_time"]),
            info.get("merges") is True,
        )

    def alive(self) -> bool:
        """Whether the sidecar process still runs (a zombie or a reused pid counts as gone)."""
        import psutil

        try:
            proc = psutil.Process(self.pid)
            return bool(
                abs(proc.create_time() - self.pid_create_time) <= 0.5
                and proc.status() != psutil.STATUS_ZOMBIE
            )
        except (psutil.Error, OverflowError):
            return False


def read_ready_file(path: Path) -> dict[str, Any] | None:
    """The sidecar's ready file, if it names a live process (pid and start time both match)."""
    info = read_small_json(path, 1 << 14)
    if not isinstance(info, dict) or not isinstance(info.get("endpoint"), str):
        return None
    pid, created = info.get("pid"), info.get("pid_create_time")
    if (
        type(pid) is not int
        or pid <= 0
        or not isinstance(created, (int, float))
        or not math.isfinite(created)
    ):
        return None  # a NaN start time would match any process
    import psutil

    try:
        proc = psutil.Process(pid)
        if abs(proc.create_time() - float(created)) > 0.5:
            return None
        if proc.status() == psutil.STATUS_ZOMBIE:
            return None
    except (psutil.Error, KeyError, ValueError, TypeError, OverflowError):
        return None
    return info


def _lock_or_ready(lock: IO[str], ready: Path, timeout_s: float) -> dict[str, Any] | None:
    """Wait until either a live sidecar is ready (return its info) or we hold the start lock
    (return None). The ready file is checked without the lock: a forked child may have
    inherited the parent's lock, which then stays held in the child for ever."""
    deadline = time.monotonic() + timeout_s
    while True:
        info = read_ready_file(ready)
        if info is not None:
            return info
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            if time.monotonic() > deadline:
                raise TimeoutError(f"no sidecar ready and {lock.name} stays locked") from None
            time.sleep(0.005)
            continue
        return read_ready_file(ready)  # it may have become ready just before we got the lock


def sidecar_command(layout: RunLayout, node: str, embedded: bool) -> list[str]:
    """The command line that starts a sidecar for this run and node."""
    cmd = [sys.executable, "-m", "yprov_daemon", "--run-dir", str(layout.root), "--node", node]
    return [*cmd, "--embedded"] if embedded else cmd


def _last_line(path: Path, max_bytes: int = 2000) -> str:
    """The last line of a log file (why a sidecar stopped), bounded; '' if there is none."""
    try:
        with open(path, "rb") as f:
            f.seek(max(0, f.seek(0, os.SEEK_END) - max_bytes))
            lines = f.read().decode(errors="replace").strip().splitlines()
    except OSError:
        return ""
    return lines[-1][:500] if lines else ""


def locate_or_start(layout: RunLayout, node: str) -> SidecarInfo | None:
    """This node's sidecar, starting an embedded one if needed; None if none could be had."""
    ready = layout.sidecar_info(node)
    with open(layout.sidecar_lock(node), "a+") as lock:
        info = _lock_or_ready(lock, ready, SIDECAR_START_TIMEOUT_S)
        if info is not None:
            return SidecarInfo.of(info)
        ready.unlink(missing_ok=True)
        with open(layout.sidecar_log(node), "ab") as out:
            proc = subprocess.Popen(  # the sidecar outlives the rank that started it
                sidecar_command(layout, node, embedded=True),
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                close_fds=True,
                env={**os.environ, "PYTHONUNBUFFERED": "1"},
            )
        deadline = time.monotonic() + SIDECAR_START_TIMEOUT_S
        while time.monotonic() < deadline:
            info = read_ready_file(ready)
            if info is not None:
                return SidecarInfo.of(info)
            if proc.poll() is not None:
                log.warning(
                    "yprov: the embedded sidecar exited with %s at start: %s (see %s);"
                    " events go to this rank's spool file",
                    proc.returncode,
                    _last_line(layout.sidecar_log(node)),
                    layout.sidecar_log(node),
                )
                return None
            time.sleep(0.005)
        log.warning("yprov: no sidecar ready after %.0f s; events go to the spool", SIDECAR_START_TIMEOUT_S)
        return None
