"""Heavy logging on a busy node: do events reach the sidecar's journal, once, with every core busy?

    python benchmarks/bench_busy_node.py [--ranks 8] [--points 200000] [--burners N]

One CPU-bound process per core (``--burners``, default ``os.cpu_count()``) keeps every core busy,
as training does. Then ``--ranks`` rank processes of one run log ``--points`` metric points
each as fast as they can, through the embedded sidecar the first of them starts, and end their
run (no merge). Afterwards the journals and spools are read back and reported:

- ``spilled_pct``: events that went to the ranks' spools (target <= 1 %);
- ``lost``: events counted lost by the ranks, plus events that no journal or spool holds;
- ``copies``: journal + spool bytes over the bytes of one copy of every batch (target <= 1.2).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent

_RANK = r"""
import json, sys, time, yprov_hpc as prov4ml
save, rank, world, points = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
prov4ml.start_run("www.example.org", "busy", save, rank=rank, world_size=world, run_id="busy1",
                  handle_sigterm=False, auto_merge=False)
log, ctx = prov4ml.log_metric, prov4ml.Context.TRAINING
t0 = time.perf_counter()
for i in range(points):
    log("loss", 0.5, ctx, i)
t1 = time.perf_counter()
report = prov4ml.end_run()
print(json.dumps({"rank": rank, "log_s": t1 - t0, "end_run_s": time.perf_counter() - t1,
                  "delivery": report.delivery.as_dict()}))
"""

_BURN = "while True:\n    pass\n"


def read_back(journal_dir: Path) -> dict[str, Any]:
    """Bytes and unique events in the journals and spools, per rank."""
    from yprov_hpc.wire.codec import decode_header
    from yprov_hpc.wire.journal import read_frames

    seen: set[tuple[int, int, int]] = set()
    total_bytes = unique_bytes = spool_bytes = 0
    unique_events: dict[int, int] = {}
    for path in sorted(journal_dir.glob("*.journal")):
        for _, header, body in read_frames(path):
            h = decode_header(header)
            if h.rank < 0:
                continue  # the sidecar's own samples of the node
            size = len(header) + len(body)
            total_bytes += size
            if path.name.startswith("spool-"):
                spool_bytes += size
            key = (h.rank, h.stream, h.seq_start)
            if key in seen:
                continue
            seen.add(key)
            unique_bytes += size
            unique_events[h.rank] = unique_events.get(h.rank, 0) + h.n_events
    return {
        "total_bytes": total_bytes,
        "unique_bytes": unique_bytes,
        "spool_bytes": spool_bytes,
        "unique_events": unique_events,
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--ranks", type=int, default=8)
    parser.add_argument("--points", type=int, default=200_000)
    parser.add_argument("--burners", type=int, default=os.cpu_count() or 1)
    args = parser.parse_args()
    sys.path.insert(0, str(HERE))
    from _stats import machine

    save = Path(tempfile.mkdtemp(prefix="yprov-busy-"))
    burners = [subprocess.Popen([sys.executable, "-c", _BURN]) for _ in range(args.burners)]
    try:
        time.sleep(0.5)  # the burners are running before training starts
        t0 = time.perf_counter()
        ranks = [
            subprocess.Popen(
                [sys.executable, "-c", _RANK, str(save), str(r), str(args.ranks), str(args.points)],
                stdout=subprocess.PIPE,
                text=True,
                cwd=tempfile.gettempdir(),  # import yprov_hpc from PYTHONPATH, not the current directory
            )
            for r in range(args.ranks)
        ]
        results = [json.loads(p.communicate(timeout=900)[0].strip().splitlines()[-1]) for p in ranks]
        wall_s = time.perf_counter() - t0
    finally:
        for b in burners:
            b.kill()
            b.wait()
    (run_dir,) = save.iterdir()
    time.sleep(2.0)  # the embedded sidecar's grace period after the last bye
    back = read_back(run_dir / "journal")
    logged = sum(r["delivery"]["events"] for r in results)
    spilled = sum(r["delivery"]["events_spilled"] for r in results)
    counted_lost = sum(r["delivery"].get("events_lost", 0) for r in results)
    missing = sum(max(0, r["delivery"]["events"] - back["unique_events"].get(r["rank"], 0)) for r in results)
    out = {
        "machine": machine(),
        "ranks": args.ranks,
        "points_per_rank": args.points,
        "burners": args.burners,
        "wall_s": wall_s,
        "events": logged,
        "spilled": spilled,
        "spilled_pct": 100.0 * spilled / max(1, logged),
        "lost": counted_lost + missing,
        "copies": back["total_bytes"] / max(1, back["unique_bytes"]),
        "journal_and_spool_mb": back["total_bytes"] / 1e6,
        "one_copy_mb": back["unique_bytes"] / 1e6,
        "batches_resent": sum(r["delivery"]["batches_resent"] for r in results),
        "events_per_batch": logged / max(1, sum(r["delivery"]["batches"] for r in results)),
        "log_s_max": max(r["log_s"] for r in results),
        "end_run_s_max": max(r["end_run_s"] for r in results),
        "ack_latency_s_max": max(r["delivery"].get("ack_latency_s", 0.0) for r in results),
    }
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
