"""The sidecar process over real ZeroMQ sockets: journal before ack, bad input survived, clean stop."""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import zmq

from tests.conftest import PYTHON, python_env
from tests.integration.sidecar_proc import rank_headers
from yprov_hpc.wire.codec import decode_ack, encode_batch


@pytest.fixture
def sidecar(tmp_path: Path) -> Iterator[tuple[subprocess.Popen[bytes], Path, str]]:
    run_dir = tmp_path / "exp_r1"
    proc = subprocess.Popen(
        [PYTHON, "-m", "yprov_hpc.cli", "sidecar", "--run-dir", str(run_dir), "--node", "n0"],
        env=python_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    ready = run_dir / "journal" / "sidecar-n0.json"
    deadline = time.monotonic() + 15
    while not ready.exists():
        assert proc.poll() is None, proc.stdout.read()  # type: ignore[union-attr]
        assert time.monotonic() < deadline, "sidecar not ready"
        time.sleep(0.02)
    endpoint = json.loads(ready.read_text())["endpoint"]
    yield proc, run_dir, endpoint
    if proc.poll() is None:
        proc.kill()
        proc.wait()


def _dealer(endpoint: str) -> zmq.Socket:  # type: ignore[type-arg]
    sock = zmq.Context.instance().socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    sock.setsockopt(zmq.RCVTIMEO, 5000)
    sock.connect(endpoint)
    return sock


def test_ack_means_journaled_and_garbage_is_survived(
    sidecar: tuple[subprocess.Popen[bytes], Path, str],
) -> None:
    """Malformed messages are dropped; a valid batch is in the journal by the time its ack arrives."""
    proc, run_dir, endpoint = sidecar
    sock = _dealer(endpoint)
    sock.send_multipart([b"\xff\x00garbage", b"junk"])
    sock.send(b"single frame")
    sock.send_multipart([b"\x93\x01\x02\x03", b""])
    header, body = encode_batch("r1", 0, "n0", 42, 0, [(4, 1, "loss", 0.5, None, 0)], 1)
    sock.send_multipart([header, body])
    assert decode_ack(sock.recv()) == (42, 0, 1)
    assert [h.stream for h in rank_headers(run_dir)] == [42]
    assert proc.poll() is None
    sock.close()


def test_sigterm_drains_syncs_and_exits_zero(sidecar: tuple[subprocess.Popen[bytes], Path, str]) -> None:
    """SIGTERM stops the sidecar cleanly: exit 0, ready file removed, counts logged."""
    proc, run_dir, endpoint = sidecar
    sock = _dealer(endpoint)
    for i in range(20):
        header, body = encode_batch(
            "r1", 1, "n0", 7, i * 5, [(4, 1, "m", float(j), None, j) for j in range(5)], 1
        )
        sock.send_multipart([header, body])
    for _ in range(20):
        decode_ack(sock.recv())
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=10)
    assert proc.returncode == 0
    assert b"20 batches, 100 events, 0 malformed" in out
    assert not (run_dir / "journal" / "sidecar-n0.json").exists()
    assert len(rank_headers(run_dir)) == 20
    sock.close()


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM, signal.SIGHUP])
def test_repeated_stop_signals_still_exit_zero(
    sidecar: tuple[subprocess.Popen[bytes], Path, str], signum: signal.Signals
) -> None:
    """A stop signal delivered again while the sidecar exits (Slurm's agent resends a step
    signal a slow node did not acknowledge) still ends in exit 0, not death by that signal:
    srun would log ``task N: Interrupt`` for a clean stop."""
    proc, run_dir, _ = sidecar
    proc.send_signal(signum)
    deadline = time.monotonic() + 20
    while proc.poll() is None and time.monotonic() < deadline:
        try:
            proc.send_signal(signum)
        except ProcessLookupError:
            break
        time.sleep(0.0005)
    out, _ = proc.communicate(timeout=10)
    assert proc.returncode == 0, out.decode()[-2000:]
    assert b"stopped:" in out
    assert not (run_dir / "journal" / "sidecar-n0.json").exists()


