"""A Lightning fit recorded with ProvLightningLogger, on 1 or more CPU processes:

    python examples/lightning_train.py --devices 2 [--epochs 2]

With --devices 2 Lightning starts a second process (strategy "ddp"); each rank records its own
document, with the true global step and training/validation contexts.
"""

from __future__ import annotations

import argparse

import lightning as L
import torch
from synthetic_mnist import MNISTModel, SyntheticMNIST
from torch.utils.data import DataLoader

from yprov_hpc import ProvLightningLogger


class LitMNIST(L.LightningModule):
    def __init__(self, lr: float = 1e-3, hidden: int = 64) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.model = MNISTModel(hidden)
        self.loss_fn = torch.nn.CrossEntropyLoss()

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> torch.Tensor:
        x, y = batch
        loss = self.loss_fn(self.model(x), y)
        self.log("train_loss", loss)
        return loss

    def validation_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        x, y = batch
        logits = self.model(x)
        self.log("val_loss", self.loss_fn(logits, y))
        self.log("val_acc", (logits.argmax(dim=1) == y).float().mean())

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.Adam(self.parameters(), lr=self.hparams.lr)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--devices", type=int, default=1)
    parser.add_argument("--save-dir", default="prov")
    args = parser.parse_args()

    train = DataLoader(SyntheticMNIST(1280), batch_size=64, shuffle=True)
    val = DataLoader(SyntheticMNIST(320, seed=1), batch_size=64)
    logger = ProvLightningLogger("www.example.org", "lightning_mnist", args.save_dir)
    trainer = L.Trainer(
        max_epochs=args.epochs,
        accelerator="cpu",
        devices=args.devices,
        strategy="ddp" if args.devices > 1 else "auto",
        logger=logger,
        log_every_n_steps=5,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    trainer.fit(LitMNIST(), train, val)
    if trainer.is_global_zero:  # the logger ended the run in finalize; save_dir is its directory
        print(f"provenance: {logger.save_dir}")


if __name__ == "__main__":
    main()
