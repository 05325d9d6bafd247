"""The Hugging Face Trainer callback with real CPU training of a tiny model built from a config
(no download): params, metrics at the true global step per context, checkpoints, every rank."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests.conftest import PYTHON, ROOT, run_dirs, run_example

pytest.importorskip("transformers", reason="needs transformers (pip install 'yprov-hpc[transformers]')")
pytest.importorskip(
    "accelerate", reason="the Trainer needs accelerate (pip install 'yprov-hpc[transformers]')"
)

from yprov_hpc.read.load import RunRecord, load_run

SCRIPT = str(ROOT / "tests" / "integration" / "transformers_train.py")


def _summary(run: RunRecord, rank: int, name: str, context: str) -> dict[str, object]:
    rows = [r for r in run.summary_rows if (r["rank"], r["name"], r["context"]) == (rank, name, context)]
    assert len(rows) == 1, rows
    return rows[0]


def test_trainer_records_args_metrics_and_checkpoints(tmp_path: Path) -> None:
    """One process: training arguments and model config as params, loss per step in training,
    eval loss in validation, two checkpoints as model versions, status finished."""
    run_example(tmp_path, PYTHON, SCRIPT, "prov", "out", timeout_s=600)
    (run_dir,) = run_dirs(tmp_path / "prov")
    run = load_run(run_dir)
    assert run.status == "finished"
    params = run.params[0]
    assert (params["learning_rate"], params["max_steps"], params["model/hidden_size"]) == (0.001, 8, 16)
    train = _summary(run, 0, "loss", "training")
    assert (train["count"], train["first_step"], train["last_step"]) == (4, 2, 8)
    val = _summary(run, 0, "loss", "validation")
    assert (val["count"], val["first_step"], val["last_step"]) == (2, 4, 8)
    assert [(v["prov:label"], v["step"]) for v in run.model_versions] == [
        ("checkpoint v1", 4),
        ("checkpoint v2", 8),
    ]


@pytest.mark.skipif(
    shutil.which("torchrun") is None and not (Path(PYTHON).parent / "torchrun").exists(),
    reason="needs torchrun",
)
def test_two_ranks_each_record_at_the_global_step(tmp_path: Path) -> None:
    """torchrun with 2 CPU processes: both ranks have a document with the loss at global steps
    2..8; checkpoints are recorded by the rank that saved them (rank 0) only."""
    torchrun = shutil.which("torchrun") or str(Path(PYTHON).parent / "torchrun")
    run_example(
        tmp_path,
        torchrun,
        "--nproc_per_node",
        "2",
        "--master_port",
        "29537",
        SCRIPT,
        "prov",
        "out",
        timeout_s=600,
    )
    (run_dir,) = run_dirs(tmp_path / "prov")
    run = load_run(run_dir)
    assert run.world_size == 2 and {r.status for r in run.ranks.values()} == {"finished"}
    for rank in (0, 1):
        train = _summary(run, rank, "loss", "training")
        assert (train["count"], train["first_step"], train["last_step"]) == (4, 2, 8)
    assert {v["rank"] for v in run.model_versions} == {0}
