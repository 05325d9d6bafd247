"""The node links: a sidecar forwards to the job's aggregator over tcp with CURVE keys; the
aggregator's copy alone restores a lost node journal; clients without the job's key are refused."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import zmq
import zmq.auth

import yprov_hpc as prov4ml
from tests.conftest import entity, load
from tests.integration.sidecar_proc import start_sidecar
from yprov_daemon.aggregator import FORWARD
from yprov_hpc.core.keys import server_keys
from yprov_hpc.core.layout import RunLayout
from yprov_hpc.merge import merge_run
from yprov_hpc.wire.codec import encode_batch
from yprov_hpc.wire.journal import read_frames


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _sidecar(run_dir: Path, node: str, *args: str) -> subprocess.Popen[bytes]:
    return start_sidecar(run_dir, *args, node=node)[0]


@pytest.fixture
def link(tmp_path: Path) -> Iterator[tuple[Path, str, subprocess.Popen[bytes], subprocess.Popen[bytes]]]:
    """Node A's sidecar is the aggregator; node B's sidecar forwards to it."""
    run_dir = tmp_path / "agg_r1"
    endpoint = f"tcp://127.0.0.1:{_free_port()}"
    a = _sidecar(run_dir, "nodeA", "--aggregate", endpoint)
    b = _sidecar(run_dir, "nodeB", "--forward", endpoint)
    yield run_dir, endpoint, a, b
    for proc in (a, b):
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_the_aggregator_copy_restores_a_lost_node_journal(
    link: tuple[Path, str, subprocess.Popen[bytes], subprocess.Popen[bytes]], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Events of a rank on node B reach the aggregator; with B's journal gone, the merge has them all."""
    run_dir, _, a, b = link
    monkeypatch.setenv("SLURMD_NODENAME", "nodeB")
    monkeypatch.setenv("YPROV_RUN_DIR", str(run_dir))
    prov4ml.start_run("www.example.org", "agg", handle_sigterm=False, auto_merge=False, run_id="r1")
    for i in range(3000):
        prov4ml.log_metric("loss", float(i), prov4ml.Context.TRAINING, i)
    report = prov4ml.end_run()
    assert report.delivery.events_spilled == 0
    b.send_signal(signal.SIGTERM)
    out_b = b.communicate(timeout=20)[0].decode()
    a.send_signal(signal.SIGTERM)
    out_a = a.communicate(timeout=20)[0].decode()
    assert "0 unacked at stop" in out_b, out_b
    assert "aggregated" in out_a and " 0 malformed" in out_a, out_a
    journal = run_dir / "journal"
    copy = journal / "agg-nodeB.journal"
    assert len(list(read_frames(copy))) == len(list(read_frames(journal / "node-nodeB.journal")))
    (journal / "node-nodeB.journal").unlink()  # node B and its disk are gone
    result = merge_run(run_dir, create_svg=False)
    assert result.ranks[0].gaps == []
    assert entity(load(result.documents[0]), "run:rank0.metric.loss.training")["yprov:count"] == 3000


def _try_forward(
    endpoint: str, keys: tuple[bytes, bytes] | None, server_public: bytes, wait_ms: int = 1000
) -> bool:
    """Send one forwarded batch; True if the aggregator acked it within ``wait_ms``."""
    sock = zmq.Context.instance().socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    # a refused handshake can end the connection's pipe before the send: a DEALER with no pipe
    # blocks on send (on a busy machine this hung the test until its 300 s timeout)
    sock.setsockopt(zmq.SNDTIMEO, wait_ms)
    if keys is not None:
        sock.curve_publickey, sock.curve_secretkey = keys
        sock.curve_serverkey = server_public
    sock.connect(endpoint)
    header, body = encode_batch("r1", 0, "intruder", 5, 0, [(4, 1, "x", 1.0, None, 0)], 1)
    try:
        sock.send_multipart([FORWARD, b"intruder", header, body, (7).to_bytes(8, "little")])
    except zmq.Again:  # nowhere to send: the aggregator dropped the connection
        sock.close()
        return False
    acked = bool(sock.poll(wait_ms, zmq.POLLIN))
    sock.close()
    return acked


def test_clients_without_the_jobs_key_are_refused(
    link: tuple[Path, str, subprocess.Popen[bytes], subprocess.Popen[bytes]],
) -> None:
    """No CURVE, or a key pair the job did not make: nothing is acked or journaled."""
    run_dir, endpoint, _, _ = link
    server_public, _ = server_keys(RunLayout.open(run_dir))
    stranger = zmq.curve_keypair()
    assert not _try_forward(endpoint, None, server_public)
    assert not _try_forward(endpoint, stranger, server_public)
    assert not (run_dir / "journal" / "agg-intruder.journal").exists()
    job_keys = zmq.auth.load_certificate(run_dir / "journal" / "keys" / "sidecar.key_secret")
    # the job's key works (generous: a CURVE handshake on a busy machine can take a second)
    assert _try_forward(endpoint, (job_keys[0], job_keys[1]), server_public, wait_ms=15_000)
    keys_mode = (run_dir / "journal" / "keys").stat().st_mode & 0o777
    assert keys_mode == 0o700 and json.loads((run_dir / "journal" / "sidecar-nodeA.json").read_text())


def test_forwarding_resumes_after_the_aggregator_comes_back(
    link: tuple[Path, str, subprocess.Popen[bytes], subprocess.Popen[bytes]], monkeypatch: pytest.MonkeyPatch
) -> None:
    """kill -9 of the aggregator, then a new one on the same port: the forwarder's resends fill in
    what it missed, and its copy alone still holds every event."""
    run_dir, endpoint, a, b = link
    monkeypatch.setenv("SLURMD_NODENAME", "nodeB")
    monkeypatch.setenv("YPROV_RUN_DIR", str(run_dir))
    prov4ml.start_run("www.example.org", "agg", handle_sigterm=False, auto_merge=False, run_id="r1")
    copy = run_dir / "journal" / "agg-nodeB.journal"
    for i in range(1000):
        prov4ml.log_metric("loss", float(i), prov4ml.Context.TRAINING, i)
    deadline = time.monotonic() + 10
    while not (copy.exists() and list(read_frames(copy))):
        assert time.monotonic() < deadline, "nothing reached the aggregator"
        time.sleep(0.05)
    a.kill()
    a.wait()
    for i in range(1000, 2000):
        prov4ml.log_metric("loss", float(i), prov4ml.Context.TRAINING, i)
    time.sleep(0.5)  # batches go out while there is no aggregator
    a2 = _sidecar(run_dir, "nodeA", "--aggregate", endpoint)
    try:
        prov4ml.end_run()
        b.send_signal(signal.SIGTERM)
        out_b = b.communicate(timeout=30)[0].decode()
        assert "0 unacked at stop" in out_b and "resent" in out_b, out_b
    finally:
        a2.send_signal(signal.SIGTERM)
        a2.communicate(timeout=30)
    (run_dir / "journal" / "node-nodeB.journal").unlink()
    result = merge_run(run_dir, create_svg=False)
    assert result.ranks[0].gaps == [] and result.ranks[0].missing_at_end == 0
    assert entity(load(result.documents[0]), "run:rank0.metric.loss.training")["yprov:count"] == 2000
