"""The torch names on real CPU torch: FLOP counts, the dataset and model wrappers, the tracked
function, and a fresh port of the yProvML PyTorch example's pattern run as a script."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

import yprov_hpc as prov4ml
from tests.compat.conftest import begin, ent, finish, metric
from tests.conftest import PYTHON, literal, run_dirs, run_example
from yprov_hpc.compat.flops import count_flops


def _data(n: int = 8) -> TensorDataset:
    torch.manual_seed(0)
    return TensorDataset(torch.randn(n, 4), torch.randint(0, 2, (n,)))


def test_flops_of_a_linear_layer_are_counted() -> None:
    """One Linear(4, 2) pass over 4 samples is 2*4*4*2 = 64 FLOPs."""
    assert count_flops(nn.Linear(4, 2), torch.randn(4, 4)) == 64


def test_flops_per_batch_is_a_running_total(save_dir: Path) -> None:
    """Two log_flops_per_batch calls log 64 then 128, as yProv4ML's running total."""
    run = begin(save_dir)
    model, batch = nn.Linear(4, 2), (torch.randn(4, 4), torch.zeros(4))
    for step in range(2):
        prov4ml.log_flops_per_batch("flops", model, batch, prov4ml.Context.TRAINING, step)
    metric = ent(finish(run), "metric.flops.training")
    assert (metric["yprov:min"], metric["yprov:last"]) == (64.0, 128.0)


def test_flops_per_epoch_is_one_sample_times_the_length(save_dir: Path) -> None:
    """log_flops_per_epoch over 8 samples of Linear(4, 2) logs 8 * 16 FLOPs."""
    run = begin(save_dir)
    prov4ml.log_flops_per_epoch("epoch_flops", nn.Linear(4, 2), _data(8), "training", 0)
    assert ent(finish(run), "metric.epoch_flops.training")["yprov:last"] == 128.0


def test_counting_flops_leaves_the_model_as_it_was() -> None:
    """The counting pass restores train mode and leaves BatchNorm statistics and grads alone."""
    model = nn.Sequential(nn.Linear(4, 4), nn.BatchNorm1d(4))
    before = model[1].running_mean.clone()
    count_flops(model, torch.randn(8, 4))
    assert model.training and torch.equal(model[1].running_mean, before)
    assert all(p.grad is None for p in model.parameters())


def test_indexed_dataset_wrapper_yields_indices() -> None:
    """IndexedDatasetWrapper's item i is (i, the wrapped item i)."""
    wrapped = prov4ml.IndexedDatasetWrapper(_data(3))
    index, (x, _) = wrapped[2]
    assert (len(wrapped), index) == (3, 2) and torch.equal(x, _data(3)[2][0])


def test_a_tracked_function_logs_each_call(save_dir: Path) -> None:
    """ProvenanceTrackedFunction(nn.MSELoss()) logs each loss as metric MSELoss at steps 0, 1."""
    run = begin(save_dir)
    loss_fn = prov4ml.ProvenanceTrackedFunction(nn.MSELoss(), context=prov4ml.Context.TRAINING)
    for _ in range(2):
        loss_fn(torch.ones(3), torch.zeros(3))
    metric = ent(finish(run), "metric.MSELoss.training")
    assert (metric["yprov:count"], metric["yprov:last_step"], metric["yprov:last"]) == (2, 1, 1.0)


def test_weight_distribution_logs_statistics_per_layer(save_dir: Path) -> None:
    """log_epoch logs mean, std, min, max and quartiles of each weight layer at the epoch."""
    run = begin(save_dir)
    net = nn.Sequential(nn.Linear(4, 3), nn.ReLU())
    tracked = prov4ml.WeightDistributionTrackedModel("net", net, "training")
    tracked(torch.randn(2, 4))
    tracked.log_epoch(5)
    doc = finish(run)
    for stat in ("mean", "std", "min", "max", "p25", "p50", "p75"):
        assert metric(doc, f"net/0/{stat}", "training")["yprov:last_step"] == 5


def test_a_tracked_model_logs_layer_outputs_per_forward(save_dir: Path) -> None:
    """ProvenanceTrackedModel logs each Linear layer's output mean and std at every forward."""
    run = begin(save_dir)
    tracked = prov4ml.ProvenanceTrackedModel("net", nn.Sequential(nn.Linear(4, 3), nn.Linear(3, 1)))
    for _ in range(3):
        tracked(torch.randn(2, 4))
    tracked.close()
    doc = finish(run)
    assert metric(doc, "net/1/output_mean")["yprov:count"] == 3
    assert metric(doc, "net/0/output_std")["yprov:count"] == 3


