"""Both argument orders, resolved by type (a model is an nn.Module, a dataset is not the str label,
a path is an existing file); a genuinely ambiguous call is refused, never misbound."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

import yprov_hpc as prov4ml
from tests.compat.conftest import begin, ent, finish, ids
from tests.conftest import entity
from yprov_hpc.prov.vocab import artifact_id


def _model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(4, 3), nn.ReLU(), nn.Linear(3, 2))


def _loader() -> DataLoader[tuple[torch.Tensor, ...]]:
    data = TensorDataset(torch.randn(12, 4), torch.randint(0, 2, (12,)))
    return DataLoader(data, batch_size=4)


def test_save_model_version_name_first_as_in_3_2_8(save_dir: Path) -> None:
    """save_model_version(name, model, context, epoch) saves a version at that step."""
    run = begin(save_dir)
    prov4ml.save_model_version("net", _model(), prov4ml.Context.MODELS, 3)
    version = ent(finish(run), "model.net.v1")
    assert (version["yprov:context"], version["yprov:step"]) == ("models", 3)


def test_save_model_version_model_first_as_in_the_docs(save_dir: Path) -> None:
    """save_model_version(model, name, context, step) saves the same kind of version."""
    run = begin(save_dir)
    prov4ml.save_model_version(_model(), "net", prov4ml.Context.TRAINING, 2)
    assert ent(finish(run), "model.net.v1")["yprov:step"] == 2


def test_save_model_version_of_two_strings_is_refused(save_dir: Path) -> None:
    """Two str arguments cannot say which is the model: InvalidArgumentError."""
    begin(save_dir)
    with pytest.raises(prov4ml.InvalidArgumentError, match="save_model_version"):
        prov4ml.save_model_version("net", "weights.pt")


def test_log_dataset_label_first_as_in_3_2_8(save_dir: Path) -> None:
    """log_dataset("train_dataset", loader) records the loader under that label."""
    run = begin(save_dir)
    prov4ml.log_dataset("train_dataset", _loader())
    assert ent(finish(run), "dataset.train_dataset")["prov:label"] == "train_dataset"


def test_log_dataset_dataset_first_as_in_the_docs(save_dir: Path) -> None:
    """log_dataset(loader, "val_dataset", context) records it with its context."""
    run = begin(save_dir)
    prov4ml.log_dataset(_loader(), "val_dataset", prov4ml.Context.VALIDATION)
    assert ent(finish(run), "dataset.val_dataset.validation")["yprov:context"] == "validation"


def test_log_dataset_by_3_2_8_keywords(save_dir: Path) -> None:
    """log_dataset(dataset=..., dataset_label=...) as the itwinai logger calls it."""
    run = begin(save_dir)
    prov4ml.log_dataset(dataset=_loader(), dataset_label="kw_dataset", log_dataset_info=True)
    assert "run:rank0.dataset.kw_dataset" in ids(finish(run))


def test_log_dataset_of_two_strings_is_refused(save_dir: Path) -> None:
    """Two str arguments leave no dataset: InvalidArgumentError."""
    begin(save_dir)
    with pytest.raises(prov4ml.InvalidArgumentError, match="log_dataset"):
        prov4ml.log_dataset("train", "val")


def test_log_artifact_name_then_path_makes_no_context(
    save_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """log_artifact("model.pt", "model.pt") (3.2.8) is a name and a path: no context "model.pt"."""
    monkeypatch.chdir(tmp_path)
    Path("model.pt").write_bytes(b"weights")
    run = begin(save_dir)
    prov4ml.log_artifact("model.pt", "model.pt")
    doc = finish(run)
    assert "run:rank0.artifact.model.pt" in ids(doc)
    assert not any("model" in a for a in ids(doc, "activity"))


def test_log_artifact_name_then_existing_path(save_dir: Path, tmp_path: Path) -> None:
    """log_artifact("results", "out/results.csv", context) logs the file in that context."""
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "results.csv").write_text("a,b\n")
    run = begin(save_dir)
    prov4ml.log_artifact("results", str(tmp_path / "out" / "results.csv"), prov4ml.Context.EVALUATION)
    logged = artifact_id(0, str(tmp_path / "out" / "results.csv"))
    assert entity(finish(run), logged)["yprov:context"] == "evaluation"


def test_log_artifact_path_then_context_as_here(save_dir: Path, tmp_path: Path) -> None:
    """log_artifact(path, "training") keeps yprov-hpc's order: the second is the context."""
    path = tmp_path / "notes.txt"
    path.write_text("n")
    run = begin(save_dir)
    prov4ml.log_artifact(str(path), "training")
    assert entity(finish(run), artifact_id(0, str(path)))["yprov:context"] == "training"


def test_log_artifact_of_two_different_existing_files_is_refused(save_dir: Path, tmp_path: Path) -> None:
    """Two existing, different files cannot say which is the artifact: InvalidArgumentError."""
    (tmp_path / "a.txt").write_text("a")
    (tmp_path / "b.txt").write_text("b")
    begin(save_dir)
    with pytest.raises(prov4ml.InvalidArgumentError, match="both arguments are existing files"):
        prov4ml.log_artifact(str(tmp_path / "a.txt"), str(tmp_path / "b.txt"))


def test_log_artifact_when_neither_exists_names_both(save_dir: Path) -> None:
    """Neither argument an existing path: ArtifactNotFoundError naming both."""
    begin(save_dir)
    with pytest.raises(prov4ml.ArtifactNotFoundError, match=r"'ghost' nor 'ghost\.pt'"):
        prov4ml.log_artifact("ghost", "ghost.pt")


def test_log_model_third_positional_str_is_a_context(save_dir: Path) -> None:
    """log_model("n", model, "training") takes "training" as the context (3.2.8)."""
    run = begin(save_dir)
    prov4ml.log_model("final", _model(), "training")
    assert ent(finish(run), "model.final")["yprov:context"] == "training"


def test_log_model_third_positional_bool_is_log_model_info(save_dir: Path) -> None:
    """log_model(model, "n", False) takes False as log_model_info: no parameter counts."""
    run = begin(save_dir)
    prov4ml.log_model(_model(), "final", False)
    model = ent(finish(run), "model.final")
    assert "yprov:parameters_total" not in model and "yprov:context" not in model


def test_log_model_with_log_copy_also_saves_a_version(save_dir: Path) -> None:
    """log_copy_in_prov_directory=True (3.2.8) also saves the weights as a model version."""
    run = begin(save_dir)
    prov4ml.log_model("final", _model(), log_copy_in_prov_directory=True)
    doc = finish(run)
    assert {"run:rank0.model.final", "run:rank0.model.final.v1"} <= ids(doc)
