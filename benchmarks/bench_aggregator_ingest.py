"""Aggregator ingest: one real sidecar acting as the job's aggregator (CURVE over tcp), one
client forwarding pre-encoded 1000-event batches with a window in flight; counts acked
events/s (an ack means journaled in agg-<node>.journal and flushed to the OS).

    python benchmarks/bench_aggregator_ingest.py [--events 2000000]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import zmq
import zmq.auth

from yprov_daemon.aggregator import FORWARD
from yprov_hpc.core.keys import client_keys
from yprov_hpc.core.layout import RunLayout
from yprov_hpc.wire.codec import encode_batch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _sidecar import free_port, pump, start_sidecar


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--events", type=int, default=2_000_000)
    parser.add_argument("--batch", type=int, default=1000)
    parser.add_argument("--window", type=int, default=100)
    args = parser.parse_args()
    run_dir = Path(tempfile.mkdtemp()) / "bench_r1"
    endpoint = f"tcp://127.0.0.1:{free_port()}"
    proc, _ = start_sidecar(run_dir, "agg", "--samplers", "none", "--aggregate", endpoint)
    public, secret, server = client_keys(RunLayout.open(run_dir))
    sock = zmq.Context.instance().socket(zmq.DEALER)
    sock.curve_publickey, sock.curve_secretkey, sock.curve_serverkey = public, secret, server
    sock.setsockopt(zmq.LINGER, 0)
    sock.connect(endpoint)
    n = args.events // args.batch
    events = [(4, 1_780_000_000_000_000_000 + i, "loss", 0.5, "training", i) for i in range(args.batch)]
    frames = [encode_batch("r1", 0, "n1", 1, i * args.batch, events, 0) for i in range(n)]
    messages = [[FORWARD, b"n1", *frames[i], i.to_bytes(8, "little")] for i in range(n)]
    dt = pump(sock, messages, args.window)
    sock.close()
    proc.terminate()
    proc.wait()
    print(
        json.dumps(
            {
                "events": n * args.batch,
                "batch_events": args.batch,
                "aggregator_events_per_s": round(n * args.batch / dt),
                "aggregator_mb_per_s": round(sum(len(h) + len(b) for h, b in frames) / dt / 1e6, 1),
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