PYTORCH_PORT = textwrap.dedent(
    """
    # The yProvML PyTorch example's pattern, 3.2.8 signatures, synthetic data, two tiny epochs.
    import torch
    import torch.nn.functional as F
    from torch import nn
    from torch.utils.data import DataLoader, Subset, TensorDataset

    import yprov_hpc as yprov4ml
    from yprov_hpc.wrappers.indexed_dataset import IndexedDatasetWrapper

    yprov4ml.start_run(
        prov_user_namespace="www.example.org",
        experiment_name="torch_port",
        provenance_save_dir="prov",
        save_after_n_logs=100,
        collect_all_processes=True,
        disable_codecarbon=True,
        metrics_file_type=yprov4ml.MetricsType.ZARR,
        use_compressor=False,
    )
    yprov4ml.log_source_code(__file__)
    yprov4ml.log_execution_command("python", "port.py")
    yprov4ml.create_context("TRAINING_LOD2", yprov4ml.Context.TRAINING)

    torch.manual_seed(0)
    images, labels = torch.rand(64, 1, 28, 28), torch.randint(0, 10, (64,))
    model = nn.Sequential(nn.Flatten(), nn.Linear(28 * 28, 10), nn.ReLU())
    train = DataLoader(IndexedDatasetWrapper(Subset(TensorDataset(images, labels), range(48))),
                       batch_size=16, shuffle=True)
    val = DataLoader(IndexedDatasetWrapper(Subset(TensorDataset(images, labels), range(48, 64))),
                     batch_size=16)
    yprov4ml.log_dataset("train_dataset", train)
    yprov4ml.log_dataset("val_dataset", val)
    optim = torch.optim.Adam(model.parameters(), lr=0.001)
    yprov4ml.log_param("optimizer", "Adam")
    yprov4ml.log_param("loss_fn", "MSELoss", yprov4ml.Context.TRAINING_LOD2)
    for epoch in range(2):
        model.train()
        for indices, (x, y) in train:
            optim.zero_grad()
            loss = F.mse_loss(model(x), F.one_hot(y, 10).float())
            loss.backward()
            optim.step()
            yprov4ml.log_metric("MSE", loss.item(), context=yprov4ml.Context.TRAINING, step=epoch)
            lod2 = yprov4ml.Context.TRAINING_LOD2
            yprov4ml.log_metric("Indices", indices.tolist(), context=lod2, step=epoch)
            yprov4ml.log_system_metrics(yprov4ml.Context.TRAINING, step=epoch)
        yprov4ml.save_model_version("mnist_model_version", model, yprov4ml.Context.MODELS, epoch)
        model.eval()
        for _, (x, y) in val:
            loss = F.mse_loss(model(x), F.one_hot(y, 10).float())
            yprov4ml.log_metric("MSE", loss.item(), yprov4ml.Context.VALIDATION, step=epoch)
    yprov4ml.log_model("mnist_model_final", model, log_model_layers=True, is_input=False)
    report = yprov4ml.end_run(create_graph=True, create_svg=False, crate_ro_crate=True)
    print("STATUS", report.status)
    """
)


def test_the_pytorch_example_pattern_runs_unchanged(tmp_path: Path) -> None:
    """A 3.2.8-style PyTorch script with only its import lines changed finishes, and its document
    holds the model versions, both datasets, every index logged, and the sub-context as an
    activity informed by its parent context."""
    (tmp_path / "port.py").write_text(PYTORCH_PORT)
    out = run_example(tmp_path, PYTHON, "port.py", timeout_s=300)
    assert "STATUS finished" in out.stdout
    (run_dir,) = run_dirs(tmp_path / "prov")
    doc = json.loads((run_dir / "prov_torch_port_rank0.json").read_text())
    assert {
        "run:rank0.model.mnist_model_version.v1",
        "run:rank0.model.mnist_model_version.v2",
        "run:rank0.dataset.train_dataset",
        "run:rank0.dataset.val_dataset",
    } <= set(doc["entity"])
    indices = doc["entity"]["run:rank0.metric.Indices.training--training_lod2"]
    assert literal(indices["yprov:count"]) == 2 * 48
    lod2 = "run:rank0.context.training--training_lod2"
    assert {"prov:informed": lod2, "prov:informant": "run:rank0.context.training"} in doc[
        "wasInformedBy"
    ].values()


@pytest.mark.parametrize("order", ["label_first", "dataset_first"])
def test_log_dataset_of_a_plain_dataset(save_dir: Path, order: str) -> None:
    """A Dataset (not a loader) is logged in either order with its sample count."""
    run = begin(save_dir)
    data = _data(6)
    if order == "label_first":
        prov4ml.log_dataset("plain", data)
    else:
        prov4ml.log_dataset(data, "plain")
    assert ent(finish(run), "dataset.plain")["yprov:samples"] == 6


def test_a_loader_is_not_mistaken_for_a_label(save_dir: Path) -> None:
    """log_dataset(loader) with label= by keyword records the loader's batch size."""
    run = begin(save_dir)
    prov4ml.log_dataset(DataLoader(_data(8), batch_size=2), label="kw")
    assert ent(finish(run), "dataset.kw")["yprov:batch_size"] == 2


def test_a_tracked_function_without_a_run_does_not_stop_training() -> None:
    """Called with no active run, a tracked loss still returns its value and warns once."""
    loss_fn = prov4ml.ProvenanceTrackedFunction(nn.MSELoss())
    with pytest.warns(prov4ml.CompatWarning, match="no active run"):
        loss = loss_fn(torch.ones(2), torch.zeros(2))
    assert float(loss) == 1.0