def test_time_limit_warning_signals_do_not_stop_the_sidecar(
    sidecar: tuple[subprocess.Popen[bytes], Path, str],
) -> None:
    """SIGUSR1/SIGUSR2 (`--signal=USR1@N` without `B:` reaches every step's tasks) are logged,
    and the sidecar goes on acking; SIGHUP then stops it like SIGTERM."""
    proc, run_dir, endpoint = sidecar
    sock = _dealer(endpoint)
    for i, signum in enumerate((signal.SIGUSR1, signal.SIGUSR2, signal.SIGUSR1)):
        proc.send_signal(signum)
        time.sleep(0.2)
        assert proc.poll() is None
        header, body = encode_batch("r1", 1, "n0", 9, i, [(4, 1, "m", float(i), None, i)], 1)
        sock.send_multipart([header, body])
        assert decode_ack(sock.recv()) == (9, i, 1)
    proc.send_signal(signal.SIGHUP)
    out, _ = proc.communicate(timeout=10)
    assert proc.returncode == 0, out.decode()[-2000:]
    assert out.count(b"signal SIGUSR1: not a stop") == 1 and b"signal SIGUSR2: not a stop" in out
    assert b"(SIGHUP): draining and stopping" in out and b"3 batches, 3 events" in out
    assert len(rank_headers(run_dir)) == 3
    sock.close()


def test_private_directory_and_socket(sidecar: tuple[subprocess.Popen[bytes], Path, str]) -> None:
    """The journal directory is 0700 and the ipc socket is not reachable by other users."""
    _, run_dir, endpoint = sidecar
    assert stat.S_IMODE(os.stat(run_dir / "journal").st_mode) == 0o700
    sock_path = endpoint[len("ipc://") :]
    assert stat.S_IMODE(os.stat(sock_path).st_mode) & 0o077 == 0


def test_sidecar_help_is_useful() -> None:
    """`yprov sidecar --help` describes the options."""
    out = subprocess.run(
        [PYTHON, "-m", "yprov_hpc.cli", "sidecar", "--help"],
        env=python_env(),
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "--run-dir" in out and "--embedded" in out and "journal" in out


def test_another_user_cannot_connect_to_the_socket(
    sidecar: tuple[subprocess.Popen[bytes], Path, str],
) -> None:
    """A process of another user (nobody) cannot reach the sidecar's ipc socket (0700 directory)."""
    import shutil

    system_python = shutil.which("python3", path="/usr/bin:/bin")
    if os.geteuid() != 0 or shutil.which("runuser") is None or system_python is None:
        pytest.fail("this test needs root, runuser and /usr/bin/python3 to act as another user (CI has them)")
    _, _, endpoint = sidecar
    path = endpoint[len("ipc://") :]
    probe = [
        "import socket, sys",
        "s = socket.socket(socket.AF_UNIX)",
        "try:",
        "    s.connect(sys.argv[1])",
        "except PermissionError:",
        "    print('refused')",
        "else:",
        "    print('connected')",
    ]
    code = "\n".join(probe)
    out = subprocess.run(
        ["runuser", "-u", "nobody", "--", system_python, "-c", code, path],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert out.stdout.strip() == "refused", out.stdout + out.stderr
    me = subprocess.run([system_python, "-c", code, path], capture_output=True, text=True, timeout=30)
    assert me.stdout.strip() == "connected"  # the owner can: the refusal is about the user


def test_a_sidecar_started_under_nohup_ignores_sighup(tmp_path: Path) -> None:
    """SIGHUP stops a sidecar, unless it was started ignoring it (``nohup yprov sidecar ...``):
    then a closed terminal does not stop it; SIGTERM still does."""
    run_dir = tmp_path / "exp_r1"
    proc = subprocess.Popen(
        [PYTHON, "-m", "yprov_daemon", "--run-dir", str(run_dir), "--node", "n0", "--samplers", "none"],
        env=python_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        preexec_fn=lambda: signal.signal(signal.SIGHUP, signal.SIG_IGN),  # what nohup does
    )
    ready = run_dir / "journal" / "sidecar-n0.json"
    try:
        deadline = time.monotonic() + 15
        while not ready.exists():
            assert proc.poll() is None and time.monotonic() < deadline, "sidecar not ready"
            time.sleep(0.02)
        proc.send_signal(signal.SIGHUP)
        time.sleep(0.5)
        assert proc.poll() is None, "SIGHUP stopped a sidecar started under nohup"
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0 and b"(SIGTERM): draining and stopping" in out, out.decode()[-2000:]
