"""The ``yprov`` command's entry point.

``yprov sidecar ...`` becomes the sidecar (``python -m yprov_daemon``) at once, before the
command line's imports (click and the rest: ~40 ms): the batch script starts every node's
sidecar this way, and a stop signal in that window would kill it. The stop signals are blocked
across the exec (a blocked signal stays pending, and the mask is inherited), and the sidecar
unblocks them once it has its handlers (``yprov_daemon.early``): one that came meanwhile is
then acted on, not lost; Slurm's warning signals are ignored from here on. Everything else goes
to ``yprov_hpc.cli``.
"""

from __future__ import annotations

import os
import signal
import sys
from collections.abc import Sequence

# the sidecar's (yprov_daemon.early: yprov_hpc never imports yprov_daemon)
_STOP = (signal.SIGINT, signal.SIGHUP, signal.SIGTERM)
_WARNING = (signal.SIGUSR1, signal.SIGUSR2)


def exec_sidecar(args: Sequence[str]) -> None:
    """Replace this process with ``python -m yprov_daemon ARGS``."""
    for sig in _WARNING:
        signal.signal(sig, signal.SIG_IGN)
    signal.pthread_sigmask(signal.SIG_BLOCK, _STOP)
    try:
        os.execv(sys.executable, [sys.executable, "-m", "yprov_daemon", *args])
    finally:  # only if the exec failed
        signal.pthread_sigmask(signal.SIG_UNBLOCK, _STOP)


def main() -> None:
    """``yprov``: the sidecar at once, or the command line."""
    if sys.argv[1:2] == ["sidecar"]:
        exec_sidecar(sys.argv[2:])
    from yprov_hpc.cli import main as cli

    cli()
