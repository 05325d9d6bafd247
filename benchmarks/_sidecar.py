"""Shared by the benchmarks: a real sidecar process, started and waited for, and a free port."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
from pathlib import Path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_sidecar(
    run_dir: Path, node: str, *args: str, env: dict[str, str] | None = None, timeout_s: float = 30.0
) -> tuple[subprocess.Popen[bytes], str]:
    """Start `python -m yprov_daemon` for ``run_dir``/``node``; return it and its endpoint once ready."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "yprov_daemon", "--run-dir", str(run_dir), "--node", node, *args],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    ready = run_dir / "journal" / f"sidecar-{node}.json"
    deadline = time.monotonic() + timeout_s
    while not ready.exists():
        if proc.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"sidecar {node} did not start (exit {proc.poll()})")
        time.sleep(0.01)
    return proc, str(json.loads(ready.read_text())["endpoint"])
