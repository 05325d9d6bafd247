"""Shared by the benchmarks: a real sidecar process, started and waited for, and a free port."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any


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


def pump(sock: Any, messages: list[list[bytes]], window: int) -> float:
    """Send ``messages`` with at most ``window`` unacked, count one ack per message; seconds taken."""
    sent = acked = 0
    t0 = time.perf_counter()
    while acked < len(messages):
        while sent < len(messages) and sent - acked < window:
            sock.send_multipart(messages[sent])
            sent += 1
        sock.recv()
        acked += 1
        while sock.poll(0):
            sock.recv()
            acked += 1
    return time.perf_counter() - t0
