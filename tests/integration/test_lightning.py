"""The Lightning logger with real fits on CPU: every rank, true steps, contexts, checkpoints, status."""

from __future__ import annotations

import contextlib
import sys
from pathlib import Path

import lightning as L
import pytest
import torch
from torch.utils.data import DataLoader

import yprov_hpc as prov4ml
from tests.conftest import PYTHON, ROOT, entity, literal, load, run_dirs, run_example, start

sys.path.insert(0, str(ROOT / "examples"))
from lightning_train import LitMNIST
from synthetic_mnist import SyntheticMNIST


def test_two_process_fit_records_every_rank(tmp_path: Path) -> None:
    """A 2-epoch fit on 2 processes (ddp): both ranks' documents, true steps, contexts,
    hyperparameters, checkpoints as model versions on rank 0, status finished."""
    run_example(
        tmp_path,
        PYTHON,
        str(ROOT / "examples" / "lightning_train.py"),
        "--devices",
        "2",
        "--epochs",
        "2",
        "--save-dir",
        "prov",
        timeout_s=600,
    )
    (run_dir,) = run_dirs(tmp_path / "prov")
    for rank in (0, 1):
        doc = load(run_dir / f"prov_lightning_mnist_rank{rank}.json")
        act = {k: literal(v) for k, v in doc["activity"][f"run:rank{rank}"].items()}
        assert (act["yprov:rank"], act["yprov:world_size"], act["yprov:status"]) == (rank, 2, "finished")
        train = entity(doc, f"run:rank{rank}.metric.train_loss.training")
        # 1280 samples / 2 ranks / batch 64 = 10 steps per epoch; logged every 5 steps
        assert (train["yprov:count"], train["yprov:first_step"], train["yprov:last_step"]) == (4, 4, 19)
        val = entity(doc, f"run:rank{rank}.metric.val_acc.validation")
        assert val["yprov:count"] == 2 and val["yprov:last_step"] == 19
        assert entity(doc, f"run:rank{rank}.param.lr")["prov:value"] == 0.001
    rank0 = load(run_dir / "prov_lightning_mnist_rank0.json")
    versions = sorted(k for k in rank0["entity"] if k.startswith("run:rank0.model.checkpoint.v"))
    assert versions == ["run:rank0.model.checkpoint.v1", "run:rank0.model.checkpoint.v2"]
    assert entity(rank0, "run:rank0.model.checkpoint.v2")["yprov:step"] == 20


def _one_epoch_trainer(logger: prov4ml.ProvLightningLogger) -> L.Trainer:
    """A quiet 1-epoch CPU trainer that logs every step."""
    return L.Trainer(
        max_epochs=1,
        accelerator="cpu",
        devices=1,
        logger=logger,
        log_every_n_steps=1,
        enable_progress_bar=False,
        enable_model_summary=False,
        enable_checkpointing=False,
    )


def test_logger_records_into_an_explicit_run_and_leaves_it_open(save_dir: Path) -> None:
    """With start_run called first, the logger uses that run and finalize does not end it."""
    run = start(save_dir, "explicit")
    logger = prov4ml.ProvLightningLogger()
    trainer = _one_epoch_trainer(logger)
    trainer.fit(
        LitMNIST(hidden=8),
        DataLoader(SyntheticMNIST(64), batch_size=32),
        DataLoader(SyntheticMNIST(32, seed=1), batch_size=32),
    )
    assert run.active and logger.experiment is run
    prov4ml.log_metric("after_fit", 1.0)
    report = prov4ml.end_run()
    doc = load(report.documents[0])
    train = entity(doc, "run:rank0.metric.train_loss.training")
    assert (train["yprov:first_step"], train["yprov:last_step"]) == (0, 1)
    assert entity(doc, "run:rank0.metric.after_fit.run")["yprov:count"] == 1


def test_failed_fit_ends_the_run_as_failed(save_dir: Path) -> None:
    """An exception in training_step: the logger's run ends with status failed, data kept."""

    class Boom(LitMNIST):
        def training_step(self, batch, batch_idx):  # type: ignore[no-untyped-def]
            if batch_idx == 1:
                raise RuntimeError("boom")
            return super().training_step(batch, batch_idx)

    logger = prov4ml.ProvLightningLogger("www.example.org", "boom", save_dir, handle_sigterm=False)
    trainer = _one_epoch_trainer(logger)
    with contextlib.suppress(RuntimeError):  # Lightning re-raises the training error
        trainer.fit(Boom(hidden=8), DataLoader(SyntheticMNIST(128), batch_size=32))
    assert prov4ml.active_run() is None
    (doc_path,) = Path(str(logger.save_dir)).glob("prov_boom_rank0.json")
    doc = load(doc_path)
    assert literal(doc["activity"]["run:rank0"]["yprov:status"]) == "failed"
    assert entity(doc, "run:rank0.metric.train_loss.training")["yprov:count"] == 1
    assert torch.__version__  # the fit ran on the installed torch


def test_fit_twice_in_a_launcher_job_makes_two_runs(save_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Under torchrun's variables, a second fit with the same logger starts a second run with its
    own directory (the job's key and the next ordinal) instead of failing."""
    for name, value in {
        "RANK": "0",
        "LOCAL_RANK": "0",
        "WORLD_SIZE": "1",
        "TORCHELASTIC_RUN_ID": "fit2",
    }.items():
        monkeypatch.setenv(name, value)
    logger = prov4ml.ProvLightningLogger("www.example.org", "fit2", save_dir, handle_sigterm=False)
    ids = []
    for _ in range(2):
        _one_epoch_trainer(logger).fit(LitMNIST(hidden=8), DataLoader(SyntheticMNIST(64), batch_size=32))
        ids.append(logger.version)
    assert ids[0] != ids[1] and str(ids[1]).startswith(str(ids[0]).split("-r")[0] + "-r")
    for rid in ids:
        assert (save_dir / f"fit2_{rid}" / "prov_fit2_rank0.json").exists()
