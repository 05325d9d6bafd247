"""What a training loop pays for logging: wall time added per logged event, and the sender's cost.

    python benchmarks/bench_loop.py [--steps 100000] [--rounds 5] [--tree OTHER_CHECKOUT]

``--peer PATH`` adds yProv4ML 3.2.8 (importable from PATH, e.g. a ``pip install --target``) as
another logging mode, in the same rounds: wall time per event, steady and whole run.

``--tree`` runs the logging modes a second time in each round with another checkout first on
``PYTHONPATH`` (e.g. a worktree of an older commit, with a ``yprov_daemon -> daemon`` link):
a before/after in the same run, against the same floor runs.

Each step is a 64x64 ``torch.mm`` (torch on one thread) plus, in the logging modes, one
``log_metric``. The floor is the same loop without logging. Modes run round-robin, each in a
fresh process, and medians over the rounds are reported:

- ``steady_us_per_event``: (second half of the loop's wall time - the floor's) / events logged
  in that half: the cost once the sidecar runs and the environment is captured;
- ``whole_us_per_event``: (``import yprov_hpc`` + ``start_run`` + the whole loop - the floor's
  whole loop) / events: start-up included;
- ``sender_cpu_us_per_event``: the sender thread's CPU (``time.thread_time`` in the thread)
  after start-up, per event; ``sender_startup_cpu_ms``: its CPU finding or starting the
  sidecar, connecting and capturing the environment;
- ``pack_us_per_event``: the sender's wall time popping and packing events, when it holds the
  GIL throughout (an approximation of the GIL time it takes from training, beside its CPU);
- ``end_run_s``: delivery of what is still buffered (no merge: ``auto_merge=False``);
- ``steady_paired_us_per_event``: in one process past start-up, alternating blocks of 5,000
  steps with and without logging (in both orders), the median difference per event: the
  floor in the same run, so slow changes in the machine's load cancel out;
- every mode runs ``gc.collect()`` before its clock starts: importing torch leaves a full
  collection (~90 ms) due, which the first mode to allocate would otherwise pay inside its loop;
- ``*_best``: the same from the fastest run of each mode (other load on the machine only
  adds time, so on a shared machine these are the steadier estimates).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent

_CHILD = r"""
import json, sys, tempfile, time
import torch
torch.set_num_threads(1)
mode, steps = {mode!r}, {steps}
a = torch.randn(64, 64)
mm = torch.mm
for _ in range(2000):  # warm torch up before any clock starts
    mm(a, a)
