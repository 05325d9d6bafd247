"""The yProv4ML paper's example (section 2.3), unchanged but for `import yprov_hpc as prov4ml`
and a generated data set instead of the MNIST download.

    python examples/pytorch_mnist.py [--epochs 2]
"""

from __future__ import annotations

import argparse

import torch
from synthetic_mnist import Compose, MNISTModel, RandomNoise
from synthetic_mnist import SyntheticMNIST as MNIST
from torch.utils.data import DataLoader
from tqdm import tqdm

import yprov_hpc as prov4ml

parser = argparse.ArgumentParser(description=__doc__)
parser.add_argument("--epochs", type=int, default=2)
parser.add_argument("--save-dir", default="prov")
args = parser.parse_args()
EPOCHS, BATCH_SIZE, PATH_DATASETS = args.epochs, 64, None

# start the run in the same way as with mlflow
prov4ml.start_run(
    prov_user_namespace="www.example.org",
    experiment_name="experiment_name",
    provenance_save_dir=args.save_dir,
    save_after_n_logs=100,
)

mnist_model = MNISTModel()
optim = torch.optim.Adam(mnist_model.parameters(), lr=1e-3)
loss_fn = torch.nn.CrossEntropyLoss()
# log the dataset transformation as one-time parameter
tform = Compose([RandomNoise(0.05)])
prov4ml.log_param("dataset transformation", tform)

train_ds = MNIST(2000, transform=tform)
train_loader = DataLoader(train_ds, batch_size=BATCH_SIZE)
prov4ml.log_dataset(train_loader, "train_dataset")

for epoch in tqdm(range(EPOCHS)):
    mnist_model.train()
    for i, (x, y) in enumerate(train_loader):  # noqa: B007  (the paper's code, verbatim)
        optim.zero_grad()
        y_hat = mnist_model(x)
        loss = loss_fn(y_hat, y)
        loss.backward()
        optim.step()

    # log system and carbon metrics (once per epoch), as well
    # as the execution time
    prov4ml.log_metric("MSE_train", loss.item(), context=prov4ml.Context.TRAINING, step=epoch)
    prov4ml.log_carbon_metrics(prov4ml.Context.TRAINING, step=epoch)
    prov4ml.log_system_metrics(prov4ml.Context.TRAINING, step=epoch)
    # save incremental model versions
    prov4ml.save_model_version(mnist_model, "mnist_model_version", prov4ml.Context.TRAINING, epoch)

prov4ml.log_model(mnist_model, "mnist_model_final")
# save the provenance graph
report = prov4ml.end_run(create_graph=True, create_svg=True)
print(f"provenance: {report.collection}")
