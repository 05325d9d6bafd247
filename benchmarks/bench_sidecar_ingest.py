"""Sidecar ingest rate: one real sidecar process, pre-encoded batches sent over ipc with a
window of batches in flight; counts acked events per second (ack = journaled).

    python benchmarks/bench_sidecar_ingest.py [--events 2000000] [--batch 100] [--wire blocks|events]

``--wire blocks`` (the default) sends what a rank sends since schema version 3: runs of metric
events as one block of columns; ``--wire events`` sends version 2 bodies, one array per event.

The client is one Python process; on a 2-core machine the client and the sidecar each get a
core. The floor is a bare ZeroMQ DEALER->ROUTER echo of the same frames in the same run.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import threading
from pathlib import Path

import msgpack
import zmq

from yprov_hpc.wire.codec import encode_batch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _sidecar import pump, start_sidecar


def _frames(n_batches: int, batch: int, wire: str) -> list[tuple[bytes, bytes]]:
    names = ("loss", "accuracy", "lr")
    events = [(4, 1_780_000_000_000_000_000 + i, names[i % 3], 0.5, "training", i) for i in range(batch)]
    frames = [encode_batch("r", 0, "n0", 1, i * batch, events, 0) for i in range(n_batches)]
    if wire == "events":  # version 2: one array per event
        body = msgpack.packb(events)
        frames = [(msgpack.packb([2, *msgpack.unpackb(h)[1:]]), body) for h, _ in frames]
    return frames


def _pump(endpoint: str, frames: list[tuple[bytes, bytes]], window: int) -> float:
    sock = zmq.Context.instance().socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    sock.connect(endpoint)
    dt = pump(sock, [list(f) for f in frames], window)
    sock.close()
    return dt


def _echo_floor(frames: list[tuple[bytes, bytes]], window: int) -> float:
    ctx = zmq.Context.instance()
    router = ctx.socket(zmq.ROUTER)
    endpoint = f"ipc://{tempfile.mkdtemp()}/echo.sock"
    router.bind(endpoint)
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            if router.poll(50):
                ident, _h, _b = router.recv_multipart()
                router.send_multipart([ident, b"ack"])

    t = threading.Thread(target=serve, daemon=True)
    t.start()
    dt = _pump(endpoint, frames, window)
    stop.set()
    t.join()
    router.close()
    return dt


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--events", type=int, default=2_000_000)
    parser.add_argument("--batch", type=int, default=100)
    parser.add_argument("--window", type=int, default=200)
    parser.add_argument("--wire", choices=["blocks", "events"], default="blocks")
    args = parser.parse_args()
    n_batches = args.events // args.batch
    frames = _frames(n_batches, args.batch, args.wire)
    run_dir = Path(tempfile.mkdtemp()) / "bench_r1"
    proc, endpoint = start_sidecar(run_dir, "n0")
    dt = _pump(endpoint, frames, args.window)
    proc.terminate()
    proc.wait()
    journal_mb = (run_dir / "journal" / "node-n0.journal").stat().st_size / 1e6
    floor_dt = _echo_floor(frames, args.window)
    print(
        json.dumps(
            {
                "events": n_batches * args.batch,
                "batch_events": args.batch,
                "wire": args.wire,
                "sidecar_events_per_s": round(n_batches * args.batch / dt),
                "sidecar_batches_per_s": round(n_batches / dt),
                "journal_mb": round(journal_mb, 1),
                "floor_python_echo_events_per_s": round(n_batches * args.batch / floor_dt),
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
