"""A small, real training run recorded with yprov-hpc: linear regression by SGD, pure Python.

    python examples/quickstart.py                 # one process
    mpiexec -n 4 python examples/quickstart.py    # four ranks, one shared local sidecar

Each rank trains on its own shard of a synthetic data set. The provenance goes to
./prov/<experiment>_<run id>/ (or $YPROV_SAVE_DIR).
"""

from __future__ import annotations

import argparse
import json
import random
import tempfile
from pathlib import Path

import yprov_hpc as prov4ml


def make_data(n: int, seed: int) -> list[tuple[list[float], float]]:
    rng = random.Random(seed)
    true_w, true_b = [2.0, -3.0, 0.5], 1.0
    rows = []
    for _ in range(n):
        x = [rng.uniform(-1, 1) for _ in true_w]
        y = sum(wi * xi for wi, xi in zip(true_w, x, strict=True)) + true_b + rng.gauss(0, 0.1)
        rows.append((x, y))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--samples", type=int, default=2000)
    parser.add_argument("--lr", type=float, default=0.05)
    parser.add_argument("--save-dir", default=None)
    args = parser.parse_args()

    run = prov4ml.start_run(
        prov_user_namespace="www.example.org",
        experiment_name="quickstart",
        provenance_save_dir=args.save_dir,
        save_after_n_logs=100,
    )
    rank = run.rank
    prov4ml.log_params({"epochs": args.epochs, "lr": args.lr, "samples": args.samples, "model": "linear"})
    data = make_data(args.samples, seed=rank)
    split = int(0.8 * len(data))
    train, val = data[:split], data[split:]
    w, b = [0.0, 0.0, 0.0], 0.0

    step = 0
    for epoch in range(args.epochs):
        total = 0.0
        for x, y in train:
            err = sum(wi * xi for wi, xi in zip(w, x, strict=True)) + b - y
            w = [wi - args.lr * err * xi for wi, xi in zip(w, x, strict=True)]
            b -= args.lr * err
            total += err * err
            step += 1
            if step % 10 == 0:
                prov4ml.log_metric("loss", err * err, context=prov4ml.Context.TRAINING, step=step)
        val_mse = sum((sum(wi * xi for wi, xi in zip(w, x, strict=True)) + b - y) ** 2 for x, y in val) / len(
            val
        )
        prov4ml.log_metric("MSE_train", total / len(train), context=prov4ml.Context.TRAINING, step=epoch)
        prov4ml.log_metric("MSE_val", val_mse, context=prov4ml.Context.VALIDATION, step=epoch)
        prov4ml.log_system_metrics(prov4ml.Context.TRAINING, step=epoch)
        prov4ml.log_carbon_metrics(prov4ml.Context.TRAINING, step=epoch)
        prov4ml.log_current_execution_time("epoch_end", prov4ml.Context.TRAINING, step=epoch)

    model_file = Path(tempfile.mkdtemp()) / f"model_rank{rank}.json"
    model_file.write_text(json.dumps({"w": w, "b": b}))
    prov4ml.log_artifact(model_file, context=prov4ml.Context.TRAINING, step=args.epochs)

    report = prov4ml.end_run(create_graph=True, create_svg=True)
    for problem in report.problems:
        print(f"rank {rank}: problem: {problem}")
    if report.merged:
        print(f"provenance of the whole run: {report.collection}")
        for doc in report.documents:
            print(f"  {doc}")
    else:
        print(f"rank {rank}: delivered; the last rank to end writes the documents in {report.run_dir}")


if __name__ == "__main__":
    main()
