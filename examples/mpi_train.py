"""Data-parallel SGD over MPI (mpi4py): gradients are averaged with allreduce every step.

    mpiexec -n 4 python examples/mpi_train.py

Every rank records its own provenance; the collection links the ranks.
"""

from __future__ import annotations

import argparse
import random

from mpi4py import MPI

import yprov_hpc as prov4ml


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--lr", type=float, default=0.1)
    parser.add_argument("--save-dir", default=None)
    args = parser.parse_args()
    comm = MPI.COMM_WORLD

    run = prov4ml.start_run("www.example.org", "mpi_train", args.save_dir)
    prov4ml.log_params({"steps": args.steps, "lr": args.lr, "world_size": comm.Get_size()})
    rng = random.Random(run.rank)
    w = 0.0
    for step in range(args.steps):
        x = rng.uniform(-1, 1)
        y = 3.0 * x
        grad = 2 * (w * x - y) * x
        grad = comm.allreduce(grad, op=MPI.SUM) / comm.Get_size()
        w -= args.lr * grad
        prov4ml.log_metric("loss", (w * x - y) ** 2, prov4ml.Context.TRAINING, step)
        prov4ml.log_metric("w", w, prov4ml.Context.TRAINING, step)
    comm.Barrier()
    report = prov4ml.end_run()
    if report.merged:
        print(f"provenance: {report.collection}")


if __name__ == "__main__":
    main()
