"""The sidecar's signals, and the ones that come while it starts (before ``Sidecar.serve``).

``python -m yprov_daemon`` calls ``catch`` before it imports the rest (zmq, psutil, the
checks: 0.1-0.2 s, longer on a cold shared file system). A stop signal in that window is
remembered, with its time, and replayed once the sidecar serves, so that it stops cleanly
(exit 0) instead of dying by the signal, or with a KeyboardInterrupt traceback; the warning
signals (Slurm's time-limit warning) are ignored from the first line. A SIGHUP the process was
started ignoring (``nohup``) stays ignored. Imports only ``signal``, ``time`` and ``typing``.
"""

from __future__ import annotations

import signal
import time
from typing import Any

# drain, fsync, exit 0 (SIGTERM last: once it is caught, the others are; tests rely on it)
STOP_SIGNALS = (signal.SIGINT, signal.SIGHUP, signal.SIGTERM)
WARNING_SIGNALS = (signal.SIGUSR1, signal.SIGUSR2)  # Slurm's --signal warning: logged, not a stop

_caught: list[tuple[int, int]] = []
_nohup = False
_installed = False


def _remember(signum: int, _frame: Any) -> None:
    _caught.append((signum, time.time_ns()))


def catch() -> None:
    """Ignore the warning signals and remember the stop signals, until ``serve`` takes over
    (once: a second call changes nothing)."""
    global _nohup, _installed
    if _installed:
        return
    _installed = True
    for sig in WARNING_SIGNALS:  # first: the process must not die of these at any point
        signal.signal(sig, signal.SIG_IGN)
    _nohup = signal.getsignal(signal.SIGHUP) is signal.SIG_IGN
    for stop in stop_signals():
        signal.signal(stop, _remember)
    # `yprov sidecar` blocked them across its exec (yprov_hpc._entry): one that came meanwhile
    # is pending, and is delivered to the handlers now
    signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS)


def stop_signals() -> tuple[int, ...]:
    """The stop signals this process takes: all three, less SIGHUP under ``nohup``."""
    return tuple(s for s in STOP_SIGNALS if not (_nohup and s == signal.SIGHUP))


def take() -> list[tuple[int, int]]:
    """The stop signals caught so far with their arrival times (ns), in order; forgets them."""
    caught = list(_caught)
    _caught.clear()
    return caught
