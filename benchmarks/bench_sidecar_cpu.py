"""Sidecar CPU cost while sampling, with 8 ranks' worth of events, at 1 s and 0.1 s intervals.

    python benchmarks/bench_sidecar_cpu.py [--seconds 20] [--intervals 1.0 0.1]

A real sidecar process samples psutil for real, plus RAPL and NVML through the test fakes
(this machine has neither; the fakes cost less than real NVML calls, see docs/performance.md).
One client process plays 8 ranks: each says hello and sends 100 metrics per second in
10-event batches, with system and carbon marks every step. CPU is the sidecar's user+system
time over the window, as a percentage of one core; the floor is the same sidecar with no
sampler at all, in the same run.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import threading
import time
from pathlib import Path

import psutil
import zmq

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.fakes.powercap import make_tree, set_uj  # noqa: E402
from yprov_hpc.wire.codec import encode_batch  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _sidecar import start_sidecar  # noqa: E402

RANKS = 8


def _clients(endpoint: str, seconds: float, stop: threading.Event) -> int:
    ctx = zmq.Context.instance()
    socks = []
    for r in range(RANKS):
        s = ctx.socket(zmq.DEALER)
        s.setsockopt(zmq.LINGER, 0)
        s.connect(endpoint)
        hello = [(11, time.time_ns(), {"pid": os.getpid(), "world_size": RANKS, "local_rank": r})]
        s.send_multipart(encode_batch("bench", r, "n0", r + 1, 0, hello, time.time_ns()))
        socks.append(s)
    seq = [1] * RANKS
    sent = 0
    step = 0
    t_end = time.monotonic() + seconds
    while time.monotonic() < t_end and not stop.is_set():
        for r, s in enumerate(socks):
            ts = time.time_ns()
            events = [(4, ts, f"m{i}", 0.5, "training", step) for i in range(8)]
            events += [(8, ts, "system", "training", step), (8, ts, "carbon", "training", step)]
            s.send_multipart(encode_batch("bench", r, "n0", r + 1, seq[r], events, ts))
            seq[r] += len(events)
            sent += len(events)
            while s.poll(0):
                s.recv()
        step += 1
        time.sleep(0.1)  # 10 steps/s x 10 events = 100 events/s per rank
    for s in socks:
        s.close()
    return sent


def measure(interval_s: float, samplers: str, seconds: float, env: dict[str, str]) -> dict[str, float]:
    run_dir = Path(tempfile.mkdtemp()) / "bench_r1"
    proc, endpoint = start_sidecar(
        run_dir, "n0", "--interval", str(interval_s), "--samplers", samplers, env=env
    )
    time.sleep(0.5)  # start-up is not the steady state
    ps = psutil.Process(proc.pid)
    c0, t0 = ps.cpu_times(), time.monotonic()
    stop = threading.Event()
    sent = _clients(endpoint, seconds, stop)
    c1, t1 = ps.cpu_times(), time.monotonic()
    proc.terminate()
    proc.wait()
    cpu = (c1.user + c1.system) - (c0.user + c0.system)
    return {
        "interval_s": interval_s,
        "samplers": samplers,
        "cpu_percent_of_one_core": round(100 * cpu / (t1 - t0), 3),
        "events_per_s": round(sent / (t1 - t0)),
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--intervals", type=float, nargs="+", default=[1.0, 0.1])
    args = parser.parse_args()
    tree = Path(tempfile.mkdtemp()) / "powercap"
    files = make_tree(tree)
    stop = threading.Event()

    def advance() -> None:  # the fake counters move like a 50 W package
        t0 = time.monotonic()
        while not stop.wait(0.05):
            set_uj(files["package-0"], int(50e6 * (time.monotonic() - t0)))

    threading.Thread(target=advance, daemon=True).start()
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "YPROV_RAPL_ROOT": str(tree),
        "YPROV_NVML_MODULE": "tests.fakes.fake_nvml",
        "FAKE_NVML_PIDS": str(os.getpid()),
    }
    results = [measure(1.0, "none", args.seconds, env)]
    for interval in args.intervals:
        results.append(measure(interval, "system,rapl,nvml", args.seconds, env))
    stop.set()
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
