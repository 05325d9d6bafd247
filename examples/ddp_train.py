"""Distributed data-parallel training on CPU (gloo), launched with torchrun:

    torchrun --nproc-per-node 4 examples/ddp_train.py [--epochs 2]

Every rank records its own PROV document (rank and world size from torch.distributed); the
collection links them. Each rank reads its shard through a DistributedSampler.
"""

from __future__ import annotations

import argparse

import torch
import torch.distributed as dist
from synthetic_mnist import MNISTModel, SyntheticMNIST
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader
from torch.utils.data.distributed import DistributedSampler

import yprov_hpc as prov4ml


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--save-dir", default="prov")
    args = parser.parse_args()

    dist.init_process_group("gloo")
    run = prov4ml.start_run("www.example.org", "ddp_mnist", args.save_dir)
    torch.manual_seed(0)
    model = DistributedDataParallel(MNISTModel())
    optim = torch.optim.SGD(model.parameters(), lr=0.1)
    loss_fn = torch.nn.CrossEntropyLoss()
    dataset = SyntheticMNIST(1600)
    sampler = DistributedSampler(dataset, shuffle=True, seed=0)
    loader = DataLoader(dataset, batch_size=32, sampler=sampler, drop_last=True)
    prov4ml.log_params({"lr": 0.1, "batch_size": 32, "epochs": args.epochs, "backend": "gloo"})
    prov4ml.log_dataset(loader, "train_dataset", prov4ml.Context.TRAINING)

    step = 0
    for epoch in range(args.epochs):
        sampler.set_epoch(epoch)
        for x, y in loader:
            optim.zero_grad()
            loss = loss_fn(model(x), y)
            loss.backward()
            optim.step()
            prov4ml.log_metric("loss", loss.item(), prov4ml.Context.TRAINING, step)
            step += 1
        prov4ml.log_system_metrics(prov4ml.Context.TRAINING, epoch)
        prov4ml.save_model_version(model.module, "ddp_model", prov4ml.Context.TRAINING, epoch)
    prov4ml.log_model("ddp_model_final", model.module)
    dist.barrier()
    report = prov4ml.end_run()
    if report.merged:
        print(f"provenance: {report.collection}")
    print(f"rank {run.rank}/{run.placement.world_size} done")
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
