"""Lightning the yProvML way, on CPU: the example with start_run and prov4ml calls in the module,
ProvMLLogger beside start_run, the docs' ProvMLLogger without start_run, and the itwinai logger."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path
from typing import Any

import lightning as L
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, TensorDataset

import yprov_hpc as prov4ml
from tests.compat.conftest import begin, ent, finish, ids, metric
from tests.conftest import PYTHON, literal, run_dirs, run_example


def _loader(n: int = 32) -> DataLoader[tuple[torch.Tensor, ...]]:
    torch.manual_seed(0)
    return DataLoader(TensorDataset(torch.randn(n, 8), torch.randint(0, 2, (n,))), batch_size=8)


class _Module(L.LightningModule):
    """A tiny classifier that logs through prov4ml's module functions, as the example does."""

    def __init__(self) -> None:
        super().__init__()
        self.layer = torch.nn.Linear(8, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layer(x)  # type: ignore[no-any-return]

    def training_step(self, batch: Any, _: int) -> torch.Tensor:
        x, y = batch
        loss = F.cross_entropy(self(x), y)
        prov4ml.log_metric("MSE", loss, prov4ml.Contexts.TRAINING, step=self.current_epoch)
        self.log("MSE_training", loss)
        return loss

    def on_train_epoch_end(self) -> None:
        epoch = self.current_epoch
        prov4ml.save_model_version(f"model_version_{epoch}", self, prov4ml.Contexts.TRAINING, step=epoch)
        prov4ml.log_current_execution_time("train_epoch_time", prov4ml.Contexts.TRAINING, epoch)

    def configure_optimizers(self) -> torch.optim.Optimizer:
        optim = torch.optim.Adam(self.parameters(), lr=0.01)
        prov4ml.log_param("optimizer", optim)
        return optim


def _trainer(logger: Any) -> L.Trainer:
    return L.Trainer(
        max_epochs=1,
        accelerator="cpu",
        devices=1,
        logger=logger,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        log_every_n_steps=1,
    )


def test_the_lightning_example_pattern_with_start_run(save_dir: Path) -> None:
    """start_run, log_dataset("train_dataset", loader), prov4ml calls inside the module, a fit
    without loggers, log_model(name, module), end_run: every call lands in the document."""
    run = begin(save_dir, prov_user_namespace="www.example.org", experiment_name="lightning_example")
    loader = _loader()
    prov4ml.log_dataset("train_dataset", loader)
    module = _Module()
    _trainer([]).fit(module, loader)
    prov4ml.log_model("model_version_final", module)
    doc = finish(run, create_graph=True, create_svg=False)
    assert {
        "run:rank0.dataset.train_dataset",
        "run:rank0.model.model_version_0.v1",
        "run:rank0.model.model_version_final",
        "run:rank0.param.optimizer",
    } <= ids(doc)
    assert ent(doc, "metric.MSE.training")["yprov:count"] == 4


def test_provmllogger_records_into_a_started_run(save_dir: Path) -> None:
    """With start_run first, ProvMLLogger records self.log metrics into that run and leaves it open."""
    run = begin(save_dir)
    module = _Module()
    _trainer([prov4ml.ProvMLLogger()]).fit(module, _loader())
    assert run.active
    doc = finish(run)
    assert metric(doc, "MSE_training", "training")["yprov:count"] == 4


def test_provmllogger_prefix_is_put_before_metric_names(save_dir: Path) -> None:
    """ProvMLLogger(prefix="exp1_") records Lightning's metrics as exp1_<name>."""
    run = begin(save_dir)
    _trainer([prov4ml.ProvMLLogger(prefix="exp1_")]).fit(_Module(), _loader())
    assert metric(finish(run), "exp1_MSE_training", "training")["yprov:count"] == 4


DOCS_LIGHTNING = textwrap.dedent(
    """
    # The yProvML docs' Lightning example: no start_run, no end_run; a ProvMLLogger does it.
    import lightning as L
    import torch
    import torch.nn.functional as F
    from torch.utils.data import DataLoader, TensorDataset

    import yprov_hpc as prov4ml

    class Model(L.LightningModule):
        def __init__(self):
            super().__init__()
            self.layer = torch.nn.Linear(8, 2)

        def forward(self, x):
            return self.layer(x)

        def training_step(self, batch, _):
            x, y = batch
            loss = F.cross_entropy(self(x), y)
            self.log("MSE_train", loss.item(), on_step=True, on_epoch=False)
            return loss

        def test_step(self, batch, _):
            x, y = batch
            self.log("MSE_test", F.cross_entropy(self(x), y))

        def on_train_epoch_end(self):
            prov4ml.log_metric("epoch", self.current_epoch, prov4ml.Context.TRAINING, step=self.current_epoch)
            prov4ml.save_model_version(self, f"model_version_{self.current_epoch}", prov4ml.Context.TRAINING,
                                       step=self.current_epoch)

        def configure_optimizers(self):
            optim = torch.optim.Adam(self.parameters(), lr=0.01)
            prov4ml.log_param("optimizer", optim)
            return optim

    torch.manual_seed(0)
    data = TensorDataset(torch.randn(32, 8), torch.randint(0, 2, (32,)))
    loader = DataLoader(data, batch_size=8)
    prov4ml.log_param("dataset_transformation", "none")
    prov4ml.log_dataset(loader, "train_dataset")
    trainer = L.Trainer(max_epochs=1, accelerator="cpu", devices=1, logger=[prov4ml.ProvMLLogger()],
                        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                        log_every_n_steps=1, default_root_dir=".")
    model = Model()
    trainer.fit(model, loader, val_dataloaders=None)
    prov4ml.log_model(model, "model_version_final")
    prov4ml.log_dataset(loader, "test_dataset")
    trainer.test(model, loader, verbose=False)
    """
)


def test_the_docs_lightning_example_needs_no_start_run(tmp_path: Path) -> None:
    """The docs' script, with no start_run and no end_run, writes one finished run holding the calls
    made before the Trainer existed, during fit, after fit, and Lightning's test metrics."""
    (tmp_path / "docs_lightning.py").write_text(DOCS_LIGHTNING)
    run_example(tmp_path, PYTHON, "docs_lightning.py", timeout_s=300)
    (run_dir,) = run_dirs(tmp_path / "prov")
    doc = json.loads((run_dir / "prov_lightning_logs_rank0.json").read_text())
    assert literal(doc["activity"]["run:rank0"]["yprov:status"]) == "finished"
    assert {
        "run:rank0.param.dataset_transformation",
        "run:rank0.dataset.train_dataset",
        "run:rank0.param.optimizer",
        "run:rank0.model.model_version_0.v1",
        "run:rank0.model.model_version_final",
        "run:rank0.dataset.test_dataset",
    } <= set(doc["entity"])
    assert metric(doc, "MSE_test", "evaluation")["yprov:count"] == 1


def test_the_itwinai_logger_pattern(save_dir: Path) -> None:
    """ProvMLItwinAILogger: context, hyperparameters, metric/system/model/best_model kinds, end."""
    logger = prov4ml.ProvMLItwinAILogger(experiment_name="itwinai", provenance_save_dir=str(save_dir))
    run = logger.create_logger_context(rank=0)
    model = torch.nn.Linear(8, 2)
    logger.save_hyperparameters({"optimizer": "Adam", "batch_size": 8})
    for epoch in range(2):
        loss = 0.5 / (epoch + 1)
        logger.log(item=loss, identifier="MSE_train", kind="metric", context="training", step=epoch)
        logger.log(item=epoch, identifier="epoch", kind="system", context="training", step=epoch)
        logger.log(item=model, identifier="model_version", kind="model", context="training", step=epoch)
    logger.log(item=model, identifier="model_final", kind="best_model")
    logger.log(item=_loader(), identifier="train_dataset", kind="torch")
    logger.log(item=1.0, identifier="skipped", kind="metric", batch_idx=3)  # log_freq "epoch": batches skip
    logger.create_graph = logger.create_svg = False
    logger.destroy_logger_context()
    doc = json.loads((run.run_dir / "prov_itwinai_rank0.json").read_text())
    assert {
        "run:rank0.param.batch_size",
        "run:rank0.model.model_version.v2",
        "run:rank0.model.model_final",
        "run:rank0.dataset.train_dataset",
        "run:rank0.metric.MSE_train.training",
    } <= set(doc["entity"])
    assert "run:rank0.metric.skipped.training" not in doc["entity"]
