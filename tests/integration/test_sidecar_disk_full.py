"""A real sidecar process on a full disk (RLIMIT_FSIZE): it acks only what it journaled, says so
once, keeps running, and acks again once there is room; every acked batch is read back."""

from __future__ import annotations

import json
import resource
import signal
import subprocess
import time
from pathlib import Path

import psutil
import zmq

from tests.conftest import PYTHON, python_env
from yprov_hpc.wire.codec import decode_header, decode_reply, encode_batch
from yprov_hpc.wire.journal import ReadReport, read_frames
from yprov_hpc.wire.records import NODE_RANK

LIMIT_BYTES = 64 << 10


def _limit_file_size() -> None:
    resource.setrlimit(resource.RLIMIT_FSIZE, (LIMIT_BYTES, resource.RLIM_INFINITY))


def _start(run_dir: Path) -> tuple[subprocess.Popen[bytes], str]:
    proc = subprocess.Popen(
        [PYTHON, "-m", "yprov_daemon", "--run-dir", str(run_dir), "--node", "n0", "--samplers", "none"],
        env=python_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        preexec_fn=_limit_file_size,
    )
    ready = run_dir / "journal" / "sidecar-n0.json"
    deadline = time.monotonic() + 20
    while not ready.exists():
        assert proc.poll() is None and time.monotonic() < deadline, proc.stdout.read()  # type: ignore[union-attr]
        time.sleep(0.02)
    return proc, json.loads(ready.read_text())["endpoint"]


def _acked(sock: zmq.Socket, seq: int, wait_ms: int = 2000) -> bool:  # type: ignore[type-arg]
    events = [(4, 1 + seq, "loss", float(seq), None, seq), (3, 1, f"p{seq}", "x" * 1500, "str")]
    sock.send_multipart(encode_batch("r1", 0, "n0", 9, seq * 2, events, 1))
    if not sock.poll(wait_ms):
        return False
    reply = decode_reply(sock.recv())
    assert reply.refused is None and reply.seq_start == seq * 2
    return True


def test_full_disk_then_room_again(tmp_path: Path) -> None:
    """Batches past the file-size limit get no ack; after the limit is lifted their resends are acked."""
    run_dir = tmp_path / "exp_r1"
    proc, endpoint = _start(run_dir)
    sock = zmq.Context.instance().socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    sock.connect(endpoint)
    try:
        seq = 0
        while _acked(sock, seq):
            seq += 1
            assert seq < 100, "the file-size limit was never reached"
        full = list(range(seq, seq + 5))
        assert not any(_acked(sock, s, wait_ms=300) for s in full[1:]), "acked without a journal"
        assert proc.poll() is None, "a full disk must not kill the sidecar"
        unlimited = (resource.RLIM_INFINITY, resource.RLIM_INFINITY)
        psutil.Process(proc.pid).rlimit(psutil.RLIMIT_FSIZE, unlimited)
        time.sleep(0.6)  # a journal that could not be written is retried within REOPEN_RETRY_S
        assert all(_acked(sock, s) for s in full), "resent batches are acked once there is room"
        proc.send_signal(signal.SIGTERM)
        out = proc.communicate(timeout=20)[0].decode()
    finally:
        sock.close()
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, out
    assert out.count(" ERROR ") == 1, out
    assert "writable again" in out
    report = ReadReport(run_dir / "journal" / "node-n0.journal")
    headers = [decode_header(h) for _, h, _ in read_frames(report.path, report)]
    seqs = sorted(h.seq_start // 2 for h in headers if h.rank != NODE_RANK)
    assert seqs == list(range(full[-1] + 1))
    assert report.skipped_bytes == 0 and report.torn_bytes == 0
