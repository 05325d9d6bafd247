"""Import and start-up cost: `import yprov_hpc` (time, memory, no torch; and with the API's
names loaded, since they load on first use) and `start_run`
(time to return, and time until the embedded sidecar has started and acked the first batch).

    python benchmarks/bench_startup.py [--repeat 15]

Every measurement is a fresh process; medians are reported, beside `python -c pass` as the floor.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time

_IMPORT = r"""
import sys, time
def rss_kb():
    for line in open("/proc/self/status"):
        if line.startswith("VmRSS"):
            return int(line.split()[1])
before = rss_kb(); t = time.perf_counter()
import {module} as m
dt = time.perf_counter() - t
api = getattr(m, "start_run", None)  # names load on first use: count them as the import's
dt_api = time.perf_counter() - t
print(dt, rss_kb() - before, "torch" in sys.modules, dt_api)
"""

_START = r"""
import time, tempfile, yprov_hpc as prov4ml
tmp = tempfile.mkdtemp()
start_run = prov4ml.start_run  # the API loaded: that is the import's cost, measured above
t0 = time.perf_counter()
run = start_run("www.example.org", "bench", tmp, handle_sigterm=False, auto_merge=False)
t1 = time.perf_counter()
prov4ml.log_metric("x", 1.0)
while run._sender.stats.batches_acked < 1:
    time.sleep(0.0005)
t2 = time.perf_counter()
prov4ml.end_run()
print(t1 - t0, t2 - t0)
"""


def _runs(code: str, repeat: int) -> list[list[str]]:
    out = []
    for _ in range(repeat):
        proc = subprocess.run(
            [sys.executable, "-c", code],
            capture_output=True,
            text=True,
            check=True,
            cwd=tempfile.gettempdir(),
        )
        out.append(proc.stdout.split())
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeat", type=int, default=15)
    parser.add_argument("--module", default="yprov_hpc", help="module to import (e.g. prov4ml for the peer)")
    parser.add_argument("--python", default=sys.executable)
    args = parser.parse_args()

    walls = []
    for _ in range(args.repeat):
        t = time.perf_counter()
        subprocess.run([args.python, "-c", "pass"], check=True)
        walls.append(time.perf_counter() - t)
    floor_ms = statistics.median(walls) * 1000
    imp = []
    for _ in range(args.repeat):
        proc = subprocess.run(
            [args.python, "-c", _IMPORT.format(module=args.module)],
            capture_output=True,
            text=True,
            check=True,
            cwd=tempfile.gettempdir(),
        )
        imp.append(proc.stdout.split())
    result = {
        "python_startup_ms": round(floor_ms, 1),
        "import_ms_median": round(statistics.median(float(r[0]) for r in imp) * 1000, 1),
        "import_with_api_ms_median": round(statistics.median(float(r[3]) for r in imp) * 1000, 1),
        "import_rss_mb_median": round(statistics.median(int(r[1]) for r in imp) / 1024, 1),
        "imports_torch": any(r[2] == "True" for r in imp),
    }
    if args.module == "yprov_hpc":
        starts = _runs(_START, args.repeat)
        first_ack_ms = [float(r[1]) * 1000 for r in starts]
        result["start_run_return_ms_median"] = round(statistics.median(float(r[0]) for r in starts) * 1000, 2)
        result["start_run_to_first_ack_ms_median"] = round(
            statistics.median(float(r[1]) for r in starts) * 1000, 1
        )
        result["start_run_to_first_ack_ms_max"] = round(max(first_ack_ms), 1)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
