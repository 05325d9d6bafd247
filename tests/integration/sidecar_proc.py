"""A real sidecar subprocess for the tests, and a DEALER that plays a rank."""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path
from typing import Any

import zmq

from tests.conftest import PYTHON, python_env
from yprov_hpc.wire.codec import decode_header, decode_reply, encode_batch
from yprov_hpc.wire.journal import read_frames
from yprov_hpc.wire.records import NODE_RANK, BatchHeader, Reply

START_TIMEOUT_S = 20.0


def start_sidecar(
    run_dir: Path, *args: str, node: str = "n0", env: dict[str, str] | None = None
) -> tuple[subprocess.Popen[bytes], str]:
    """Start ``yprov_daemon`` for ``run_dir`` (no samplers) and return it with its endpoint."""
    proc = subprocess.Popen(
        [
            PYTHON,
            "-m",
            "yprov_daemon",
            "--run-dir",
            str(run_dir),
            "--node",
            node,
            "--samplers",
            "none",
            *args,
        ],
        env=env or python_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    ready = run_dir / "journal" / f"sidecar-{node}.json"
    deadline = time.monotonic() + START_TIMEOUT_S
    while not ready.exists():
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            raise AssertionError(f"sidecar not ready: {proc.communicate()[0].decode()}")
        time.sleep(0.02)
    return proc, str(json.loads(ready.read_text())["endpoint"])


def stop(proc: subprocess.Popen[bytes]) -> None:
    """Kill the sidecar if it still runs, and reap it."""
    if proc.poll() is None:
        proc.kill()
    proc.communicate()


def dealer(endpoint: str) -> Any:
    """A DEALER connected to the sidecar, as a rank's sender has."""
    sock = zmq.Context.instance().socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    sock.connect(endpoint)
    return sock


def send_batch(sock: Any, events: list[tuple[Any, ...]], seq: int, rank: int = 0, stream: int = 7) -> Reply:
    """Send one batch and return the sidecar's reply (an AssertionError if none comes)."""
    sock.send_multipart(encode_batch("r1", rank, "n0", stream, seq, events, 1))
    assert sock.poll(10_000), "no reply from the sidecar"
    return decode_reply(sock.recv())


def metric(seq: int) -> tuple[Any, ...]:
    return (4, 1 + seq, "loss", float(seq), None, seq)


def rank_headers(run_dir: Path, node: str = "n0") -> list[BatchHeader]:
    """Headers of the ranks' batches in the node journal (the node's own samples left out)."""
    headers = [decode_header(h) for _, h, _ in read_frames(run_dir / "journal" / f"node-{node}.journal")]
    return [h for h in headers if h.rank != NODE_RANK]
