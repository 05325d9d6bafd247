"""Hostile input at a real sidecar, beside a real rank's batches: bad batches are refused with a
reason and never journaled, garbage is dropped, the sidecar stays up and bounded, and the rank's
good batches are acked and journaled."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import msgpack
import psutil
import pytest

from tests.integration.sidecar_proc import dealer, metric, rank_headers, send_batch, start_sidecar, stop
from yprov_hpc.wire.codec import MAX_MESSAGE_BYTES, decode_reply, encode_batch
from yprov_hpc.wire.records import MAX_WORLD_SIZE

RANK_STREAM = 7


@pytest.fixture
def sidecar(tmp_path: Path) -> Iterator[tuple[subprocess.Popen[bytes], Path, str]]:
    run_dir = tmp_path / "exp_r1"
    proc, endpoint = start_sidecar(run_dir)
    yield proc, run_dir, endpoint
    stop(proc)


def _header(n_events: int = 1, seq: int = 0) -> bytes:
    return encode_batch("r1", 0, "n0", 99, seq, [metric(0)] * n_events, 1)[0]


def _hostile_beside_a_rank(
    proc: subprocess.Popen[bytes], run_dir: Path, endpoint: str, hostile: Callable[[Any], None]
) -> None:
    """A rank's batch, the hostile message from another connection, another batch of the rank."""
    rank = dealer(endpoint)
    attacker = dealer(endpoint)
    try:
        assert send_batch(rank, [metric(0)], 0, stream=RANK_STREAM).refused is None
        hostile(attacker)
        assert send_batch(rank, [metric(1)], 1, stream=RANK_STREAM).refused is None
    finally:
        rank.close()
        attacker.close()
    assert proc.poll() is None, "the sidecar died"
    journaled = [h.seq_start for h in rank_headers(run_dir) if h.stream in (RANK_STREAM, 99)]
    assert journaled == [0, 1], "the rank's batches are journaled, the refused ones are not"


def _refused(header: bytes, body: bytes, *reason_words: str) -> Callable[[Any], None]:
    def hostile(sock: Any) -> None:
        sock.send_multipart([header, body])
        assert sock.poll(10_000), "a bad batch is answered with a refusal"
        reply = decode_reply(sock.recv())
        assert reply.refused is not None and reply.stream == 99
        assert all(word in reply.refused for word in reason_words), reply.refused

    return hostile


def _batch_body(*events: Any) -> bytes:
    return bytes(msgpack.packb(list(events)))


HELLO_WORLD_SIZE_STR = _batch_body([11, 1, {"pid": 1234, "world_size": "4"}])
METRIC_VALUE_STR = _batch_body([4, 1, "loss", "0.5", None, 0])
STEP_OVER_INT64 = _batch_body([4, 1, "loss", 0.5, None, 2**63])
# a metric block (schema version 3) claiming one event, with hostile columns
BLOCK_SHORT_TIMESTAMPS = _batch_body([15, b"\x01\x02", ["loss"], b"\x00" * 8, [None], None])
BLOCK_NAME_NOT_STR = _batch_body([15, b"\x01" * 8, [[1, 2]], b"\x00" * 8, [None], None])
BLOCK_TWO_EVENTS_FOR_ONE = _batch_body([15, b"\x01" * 16, ["a", "b"], b"\x00" * 16, [None, None], None])
DEEP_NESTING = b"\x91" * 1001 + b"\xc0"  # an event nested 1,000 deep: its repr would recurse
FLOAT_KIND = _batch_body([4.0, 1, "loss", 0.5, None, 1])
EMPTY_ARRAYS_10MB = b"\xdd" + (10_000_000).to_bytes(4, "big") + b"\x90" * 10_000_000


