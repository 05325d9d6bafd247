"""PyTorch integration with real CPU training: the paper's example, models, versions, datasets, DDP."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch.utils.data import DataLoader
from torch.utils.data.distributed import DistributedSampler

import yprov_hpc as prov4ml
from tests.conftest import PYTHON, ROOT, entity, literal, load, python_env, run_dirs, run_example, start
from yprov_hpc.prov.vocab import run_id_of

sys.path.insert(0, str(ROOT / "examples"))
from synthetic_mnist import Compose, MNISTModel, RandomNoise, SyntheticMNIST


def _relations(doc: dict, kind: str) -> list[dict]:  # type: ignore[type-arg]
    return list(doc.get(kind, {}).values())


def test_paper_example_runs_unchanged(tmp_path: Path) -> None:
    """The paper's section 2.3 code, with `import yprov_hpc as prov4ml`, trains 2 epochs and
    records params, dataset, metrics, a version chain and the final model linked to its weights."""
    run_example(
        tmp_path,
        PYTHON,
        str(ROOT / "examples" / "pytorch_mnist.py"),
        "--epochs",
        "2",
        "--save-dir",
        "prov",
        timeout_s=300,
    )
    (run_dir,) = run_dirs(tmp_path / "prov")
    doc = load(run_dir / "prov_experiment_name_rank0.json")
    mse = entity(doc, "run:rank0.metric.MSE_train.training")
    assert (mse["yprov:count"], mse["yprov:first_step"], mse["yprov:last_step"]) == (2, 0, 1)
    ds = entity(doc, "run:rank0.dataset.train_dataset")
    assert (ds["yprov:samples"], ds["yprov:batch_size"], ds["yprov:batches_per_epoch"]) == (2000, 64, 32)
    assert ds["yprov:shuffle"] is False and "RandomNoise" in ds["yprov:transform"]
    v1, v2 = (entity(doc, f"run:rank0.model.mnist_model_version.v{k}") for k in (1, 2))
    assert (v1["yprov:step"], v2["yprov:step"]) == (0, 1)
    for v in (v1, v2):
        assert hashlib.sha256((run_dir / v["yprov:path"]).read_bytes()).hexdigest() == v["yprov:sha256"]
    revisions = [r for r in _relations(doc, "wasDerivedFrom") if "prov:type" in r]
    assert [(r["prov:generatedEntity"], r["prov:usedEntity"]) for r in revisions] == [
        ("run:rank0.model.mnist_model_version.v2", "run:rank0.model.mnist_model_version.v1")
    ]
    assert [(a["prov:alternate1"], a["prov:alternate2"]) for a in _relations(doc, "alternateOf")] == [
        ("run:rank0.model.mnist_model_final", "run:rank0.model.mnist_model_version.v2")
    ]
    final = entity(doc, "run:rank0.model.mnist_model_final")
    assert final["yprov:parameters_total"] == sum(p.numel() for p in MNISTModel().parameters())
    tform = entity(doc, run_id_of("rank0.param.dataset transformation"))
    assert tform["prov:value"] == "Compose([RandomNoise(std=0.05)])"
    assert tform["yprov:python_type"] == "synthetic_mnist.Compose"
    assert not list(tmp_path.glob("*.pt")), "checkpoints must go inside the run directory"


def test_torch_objects_as_params(save_dir: Path) -> None:
    """A torch.dtype, a device and a transform pipeline are stored as readable repr plus type."""
    start(save_dir, "params")
    prov4ml.log_params(
        {"dtype": torch.bfloat16, "device": torch.device("cpu"), "tf": Compose([RandomNoise(0.1)])}
    )
    doc = load(prov4ml.end_run().documents[0])
    assert (
        entity(doc, "run:rank0.param.dtype")["prov:value"],
        entity(doc, "run:rank0.param.dtype")["yprov:python_type"],
    ) == ("torch.bfloat16", "torch.dtype")
    assert entity(doc, "run:rank0.param.device")["prov:value"] == "device(type='cpu')"
    assert entity(doc, "run:rank0.param.tf")["prov:value"] == "Compose([RandomNoise(std=0.1)])"


def test_log_model_either_order_with_layer_table(save_dir: Path) -> None:
    """log_model takes (label, model) or (model, label); the layer table has per-layer shapes."""
    run = start(save_dir, "model")
    model = MNISTModel(hidden=16)
    prov4ml.log_model("first", model)
    prov4ml.log_model(model, "second", log_model_layers=True, sample_input=torch.zeros(2, 1, 28, 28))
    with pytest.raises(prov4ml.InvalidArgumentError):
        prov4ml.log_model("bad", object())
    report = prov4ml.end_run()
    doc = load(report.documents[0])
    first, second = entity(doc, "run:rank0.model.first"), entity(doc, "run:rank0.model.second")
    assert (
        first["yprov:parameters_total"]
        == second["yprov:parameters_total"]
        == 28 * 28 * 16 + 16 + 16 * 10 + 10
    )
    assert first["yprov:parameter_bytes"] == first["yprov:parameters_total"] * 4
    assert first["yprov:state_sha256"] == second["yprov:state_sha256"]
    table = __import__("json").loads((run.run_dir / second["yprov:layers_path"]).read_text())
    linear = next(row for row in table if row["name"] == "net.1")
    assert linear["type"] == "Linear" and linear["parameter_shapes"] == {"weight": [16, 784], "bias": [16]}
    assert linear["input_shapes"] == [[2, 784]] and linear["output_shapes"] == [2, 16]
    assert model.training, "the forward pass for shapes must restore the model's mode"


def test_log_dataset_describes_loader_and_sampler(save_dir: Path) -> None:
    """A DataLoader with a DistributedSampler: counts, batches, sampler fields, fingerprint."""
    start(save_dir, "data")
    ds = SyntheticMNIST(100, transform=Compose([RandomNoise(0.5)]))
    sampler = DistributedSampler(ds, num_replicas=4, rank=1, shuffle=True, seed=7)
    prov4ml.log_dataset(
        DataLoader(ds, batch_size=8, sampler=sampler, drop_last=True, num_workers=0),
        "train",
        prov4ml.Context.TRAINING,
    )
    prov4ml.log_dataset(SyntheticMNIST(100, transform=Compose([RandomNoise(0.5)])), "same_data")
    prov4ml.log_dataset(SyntheticMNIST(100, seed=3), "other_data")
    report = prov4ml.end_run()
    doc = load(report.documents[0])
    train = entity(doc, "run:rank0.dataset.train.training")
    assert (train["yprov:samples"], train["yprov:num_replicas"], train["yprov:replica_rank"]) == (100, 4, 1)
    assert (train["yprov:samples_per_replica"], train["yprov:batches_per_epoch"]) == (25, 3)
    assert train["yprov:sampler"] == "DistributedSampler" and train["yprov:shuffle"] is True
    assert train["yprov:drop_last"] is True
    same = entity(doc, "run:rank0.dataset.same_data")["yprov:fingerprint_sha256"]
    other = entity(doc, "run:rank0.dataset.other_data")["yprov:fingerprint_sha256"]
    assert train["yprov:fingerprint_sha256"] == same != other  # random transforms do not change it
    used = {(r["prov:activity"], r["prov:entity"]) for r in _relations(doc, "used")}
    assert ("run:rank0.context.training", "run:rank0.dataset.train.training") in used


def test_save_model_version_numbers_per_name_inside_the_run(save_dir: Path, tmp_path: Path) -> None:
    """Versions are numbered per name and written under the run directory, never the cwd."""
    cwd = os.getcwd()
    os.chdir(tmp_path)
    try:
        start(save_dir, "versions")
        model = MNISTModel(hidden=4)
        paths = [prov4ml.save_model_version(model, "a", step=s) for s in range(3)]
        paths.append(prov4ml.save_model_version(model.state_dict(), "b"))
        report = prov4ml.end_run()
    finally:
        os.chdir(cwd)
    assert [p.name for p in paths] == ["a_v1.pt", "a_v2.pt", "a_v3.pt", "b_v1.pt"]
    assert all(report.run_dir in p.parents for p in paths)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["prov"]
    loaded = torch.load(paths[0], weights_only=True)
    assert torch.equal(loaded["net.1.weight"], model.state_dict()["net.1.weight"])


@pytest.mark.parametrize("nproc", [2, 3])
def test_torchrun_ddp_every_rank_records(tmp_path: Path, nproc: int) -> None:
    """torchrun + DDP (gloo, CPU): one document per rank with its shard, linked by the collection."""
    torchrun = shutil.which("torchrun", path=str(Path(PYTHON).parent)) or "torchrun"
    run_example(
        tmp_path,
        torchrun,
        "--nproc-per-node",
        str(nproc),
        str(ROOT / "examples" / "ddp_train.py"),
        "--epochs",
        "2",
        "--save-dir",
        "prov",
        timeout_s=300,
    )
    (run_dir,) = run_dirs(tmp_path / "prov")
    per_rank = 1600 // nproc // 32
    for rank in range(nproc):
        doc = load(run_dir / f"prov_ddp_mnist_rank{rank}.json")
        act = {k: literal(v) for k, v in doc["activity"][f"run:rank{rank}"].items()}
        assert (act["yprov:rank"], act["yprov:world_size"]) == (rank, nproc)
        ds = entity(doc, f"run:rank{rank}.dataset.train_dataset.training")
        assert (ds["yprov:num_replicas"], ds["yprov:replica_rank"]) == (nproc, rank)
        loss = entity(doc, f"run:rank{rank}.metric.loss.training")
        assert loss["yprov:count"] == 2 * per_rank and loss["yprov:last_step"] == 2 * per_rank - 1
        assert entity(doc, f"run:rank{rank}.model.ddp_model.v2")["yprov:step"] == 1
    coll = load(run_dir / "prov_ddp_mnist_collection.json")
    assert len(coll["hadMember"]) == nproc


def test_import_still_does_not_import_torch() -> None:
    """With torch installed, `import yprov_hpc` still does not import it (nor Lightning)."""
    code = "import sys, yprov_hpc; print('torch' in sys.modules, 'lightning' in sys.modules)"
    out = subprocess.run([PYTHON, "-c", code], env=python_env(), capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"]
