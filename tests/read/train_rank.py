"""One rank of a small real training run, for the read tests: linear regression by SGD.

    python train_rank.py SAVE_DIR EXPERIMENT RUN_ID RANK WORLD_SIZE LR [--fail]

Logs params, a loss curve (training), a validation metric, execution times, system and carbon
marks, two model versions (epochs 1 and 3) and an artifact; sleeps a little per epoch so that the sidecar
samples the node. With --fail the rank raises after its second epoch (status "failed").
"""

from __future__ import annotations

import json
import random
import sys
import time
from pathlib import Path

import yprov_hpc as prov4ml


def main() -> None:
    save_dir, experiment, run_id, rank, world, lr = sys.argv[1:7]
    fail = "--fail" in sys.argv
    run = prov4ml.start_run(
        "www.example.org",
        experiment,
        save_dir,
        run_id=run_id,
        rank=int(rank),
        world_size=int(world),
        handle_sigterm=False,
    )
    prov4ml.log_params({"lr": float(lr), "epochs": 4, "model": "linear", "shuffle": True})
    rng = random.Random(int(rank))
    w, step = 0.0, 0
    for epoch in range(4):
        for _ in range(25):
            x = rng.uniform(-1, 1)
            err = w * x - 3.0 * x
            w -= float(lr) * err * x
            step += 1
            prov4ml.log_metric("loss", err * err, context=prov4ml.Context.TRAINING, step=step)
        prov4ml.log_metric(
            "accuracy", 1.0 / (1.0 + abs(w - 3.0)), context=prov4ml.Context.VALIDATION, step=epoch
        )
        prov4ml.log_system_metrics(prov4ml.Context.TRAINING, step=epoch)
        prov4ml.log_carbon_metrics(prov4ml.Context.TRAINING, step=epoch)
        prov4ml.log_current_execution_time("epoch", prov4ml.Context.TRAINING, step=epoch)
        if epoch % 2 == 1:  # a checkpoint written by "someone else", as Lightning's are
            ckpt = Path(save_dir) / f"ckpt_{run_id}_rank{rank}_epoch{epoch}.json"
            ckpt.write_text(json.dumps({"w": w, "epoch": epoch}))
            run.record_model_version_file(ckpt, "weights", prov4ml.Context.TRAINING, step)
        time.sleep(0.15)
        if fail and epoch == 1:
            raise RuntimeError("this rank fails on purpose")
    model = Path(save_dir) / f"weights_{run_id}_rank{rank}.json"
    model.write_text(json.dumps({"w": w}))
    prov4ml.log_artifact(model, context=prov4ml.Context.TRAINING, step=step)
    prov4ml.end_run()


if __name__ == "__main__":
    main()