@pytest.mark.parametrize(
    ("body", "words"),
    [
        (HELLO_WORLD_SIZE_STR, ("world_size",)),
        (METRIC_VALUE_STR, ("event 0", "metric value")),
        (STEP_OVER_INT64, ("step",)),
        (EMPTY_ARRAYS_10MB, ("holds 10000000 events", "header says 1", "before decoding")),
        (b"\xc1not msgpack", ("not a msgpack array",)),
        (BLOCK_SHORT_TIMESTAMPS, ("event 0", "timestamps must be 8 bytes")),
        (BLOCK_NAME_NOT_STR, ("event 0", "names holds an item that is not a str")),
        (BLOCK_TWO_EVENTS_FOR_ONE, ("holds 2 events", "header says 1")),
        (DEEP_NESTING, ("event 0", "at least 2 items")),
        (FLOAT_KIND, ("event 0", "kind must be an int")),
    ],
    ids=[
        "hello-world-size-str",
        "metric-value-str",
        "step-over-int64",
        "10MB-of-empty-arrays",
        "garbage-body",
        "block-short-timestamps",
        "block-name-not-str",
        "block-two-events-for-one",
        "nested-1000-deep",
        "float-kind",
    ],
)
def test_a_bad_batch_is_refused_with_its_reason(
    sidecar: tuple[subprocess.Popen[bytes], Path, str], body: bytes, words: tuple[str, ...]
) -> None:
    """A batch that breaks the schema gets a nack naming the problem; the rank beside it is unharmed."""
    proc, run_dir, endpoint = sidecar
    _hostile_beside_a_rank(proc, run_dir, endpoint, _refused(_header(), body, *words))


def test_a_block_in_a_version_2_batch_is_refused(sidecar: tuple[subprocess.Popen[bytes], Path, str]) -> None:
    """Metric blocks exist since version 3: in an older batch one would break the sequence count."""
    proc, run_dir, endpoint = sidecar
    header = msgpack.packb([2, 1, "r1", 0, "n0", 99, 0, 1, 1])
    block = [15, b"\x01" * 24, ["a", "b", "c"], b"\x00" * 24, [None] * 3, None]
    _hostile_beside_a_rank(proc, run_dir, endpoint, _refused(header, _batch_body(block), "version 3"))


@pytest.mark.parametrize(
    "event",
    [
        [4, 1_780_000_000_000_000_000, "loss", 1.0, None, 1],
        [8, 1_780_000_000_000_000_000, "system", None, 1],
        [15, b"\x01" * 8, ["a"], b"\x00" * 8, [None], None, [0]],
    ],
    ids=["metric", "mark", "block-with-a-mark"],
)
def test_a_node_stream_of_anything_but_samples_is_refused(
    sidecar: tuple[subprocess.Popen[bytes], Path, str], event: list[Any]
) -> None:
    """A node stream (rank -1) carries the sidecar's samples only: a metric, a mark or a block
    there would be journaled where the merge reads samples, so it is refused, not acked."""
    proc, run_dir, endpoint = sidecar
    header = msgpack.packb([4, 1, "r1", -1, "n0", 99, 0, 1, 1])
    _hostile_beside_a_rank(
        proc, run_dir, endpoint, _refused(header, _batch_body(event), "SAMPLE events only")
    )


def test_a_sample_in_a_rank_stream_is_refused(sidecar: tuple[subprocess.Popen[bytes], Path, str]) -> None:
    """A SAMPLE event is the node's: in a rank's stream the merge would have nothing to fold it
    into, so the sidecar refuses it instead of acking it."""
    proc, run_dir, endpoint = sidecar
    sample = [9, 1_780_000_000_000_000_000, "system", {"cpu_percent": 1.0}]
    hostile = _refused(_header(), _batch_body(sample), "belongs to a node stream")
    _hostile_beside_a_rank(proc, run_dir, endpoint, hostile)


def test_a_body_of_millions_of_empty_arrays_is_refused_within_bounds(
    sidecar: tuple[subprocess.Popen[bytes], Path, str],
) -> None:
    """16 MiB of empty arrays under a header claiming 65,536 events (a version 3 body may hold
    fewer items than events) is refused once its objects pass the budget: the sidecar stays small."""
    proc, run_dir, endpoint = sidecar
    header = encode_batch("r1", 0, "n0", 99, 0, [metric(0)] * 65_536, 1)[0]
    body = b"\xdc\x01\x00" + (b"\xdc\xff\xff" + b"\x90" * 65_535) * 256
    _hostile_beside_a_rank(proc, run_dir, endpoint, _refused(header, body, "objects"))
    status = Path(f"/proc/{proc.pid}/status").read_text()
    peak_mb = int(next(line for line in status.splitlines() if line.startswith("VmHWM")).split()[1]) / 1024
    assert peak_mb < 400, f"sidecar peak RSS {peak_mb:.0f} MB with the bomb (1.2 GB before the budget)"


