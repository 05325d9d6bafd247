"""Multi-node jobs on a real local Slurm: a sidecar per node from the batch script, every rank's
document, the collection, and nothing lost to scancel or to a killed sidecar."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

from tests.conftest import PYTHON, ROOT, entity, literal, load
from tests.slurm.conftest import sbatch, slurm_env, wait_gone


def _run_dir(cwd: Path) -> Path:
    (run_dir,) = (cwd / "prov").iterdir()
    return run_dir


def test_two_node_four_rank_job(slurm_conf: str, tmp_path: Path) -> None:
    """sbatch -N2 -n4: four rank documents from two nodes' sidecars, linked by one collection."""
    job = sbatch(slurm_conf, tmp_path, [PYTHON, str(ROOT / "examples" / "quickstart.py"), "--epochs", "2"])
    wait_gone(slurm_conf, job)
    log = (tmp_path / "job.out").read_text()
    run_dir = _run_dir(tmp_path)
    assert run_dir.name == f"job_slurm{job}"
    nodes = {}
    for rank in range(4):
        doc = load(run_dir / f"prov_quickstart_rank{rank}.json")
        act = {k: literal(v) for k, v in doc["activity"][f"run:rank{rank}"].items()}
        assert (act["yprov:rank"], act["yprov:world_size"], act["yprov:launcher"]) == (rank, 4, "slurm")
        assert act["yprov:events_spilled"] == 0 and act["yprov:events_missing"] == 0
        nodes[rank] = act["yprov:node"]
        assert entity(doc, f"run:rank{rank}.metric.MSE_train.training")["yprov:count"] == 2
    assert nodes == {0: "node1", 1: "node1", 2: "node2", 3: "node2"}
    coll = load(run_dir / "prov_quickstart_collection.json")
    job_act = {k: literal(v) for k, v in coll["activity"]["run:job"].items()}
    assert json.loads(job_act["yprov:nodes"]) == ["node1", "node2"] and job_act["yprov:slurm_job_id"] == str(
        job
    )
    assert json.loads(job_act["yprov:slurm_step_ids"]) == ["1"]  # step 0 is the sidecars
    assert len(coll["hadMember"]) == 4 and {"run:node.node1", "run:node.node2"} <= set(coll["entity"])
    assert sorted(p.name for p in (run_dir / "journal").glob("node-*.journal")) == [
        "node-node1.journal",
        "node-node2.journal",
    ]
    assert log.count("yprov-sidecar INFO stopped:") == 2, "both sidecars stop cleanly on SIGTERM"
    # node2's sidecar forwarded everything to the aggregator in node1's sidecar (CURVE over tcp)
    assert "aggregating node streams" in log and "0 unacked at stop" in log, log[-3000:]
    copy = run_dir / "journal" / "agg-node2.journal"
    assert copy.exists() and copy.stat().st_size > 0


def test_mpi4py_job_over_pmi2(slurm_conf: str, tmp_path: Path) -> None:
    """The mpi4py variant (srun --mpi=pmi2, MPICH wheel): allreduce across nodes, every rank recorded."""
    env = slurm_env(slurm_conf, YPROV_SRUN_ARGS="--mpi=pmi2")
    job = sbatch(
        slurm_conf, tmp_path, [PYTHON, str(ROOT / "examples" / "mpi_train.py"), "--steps", "30"], env
    )
    wait_gone(slurm_conf, job)
    run_dir = _run_dir(tmp_path)
    last = [
        entity(load(run_dir / f"prov_mpi_train_rank{r}.json"), f"run:rank{r}.metric.w.training")["yprov:last"]
        for r in range(4)
    ]
    assert len(set(last)) == 1, (tmp_path / "job.out").read_text()[-2000:]


_FOREVER = """
import os, sys, time, yprov_hpc as prov4ml
run = prov4ml.start_run("www.example.org", "forever")
out = open(os.path.join(sys.argv[1], f"last{run.rank}.txt"), "w")
step = 0
while True:
    prov4ml.log_metric("loss", 1.0 / (step + 1), prov4ml.Context.TRAINING, step)
    out.seek(0); out.write(f"{step:10d}"); out.flush()
    step += 1
    time.sleep(0.002)
"""


