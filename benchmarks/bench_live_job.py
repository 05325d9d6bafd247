"""A live multi-node job in miniature: N real sidecars (the first one is the job's aggregator, the
others forward to it over CURVE), each fed by a process playing 8 ranks that log at a realistic
rate; then the sidecars stop and the run is merged. Checks that no event is lost end to end, and
reports ingest and merge figures.

    python benchmarks/bench_live_job.py [--nodes 4] [--seconds 20] [--rate 200]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import signal
import sys
import tempfile
import time
from pathlib import Path

import zmq

from yprov_hpc.core.keys import make_keys
from yprov_hpc.core.layout import RunLayout
from yprov_hpc.merge import merge_run
from yprov_hpc.wire.codec import encode_batch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _sidecar import free_port, start_sidecar

RANKS_PER_NODE = 8
T0 = time.time_ns()


def play_ranks(
    endpoint: str, node: str, first_rank: int, world: int, seconds: float, rate: int
) -> dict[int, int]:
    """8 ranks on one node: start, metrics at ``rate`` events/s each (marks every 10 steps), end."""
    ctx = zmq.Context()
    socks, seqs, sent = [], [], {}
    for i in range(RANKS_PER_NODE):
        rank = first_rank + i
        s = ctx.socket(zmq.DEALER)
        s.setsockopt(zmq.LINGER, 5000)
        s.connect(endpoint)
        start = [
            (
                1,
                time.time_ns(),
                {
                    "run_id": "live",
                    "namespace": "http://example.org/",
                    "experiment": "live",
                    "rank": rank,
                    "world_size": world,
                    "node": node,
                },
            ),
            (11, time.time_ns(), {"pid": 1, "world_size": RANKS_PER_NODE, "local_rank": i}),
        ]
        s.send_multipart(encode_batch("live", rank, node, rank + 1, 0, start, time.time_ns()))
        socks.append(s)
        seqs.append(len(start))
        sent[rank] = len(start)
    step, t_end = 0, time.monotonic() + seconds
    batch_steps = max(1, rate // 10)  # ten batches per second per rank
    while time.monotonic() < t_end:
        for i, s in enumerate(socks):
            rank = first_rank + i
            now = time.time_ns()
            events = []
            for k in range(step, step + batch_steps):
                events.append((4, now, f"m{k % 10}", 0.5, "training", k))
                if k % 10 == 9:
                    events.append((8, now, "system", "training", k))
            s.send_multipart(encode_batch("live", rank, node, rank + 1, seqs[i], events, now))
            seqs[i] += len(events)
            sent[rank] += len(events)
            while s.poll(0):
                s.recv()
        step += batch_steps
        time.sleep(0.1)
    for i, s in enumerate(socks):
        rank = first_rank + i
        end = [(2, time.time_ns(), "finished", {}), (12, time.time_ns(), {"pid": 1})]
        s.send_multipart(encode_batch("live", rank, node, rank + 1, seqs[i], end, time.time_ns()))
        sent[rank] += len(end)
        acked, deadline = 0, time.monotonic() + 10
        while time.monotonic() < deadline and s.poll(200):
            s.recv()
            acked += 1
        s.close()
    ctx.term()
    return sent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--nodes", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--rate", type=int, default=200, help="metric events per second per rank")
    args = parser.parse_args()
    run_dir = Path(tempfile.mkdtemp()) / "live_live"
    layout = RunLayout.create(run_dir.parent, "live", "live")
    make_keys(layout)
    agg = f"tcp://127.0.0.1:{free_port()}"
    sidecars, endpoints = [], []
    for n in range(args.nodes):
        link = ["--aggregate", agg] if n == 0 else ["--forward", agg]
        proc, endpoint = start_sidecar(run_dir, f"node{n}", *link)
        sidecars.append(proc)
        endpoints.append(endpoint)
    world = args.nodes * RANKS_PER_NODE
    t0 = time.perf_counter()
    with multiprocessing.get_context("spawn").Pool(args.nodes) as pool:
        parts = pool.starmap(
            play_ranks,
            [
                (endpoints[n], f"node{n}", n * RANKS_PER_NODE, world, args.seconds, args.rate)
                for n in range(args.nodes)
            ],
        )
    run_s = time.perf_counter() - t0
    for proc in reversed(sidecars):  # forwarders first, the aggregator last
        proc.send_signal(signal.SIGINT)  # at once, inside a Slurm step too
        proc.wait()
    sent = {r: c for part in parts for r, c in part.items()}
    t1 = time.perf_counter()
    result = merge_run(run_dir, create_svg=False, workers=2)
    merge_s = time.perf_counter() - t1
    received = {r: d.events for r, d in result.ranks.items()}
    lost = sum(sent[r] - received.get(r, 0) for r in sent)
    agg_copies = sorted(p.name for p in (run_dir / "journal").glob("agg-*.journal"))
    print(
        json.dumps(
            {
                "nodes": args.nodes,
                "ranks": world,
                "events_sent": sum(sent.values()),
                "events_per_s": round(sum(sent.values()) / run_s),
                "events_lost": lost,
                "aggregator_copies": agg_copies,
                "merge_s": round(merge_s, 1),
                "documents": len(result.documents),
            },
            indent=2,
        )
    )
    sys.exit(1 if lost else 0)


if __name__ == "__main__":
    main()