def test_a_hello_with_a_huge_pid_does_not_kill_an_embedded_sidecar(tmp_path: Path) -> None:
    """An embedded sidecar refuses a hello whose pid is 2^31 and goes on serving the real rank."""
    run_dir = tmp_path / "exp_r1"
    proc, endpoint = start_sidecar(run_dir, "--embedded", "--idle-timeout", "60")
    try:
        body = _batch_body([11, 1, {"pid": 2**31, "world_size": 1}])
        _hostile_beside_a_rank(proc, run_dir, endpoint, _refused(_header(), body, "pid"))
    finally:
        stop(proc)


def test_a_message_over_the_size_limit_is_cut_off(sidecar: tuple[subprocess.Popen[bytes], Path, str]) -> None:
    """A body over MAX_MESSAGE_BYTES never reaches the journal (the socket drops it); the rank goes on."""
    proc, run_dir, endpoint = sidecar

    def hostile(sock: Any) -> None:
        sock.send_multipart([_header(), b"\x91" + b"\x00" * (MAX_MESSAGE_BYTES + (128 << 10))])
        assert not sock.poll(500), "an oversized message gets no reply"

    _hostile_beside_a_rank(proc, run_dir, endpoint, hostile)


def test_garbage_frames_are_dropped(sidecar: tuple[subprocess.Popen[bytes], Path, str]) -> None:
    """Messages that are not batches at all are dropped without a reply."""
    proc, run_dir, endpoint = sidecar

    def hostile(sock: Any) -> None:
        sock.send_multipart([b"\xff\x00garbage", b"junk"])
        sock.send(b"single frame")
        sock.send_multipart([b"\x93\x01\x02\x03", b""])
        sock.send_multipart([b"a", b"b", b"c", b"d"])
        assert not sock.poll(300)

    _hostile_beside_a_rank(proc, run_dir, endpoint, hostile)


def _stats_after_sigterm(proc: subprocess.Popen[bytes], run_dir: Path) -> dict[str, Any]:
    proc.send_signal(signal.SIGTERM)
    proc.communicate(timeout=30)
    stats: dict[str, Any] = json.loads((run_dir / "journal" / "stats-sidecar-n0.json").read_text())
    return stats


def test_a_flood_keeps_the_sidecar_bounded(sidecar: tuple[subprocess.Popen[bytes], Path, str]) -> None:
    """10^5 random frames and 6,000 hellos of random ranks: memory stays bounded, at most 4096 ranks kept."""
    proc, run_dir, endpoint = sidecar
    rng = random.Random(5)

    def hostile(sock: Any) -> None:
        for _ in range(100_000):
            sock.send_multipart([rng.randbytes(rng.randint(1, 40)), rng.randbytes(rng.randint(0, 60))])
        for window in range(12):  # in windows, as a sender keeps a bounded number in flight
            for i in range(500):
                world = rng.randint(1, MAX_WORLD_SIZE)
                hello = (11, 1, {"pid": os.getpid(), "world_size": world})
                stream = 1000 + window * 500 + i
                sock.send_multipart(encode_batch("r1", rng.randrange(world), "n0", stream, 0, [hello], 1))
            for _ in range(500):
                assert sock.poll(30_000), "every well-formed hello is acked"
                assert decode_reply(sock.recv()).refused is None

    _hostile_beside_a_rank(proc, run_dir, endpoint, hostile)
    rss_mb = psutil.Process(proc.pid).memory_info().rss / 2**20
    assert rss_mb < 300, f"sidecar RSS {rss_mb:.0f} MB after the flood"
    stats = _stats_after_sigterm(proc, run_dir)
    assert stats["ranks"] == 4096 and stats["hellos_ignored"] > 1_500
    assert stats["malformed"] > 90_000 and stats["batches"] == 6_002


def test_refusals_are_counted(sidecar: tuple[subprocess.Popen[bytes], Path, str]) -> None:
    """The stats file counts refused batches apart from malformed messages and journaled batches."""
    proc, run_dir, endpoint = sidecar
    sock = dealer(endpoint)
    for seq in range(3):
        sock.send_multipart([_header(seq=seq), METRIC_VALUE_STR])
        assert sock.poll(10_000)
        assert decode_reply(sock.recv()).refused
    assert send_batch(sock, [metric(0)], 0).refused is None
    sock.close()
    stats = _stats_after_sigterm(proc, run_dir)
    assert (stats["refused"], stats["batches"], stats["malformed"]) == (3, 1, 0)