def _wait_for(path: Path, predicate: object, timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():  # type: ignore[operator]
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting on {path}")


def test_scancel_keeps_everything_logged_up_to_the_signal(slurm_conf: str, tmp_path: Path) -> None:
    """scancel in the middle: every rank's document holds all its steps up to the signal."""
    script = tmp_path / "forever.py"
    script.write_text(_FOREVER)
    job = sbatch(slurm_conf, tmp_path, [PYTHON, str(script), str(tmp_path)])
    lasts = [tmp_path / f"last{r}.txt" for r in range(4)]
    _wait_for(
        tmp_path,
        lambda: all(p.exists() and p.read_text().strip() and int(p.read_text()) > 200 for p in lasts),
    )
    subprocess.run(["scancel", str(job)], env=slurm_env(slurm_conf), check=True)
    wait_gone(slurm_conf, job)
    run_dir = _run_dir(tmp_path)
    for rank in range(4):
        written = int(lasts[rank].read_text())
        doc = load(run_dir / f"prov_forever_rank{rank}.json")
        loss = entity(doc, f"run:rank{rank}.metric.loss.training")
        assert loss["yprov:last_step"] >= written and loss["yprov:count"] == loss["yprov:last_step"] + 1
        assert literal(doc["activity"][f"run:rank{rank}"]["yprov:status"]) == "killed"


_STEPS = """
import os, sys, time, yprov_hpc as prov4ml
run = prov4ml.start_run("www.example.org", "steps")
for step in range(int(sys.argv[2])):
    prov4ml.log_metric("loss", float(step), prov4ml.Context.TRAINING, step)
    if step == 300:
        open(os.path.join(sys.argv[1], f"half{run.rank}"), "w").close()
    time.sleep(0.003)
prov4ml.end_run()
"""


def test_kill_9_of_one_nodes_sidecar_loses_nothing(slurm_conf: str, tmp_path: Path) -> None:
    """kill -9 of node2's sidecar mid-job: its ranks spill, and the merge still has every event."""
    script = tmp_path / "steps.py"
    script.write_text(_STEPS)
    job = sbatch(slurm_conf, tmp_path, [PYTHON, str(script), str(tmp_path), "1500"])
    _wait_for(tmp_path, lambda: all((tmp_path / f"half{r}").exists() for r in range(4)))
    ready = json.loads((_run_dir(tmp_path) / "journal" / "sidecar-node2.json").read_text())
    os.kill(ready["pid"], signal.SIGKILL)
    wait_gone(slurm_conf, job)
    run_dir = _run_dir(tmp_path)
    for rank in range(4):
        doc = load(run_dir / f"prov_steps_rank{rank}.json")
        assert entity(doc, f"run:rank{rank}.metric.loss.training")["yprov:count"] == 1500
        act = {k: literal(v) for k, v in doc["activity"][f"run:rank{rank}"].items()}
        assert act["yprov:events_missing"] == 0
        assert (act["yprov:events_spilled"] > 0) == (rank >= 2), (
            f"rank {rank} spilled {act['yprov:events_spilled']}"
        )


def test_torchrun_variant_across_nodes(slurm_conf: str, tmp_path: Path) -> None:
    """One torchrun per node (scripts/slurm/torchrun-step.sh), DDP over gloo: 4 ranks, 2 nodes."""
    env = slurm_env(slurm_conf, YPROV_NPROC_PER_NODE="2")
    out = subprocess.run(
        [
            "sbatch",
            "--parsable",
            "--nodes=2",
            "--ntasks-per-node=1",
            "-o",
            str(tmp_path / "job.out"),
            str(ROOT / "scripts" / "slurm" / "yprov-job.sbatch"),
            str(ROOT / "scripts" / "slurm" / "torchrun-step.sh"),
            str(ROOT / "examples" / "ddp_train.py"),
            "--epochs",
            "1",
        ],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    wait_gone(slurm_conf, int(out.stdout.strip().split(";")[0]))
    run_dir = _run_dir(tmp_path)
    for rank in range(4):
        doc = load(run_dir / f"prov_ddp_mnist_rank{rank}.json")
        act = {k: literal(v) for k, v in doc["activity"][f"run:rank{rank}"].items()}
        assert (act["yprov:world_size"], act["yprov:node"]) == (4, "node1" if rank < 2 else "node2")
        assert entity(doc, f"run:rank{rank}.dataset.train_dataset")["yprov:num_replicas"] == 4