import gc
gc.collect()  # importing torch left a full collection due (~90 ms over its ~170k objects): it
# falls on whichever mode allocates first (not the floor, which allocates nothing), so pay it
# before the clock in every mode; a training loop that allocates pays it in its first seconds
pc = time.perf_counter
half = steps // 2
t_start = pc()
if mode == "paired":
    import statistics
    import yprov_hpc as prov4ml
    prov4ml.start_run("www.example.org", "loop", tempfile.mkdtemp(), handle_sigterm=False,
                      auto_merge=False)
    log, ctx = prov4ml.log_metric, prov4ml.Context.TRAINING
    for i in range(half):  # past start-up: the sidecar runs, the environment is captured
        mm(a, a)
        log("loss", 0.5, ctx, i)
    block, diffs, step = 5000, [], half
    for k in range((steps - half) // (2 * block)):
        times = {{}}
        for which in (("floor", "log") if k % 2 == 0 else ("log", "floor")):
            t0 = pc()
            if which == "floor":
                for i in range(block):
                    mm(a, a)
            else:
                for i in range(step, step + block):
                    mm(a, a)
                    log("loss", 0.5, ctx, i)
                step += block
            times[which] = pc() - t0
        diffs.append((times["log"] - times["floor"]) / block * 1e6)
    prov4ml.end_run()
    print(json.dumps({{"paired_us_per_event": statistics.median(diffs), "pairs": diffs}}))
    sys.exit(0)
elif mode == "floor":
    for i in range(half):
        mm(a, a)
    t_half = pc()
    for i in range(half, steps):
        mm(a, a)
    t_end = pc()
    out = {{}}
elif mode == "yprov4ml":
    import yprov4ml as prov4ml
    prov4ml.start_run(prov_user_namespace="www.example.org", experiment_name="loop",
                      provenance_save_dir=tempfile.mkdtemp(), save_after_n_logs=100)
    t_started = pc()
    log = prov4ml.log_metric  # 3.2.8 takes contexts as plain strings
    for i in range(half):
        mm(a, a)
        log("loss", 0.5, context="training", step=i)
    t_half = pc()
    for i in range(half, steps):
        mm(a, a)
        log("loss", 0.5, context="training", step=i)
    t_end = pc()
    prov4ml.end_run(create_graph=False, create_svg=False)
    out = {{"start_s": t_started - t_start, "end_run_s": pc() - t_end}}
else:
    import yprov_hpc as prov4ml
    run = prov4ml.start_run("www.example.org", "loop", tempfile.mkdtemp(), handle_sigterm=False,
                            auto_merge=False)
    t_started = pc()
    log, ctx = prov4ml.log_metric, prov4ml.Context.TRAINING
    for i in range(half):
        mm(a, a)
        log("loss", 0.5, ctx, i)
    t_half = pc()
    for i in range(half, steps):
        mm(a, a)
        log("loss", 0.5, ctx, i)
    t_end = pc()
    report = prov4ml.end_run()
    d = report.delivery
    out = {{"start_s": t_started - t_start, "end_run_s": pc() - t_end,
           "sender_cpu_s": getattr(d, "sender_cpu_s", 0.0),
           "sender_startup_cpu_s": getattr(d, "sender_startup_cpu_s", 0.0),
           "pack_s": getattr(d, "pack_s", 0.0),
           "batches": d.batches, "events": d.events, "spilled": d.events_spilled,
           "resent": d.batches_resent}}
out.update(whole_s=t_end - t_start, second_half_s=t_end - t_half, steps=steps)
print(json.dumps(out))
"""

MODES = ["floor", "yprov-hpc"]


def run_mode(mode: str, steps: int, tree: str | None = None) -> dict[str, Any]:
    code = _CHILD.format(mode=mode, steps=steps)
    env = None if tree is None else {**os.environ, "PYTHONPATH": tree}
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=tempfile.gettempdir(), env=env
    )
    if proc.returncode != 0:
        raise RuntimeError(f"{mode} failed: {proc.stderr.strip()[-2000:]}")
    result: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    return result


def per_event(runs: dict[str, list[dict[str, Any]]], steps: int) -> dict[str, Any]:
    """Medians over rounds; each round's logging run is compared with that round's floor."""
    half = steps // 2
    keys = ("steady", "whole", "cpu", "startup_cpu", "start", "pack", "end", "batch")
    rows: dict[str, list[float]] = {k: [] for k in keys}
    for floor, impl in zip(runs["floor"], runs["yprov-hpc"], strict=True):
        rows["steady"].append((impl["second_half_s"] - floor["second_half_s"]) / (steps - half) * 1e6)
        rows["whole"].append((impl["whole_s"] - floor["whole_s"]) / steps * 1e6)
        startup_cpu = impl["sender_startup_cpu_s"]
        rows["cpu"].append((impl["sender_cpu_s"] - startup_cpu) / impl["events"] * 1e6)
        rows["startup_cpu"].append(startup_cpu * 1e3)
        rows["start"].append(impl["start_s"] * 1e3)
        rows["pack"].append(impl["pack_s"] / impl["events"] * 1e6)
        rows["end"].append(impl["end_run_s"])
        rows["batch"].append(impl["events"] / impl["batches"])
    med = {k: statistics.median(v) for k, v in rows.items()}

    def best(key: str) -> float:  # interference only adds time: the fastest run of each mode
        return min(r[key] for r in runs["yprov-hpc"]) - min(r[key] for r in runs["floor"])

    return {
        "steady_us_per_event_best": best("second_half_s") / (steps - half) * 1e6,
        "whole_us_per_event_best": best("whole_s") / steps * 1e6,
        "floor_whole_s": statistics.median(r["whole_s"] for r in runs["floor"]),
        "impl_whole_s": statistics.median(r["whole_s"] for r in runs["yprov-hpc"]),
        "steady_us_per_event": med["steady"],
        "whole_us_per_event": med["whole"],
        "sender_cpu_us_per_event": med["cpu"],
        "sender_startup_cpu_ms": med["startup_cpu"],
        "import_and_start_run_ms": med["start"],
        "pack_us_per_event": med["pack"],
        "end_run_s": med["end"],
        "events_per_batch": med["batch"],
        "steady_us_per_event_each_round": rows["steady"],
        "whole_us_per_event_each_round": rows["whole"],
    }


def _peer_summary(floor: list[dict[str, Any]], peer: list[dict[str, Any]], steps: int) -> dict[str, Any]:
    """The peer's wall time per event against the same floor runs (it reports no sender)."""
    half = steps // 2
    steady = [
        (p["second_half_s"] - f["second_half_s"]) / (steps - half) * 1e6
        for f, p in zip(floor, peer, strict=True)
    ]
    whole = [(p["whole_s"] - f["whole_s"]) / steps * 1e6 for f, p in zip(floor, peer, strict=True)]
    return {
        "steady_us_per_event": statistics.median(steady),
        "steady_us_per_event_best": (
            min(p["second_half_s"] for p in peer) - min(f["second_half_s"] for f in floor)
        )
        / (steps - half)
        * 1e6,
        "whole_us_per_event": statistics.median(whole),
        "impl_whole_s": statistics.median(p["whole_s"] for p in peer),
        "end_run_s": statistics.median(p["end_run_s"] for p in peer),
        "steady_us_per_event_each_round": steady,
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--steps", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--tree", help="another checkout to measure in the same rounds")
    parser.add_argument("--peer", help="where yprov4ml can be imported from (PYTHONPATH)")
    args = parser.parse_args()
    sys.path.insert(0, str(HERE))
    from _stats import machine

    runs: dict[str, list[dict[str, Any]]] = {m: [] for m in MODES}
    other: list[dict[str, Any]] = []
    peer: list[dict[str, Any]] = []
    paired: list[float] = []
    other_paired: list[float] = []
    for _ in range(args.rounds):
        for mode in MODES:
            runs[mode].append(run_mode(mode, args.steps))
        paired.append(run_mode("paired", args.steps)["paired_us_per_event"])
        if args.peer:
            peer.append(run_mode("yprov4ml", args.steps, args.peer))
        if args.tree:
            other.append(run_mode("yprov-hpc", args.steps, args.tree))
            other_paired.append(run_mode("paired", args.steps, args.tree)["paired_us_per_event"])
    summary = per_event(runs, args.steps)
    summary["steady_paired_us_per_event"] = statistics.median(paired)
    summary["steady_paired_us_per_event_each_round"] = paired
    if args.peer:
        summary["yprov4ml"] = _peer_summary(runs["floor"], peer, args.steps)
    if args.tree:
        theirs = per_event({"floor": runs["floor"], "yprov-hpc": other}, args.steps)
        theirs["steady_paired_us_per_event"] = statistics.median(other_paired)
        summary["tree"] = {"path": args.tree, **theirs}
    print(json.dumps({"machine": machine(), "steps": args.steps, "rounds": args.rounds, **summary}, indent=2))


if __name__ == "__main__":
    main()
