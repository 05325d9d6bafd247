"""Stop signals that come while the sidecar starts (before ``Sidecar.serve`` has its handlers).

``python -m yprov_daemon`` calls ``catch`` before it imports the rest (zmq, psutil, the
checks: 0.1-0.2 s, longer on a cold shared file system). A SIGTERM, SIGINT or SIGHUP in that
window is remembered and replayed once the sidecar serves, so that it stops cleanly (exit 0)
instead of dying by the signal, or with a KeyboardInterrupt traceback; SIGUSR1/SIGUSR2 (Slurm's
time-limit warning) are ignored. Imports only ``signal``.
"""

from __future__ import annotations

import signal
from types import FrameType

_caught: list[int] = []


def _remember(signum: int, _frame: FrameType | None) -> None:
    _caught.append(signum)


def catch() -> None:
    """Remember stop signals, ignore the warning signals, until ``Sidecar.serve`` takes over."""
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, _remember)
    for sig in (signal.SIGUSR1, signal.SIGUSR2):
        signal.signal(sig, signal.SIG_IGN)


def take() -> list[int]:
    """The stop signals caught so far, in order (and forget them)."""
    caught = list(_caught)
    _caught.clear()
    return caught
