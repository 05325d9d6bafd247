"""log_metric cost in the training thread: 100k calls, each timed, beside a list.append floor.

    python benchmarks/bench_log_metric.py [--calls 100000] [--peers] [--marks] [--bound]

Each implementation runs in its own fresh process. The floor times `list.append` of the same
tuple with the same per-call timer, so the timer's own cost is visible. `--peers` adds
yProv4ML 3.2.8 and MLflow (local file store, synchronous like its default client) when importable
(see benchmarks/README.md).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent

_CHILD = r"""
import gc, json, sys, time, tempfile
sys.path.insert(0, {here!r})
from _stats import summarize
impl, calls, pattern = {impl!r}, {calls}, {pattern!r}
tmp = tempfile.mkdtemp()
pc = time.perf_counter_ns
if impl == "floor: list.append":
    buf = []
    def call(i): buf.append((4, pc(), "loss", 0.5, "training", i))
    end = lambda: None
elif impl == "yprov-hpc":
    import yprov_hpc as prov4ml
    prov4ml.start_run("www.example.org", "bench", tmp, handle_sigterm=False, auto_merge=False)
    ctx = prov4ml.Context.TRAINING
    log = prov4ml.log_metric
    def call(i): log("loss", 0.5, ctx, i)
    end = prov4ml.end_run
elif impl == "yprov-hpc at its buffer bound (spilling)":
    import os
    os.environ.update(YPROV_MAX_BUFFER_EVENTS="10000", YPROV_BATCH_EVENTS="100000000",
                      YPROV_FLUSH_INTERVAL_S="1000")  # the sender acts only when relieved
    import yprov_hpc as prov4ml
    prov4ml.start_run("www.example.org", "bench", tmp, handle_sigterm=False, auto_merge=False,
                      sidecar="off")
    ctx = prov4ml.Context.TRAINING
    log = prov4ml.log_metric
    def call(i): log("loss", 0.5, ctx, i)
    end = prov4ml.end_run
elif impl == "yprov-hpc log_system_metrics (a mark)":
    import yprov_hpc as prov4ml
    prov4ml.start_run("www.example.org", "bench", tmp, handle_sigterm=False, auto_merge=False)
    ctx = prov4ml.Context.TRAINING
    mark = prov4ml.log_system_metrics
    def call(i): mark(ctx, i)
    end = prov4ml.end_run
elif impl == "yProv4ML 3.2.8":
    import yprov4ml as prov4ml
    prov4ml.start_run(prov_user_namespace="www.example.org", experiment_name="bench",
                      provenance_save_dir=tmp, save_after_n_logs=100)
    log = prov4ml.log_metric  # 3.2.8 takes contexts as plain strings
    def call(i): log("loss", 0.5, context="training", step=i)
    end = prov4ml.end_run
elif impl == "MLflow (file store)":
    import os
    os.environ["MLFLOW_ALLOW_FILE_STORE"] = "true"
    import mlflow
    mlflow.set_tracking_uri("file://" + tmp)
    mlflow.set_experiment("bench")
    mlflow.start_run()
    def call(i): mlflow.log_metric("loss", 0.5, step=i)
    end = mlflow.end_run
for i in range(min(1000, calls)):  # warm up
    call(i)
samples = [0] * calls
total = 0
for i in range(calls):
    t0 = pc()
    call(i)
    samples[i] = t = pc() - t0
    total += t
    if pattern == "steps" and i % 10 == 9:
        time.sleep(0.0002)  # a training step's work, which releases the GIL (torch ops, I/O)
t_end = pc()
end()
end_s = (pc() - t_end) / 1e9
out = summarize(samples)
out["sum_of_calls_s"] = total / 1e9
out["end_run_s"] = end_s
print(json.dumps(out))
"""


def run_impl(impl: str, calls: int, python: str, pattern: str) -> dict[str, float] | str:
    code = _CHILD.format(here=str(HERE), impl=impl, calls=calls, pattern=pattern)
    proc = subprocess.run([python, "-c", code], capture_output=True, text=True, cwd=tempfile.gettempdir())
    if proc.returncode != 0:
        return proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else f"exit {proc.returncode}"
    result: dict[str, float] = json.loads(proc.stdout.strip().splitlines()[-1])
    return result


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--calls", type=int, default=100_000)
    parser.add_argument("--peers", action="store_true", help="also run yProv4ML and MLflow if importable")
    parser.add_argument("--peers-python", default=sys.executable, help="python that has the peers installed")
    parser.add_argument(
        "--pattern",
        choices=["tight", "steps"],
        default="tight",
        help="tight: back-to-back calls that never release the GIL (worst case for any background "
        "thread); steps: 10 calls per step, each step sleeping 0.2 ms as GIL-releasing work does",
    )
    parser.add_argument("--marks", action="store_true", help="also time log_system_metrics (a mark)")
    parser.add_argument(
        "--bound",
        action="store_true",
        help="also time log_metric with a 10k-event buffer bound that is reached again and again "
        "(no sidecar: the sender thread spills each time it is relieved)",
    )
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    sys.path.insert(0, str(HERE))
    from _stats import machine

    impls = [("floor: list.append", sys.executable), ("yprov-hpc", sys.executable)]
    if args.marks:
        impls.append(("yprov-hpc log_system_metrics (a mark)", sys.executable))
    if args.bound:
        impls.append(("yprov-hpc at its buffer bound (spilling)", sys.executable))
    if args.peers:
        impls += [("yProv4ML 3.2.8", args.peers_python), ("MLflow (file store)", args.peers_python)]
    results = {name: run_impl(name, args.calls, os.path.abspath(py), args.pattern) for name, py in impls}
    if args.json:
        print(
            json.dumps(
                {"machine": machine(), "calls": args.calls, "pattern": args.pattern, "results": results},
                indent=2,
            )
        )
        return
    from rich.console import Console
    from rich.table import Table

    title = f"log_metric, {args.calls:,} calls, {args.pattern} loop, each timed ({machine()['cpu']})"
    table = Table(title=title)
    cols = ["mean_us", "p50_us", "p99_us", "p99.9_us", "max_us", "over_1ms", "end_run_s"]
    table.add_column("implementation")
    for c in cols:
        table.add_column(c, justify="right")
    for name, res in results.items():
        if isinstance(res, str):
            table.add_row(name, f"[red]not run: {res}[/red]")
        else:
            table.add_row(
                name, *(f"{res[c]:.3f}" if isinstance(res[c], float) else str(res[c]) for c in cols)
            )
    Console().print(table)


if __name__ == "__main__":
    main()
