"""Merge at scale: R ranks x P metric points, 8 ranks per node, in journals written exactly as
the sidecars write them (frames of 1000-event batches), then `yprov merge` timed with its peak RSS.

    python benchmarks/bench_merge_scale.py --ranks 512 --points 100000 [--workers 2] [--keep DIR]
        [--mark-every 0] [--split K]

Each rank logs 10 metrics round-robin, one event per step, with a system and a carbon mark every
10 steps; each node has 1 Hz system samples over the run (1 step = 1 ms of simulated time). The
journals are generated directly (a live run of 51M events through sidecars would take the
sidecars' ingest time, measured separately by bench_sidecar_ingest.py).

CPU seconds (the merging process and its workers) are printed beside the wall time: on a shared
machine the wall time also counts other processes' load, the CPU time does not. ``--split K``
then merges the same journals split as on K nodes: K concurrent ``yprov merge --part``
processes (one worker each, the nodes dealt round-robin), then the join.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from yprov_hpc.merge import merge_run
from yprov_hpc.wire.codec import encode_batch
from yprov_hpc.wire.journal import JournalWriter

T0 = 1_780_000_000_000_000_000
MS = 1_000_000
PER_NODE = 8


def generate(root: Path, ranks: int, points: int, mark_every: int) -> int:
    journal_dir = root / "journal"
    journal_dir.mkdir(parents=True)
    nodes = (ranks + PER_NODE - 1) // PER_NODE
    writers = [JournalWriter(journal_dir / f"node-n{n}.journal") for n in range(nodes)]
    names = [f"metric_{i}" for i in range(10)]
    total = 0
    for rank in range(ranks):
        node = f"n{rank // PER_NODE}"
        w = writers[rank // PER_NODE]
        start = [
            (
                1,
                T0,
                {
                    "run_id": "scale",
                    "namespace": "http://example.org/",
                    "experiment": "scale",
                    "rank": rank,
                    "local_rank": rank % PER_NODE,
                    "world_size": ranks,
                    "node": node,
                },
            ),
            (11, T0, {"pid": 10_000 + rank, "world_size": ranks, "local_rank": rank % PER_NODE}),
        ]
        w.append(*encode_batch("scale", rank, node, rank + 1, 0, start, T0))
        seq, step = 2, 0
        while step < points:
            n = min(1000, points - step)
            events: list[tuple[object, ...]] = []
            for s in range(step, step + n):
                events.append((4, T0 + s * MS, names[s % 10], 1.0 / (s + 1), "training", s))
                if mark_every and s % mark_every == mark_every - 1:
                    events.append((8, T0 + s * MS, "system", "training", s))
                    events.append((8, T0 + s * MS, "carbon", "training", s))
            w.append(*encode_batch("scale", rank, node, rank + 1, seq, events, T0))
            seq += len(events)
            total += len(events)
            step += n
        end = [(2, T0 + points * MS, "finished", {}), (12, T0 + points * MS, {"pid": 10_000 + rank})]
        w.append(*encode_batch("scale", rank, node, rank + 1, seq, end, T0))
    seconds = points // 1000 + 1
    for n, w in enumerate(writers):
        samples = []
        for k in range(seconds + 1):
            ranks_here = {
                str(r): {"pid": 10_000 + r, "cpu_s": 0.9 * k, "local_rank": r % PER_NODE}
                for r in range(n * PER_NODE, min(ranks, (n + 1) * PER_NODE))
            }
            samples.append(
                (
                    9,
                    T0 + k * 1000 * MS,
                    "system",
                    {
                        "cpu_percent": 90.0,
                        "cpu_busy_s": 8.0 * k,
                        "mem_used_bytes": 10**9,
                        "ranks": ranks_here,
                    },
                )
            )
        w.append(*encode_batch("scale", -1, f"n{n}", 999_000 + n, 0, samples, T0))
        w.close()
    return total


def _cpu_s() -> float:
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def split_merge(root: Path, parts: int, workers: int) -> dict[str, float]:
    """Parts as ``parts`` concurrent processes, then the join; wall seconds of each stage."""
    from yprov_hpc.merge import part_nodes

    nodes = part_nodes(root)
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent.parent)}
    t = time.perf_counter()
    procs = []
    for k in range(parts):
        mine = [arg for node in nodes[k::parts] for arg in ("--part", node)]
        command = [sys.executable, "-m", "yprov_hpc.cli", "merge", "-q", "-j", "1", *mine, str(root)]
        procs.append(subprocess.Popen(command, env=env))
    failed = [p.args for p in procs if p.wait() != 0]
    parts_s = time.perf_counter() - t
    t = time.perf_counter()
    joined = merge_run(root, create_svg=False, workers=workers, join=True)
    return {
        "parts_s": round(parts_s, 1),
        "join_s": round(time.perf_counter() - t, 1),
        "ranks_from_parts": joined.from_parts,
        "failed_parts": len(failed),
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--ranks", type=int, default=512)
    parser.add_argument("--points", type=int, default=100_000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument(
        "--mark-every", type=int, default=10, help="a system and a carbon mark every N steps (0: none)"
    )
    parser.add_argument("--keep", type=Path, default=None, help="generate here and keep it")
    parser.add_argument("--split", type=int, default=0, help="then merge as K node parts + the join")
    args = parser.parse_args()
    base = args.keep or Path(tempfile.mkdtemp())
    root = base / "scale_scale"
    t = time.perf_counter()
    events = generate(root, args.ranks, args.points, args.mark_every)
    gen_s = time.perf_counter() - t
    journal_mb = sum(p.stat().st_size for p in (root / "journal").glob("*.journal")) / 1e6
    t, cpu = time.perf_counter(), _cpu_s()
    result = merge_run(root, create_svg=False, workers=args.workers)
    merge_s, merge_cpu_s = time.perf_counter() - t, _cpu_s() - cpu
    self_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    child_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    print(
        json.dumps(
            {
                "ranks": args.ranks,
                "points_per_rank": args.points,
                "mark_every": args.mark_every,
                "events": events,
                "journal_mb": round(journal_mb),
                "generate_s": round(gen_s, 1),
                "workers": args.workers,
                "merge_s": round(merge_s, 1),
                "merge_cpu_s": round(merge_cpu_s, 1),
                "load_average_1min": round(os.getloadavg()[0], 2),
                "peak_rss_mb_merge_process": round(self_mb),
                "peak_rss_mb_largest_worker": round(child_mb),
                "documents": len(result.documents),
                "problems": result.problems[:3],
                "missing_events": sum(len(d.gaps) for d in result.ranks.values()),
                **(split_merge(root, args.split, args.workers) if args.split else {}),
            },
            indent=2,
        )
    )
    if args.keep is None:
        shutil.rmtree(base)


if __name__ == "__main__":
    main()
