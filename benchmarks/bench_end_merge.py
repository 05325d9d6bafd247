"""end_run + merge for one rank with N metric points (default 100k): delivery, merge, documents.

    python benchmarks/bench_end_merge.py [--points 100000] [--metrics 10] [--peer]

``--train-s S``: wait S seconds before ``end_run`` (what the rest of a training run takes), so
that the sidecar is up and its merge imports are warm, as in any run longer than a second.
``--peer``: the same with yProv4ML 3.2.8 (importable as ``yprov4ml``): its ``end_run`` writes
its document and metric files in the training process (no graphs).

Times end_run (drain + acks + done marker + merge + DOT graphs) and then a second merge with
`merge_run` alone (what `yprov merge` does), in a fresh process, with peak RSS.
"""

from __future__ import annotations

import argparse
import json
import resource
import tempfile
import time
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--points", type=int, default=100_000)
    parser.add_argument("--metrics", type=int, default=10, help="distinct metric names")
    parser.add_argument("--peer", action="store_true", help="measure yProv4ML 3.2.8 instead")
    parser.add_argument(
        "--train-s",
        type=float,
        default=0.0,
        help="seconds between the last log_metric and end_run (training)",
    )
    args = parser.parse_args()
    if args.peer:
        _peer(args.points, args.metrics)
        return
    import yprov_hpc as prov4ml
    from yprov_hpc.merge import merge_run

    tmp = tempfile.mkdtemp()
    prov4ml.start_run("www.example.org", "bench", tmp, handle_sigterm=False)
    names = [f"metric_{i}" for i in range(args.metrics)]
    t0 = time.perf_counter()
    for i in range(args.points):
        prov4ml.log_metric(names[i % args.metrics], i * 0.001, prov4ml.Context.TRAINING, i)
    log_s = time.perf_counter() - t0
    time.sleep(args.train_s)  # a run that ends right after it starts pays the sidecar's start-up
    t1 = time.perf_counter()
    report = prov4ml.end_run()
    end_s = time.perf_counter() - t1
    t2 = time.perf_counter()
    merge_run(report.run_dir, create_svg=False)
    merge_s = time.perf_counter() - t2
    doc = report.documents[0]
    series = Path(report.run_dir) / "metrics" / "rank0.parquet"
    print(
        json.dumps(
            {
                "points": args.points,
                "train_s": args.train_s,
                "log_loop_s": round(log_s, 3),
                "end_run_incl_merge_s": round(end_s, 3),
                "merge_again_s": round(merge_s, 3),
                "rank_document_kb": round(doc.stat().st_size / 1024, 1),
                "series_file_kb": round(series.stat().st_size / 1024, 1),
                "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
                "spilled": report.delivery.events_spilled,
            },
            indent=2,
        )
    )


def _peer(points: int, metrics: int) -> None:
    import os

    import yprov4ml

    tmp = tempfile.mkdtemp()
    os.chdir(tmp)  # it writes a requirements.txt into the working directory
    yprov4ml.start_run(
        prov_user_namespace="www.example.org", experiment_name="bench", provenance_save_dir=tmp
    )
    names = [f"metric_{i}" for i in range(metrics)]
    t0 = time.perf_counter()
    for i in range(points):
        yprov4ml.log_metric(names[i % metrics], i * 0.001, context="training", step=i)
    log_s = time.perf_counter() - t0
    t1 = time.perf_counter()
    yprov4ml.end_run(create_graph=False, create_svg=False)
    end_s = time.perf_counter() - t1
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    out = {"impl": "yprov4ml 3.2.8", "points": points, "log_loop_s": round(log_s, 3)}
    out.update(end_run_s=round(end_s, 3), peak_rss_mb=round(peak, 1))
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
