"""Exports read back with the tools' own libraries: MLflow's client on a real sqlite store,
and the rocrate library on the crate written in place."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from yprov_hpc.cli import main
from yprov_hpc.read.export_rocrate import METADATA_FILE, export_rocrate
from yprov_hpc.read.load import load_run


@pytest.fixture(scope="module")
def tracking(tmp_path_factory: pytest.TempPathFactory) -> str:
    """One sqlite tracking store for the module (creating one takes seconds); artifacts go to
    the working directory's mlruns/, so the exports run from inside the store's directory."""
    return f"sqlite:///{tmp_path_factory.mktemp('mlflow') / 'mlflow.db'}"


def _export(run: Path, uri: str) -> dict[str, object]:
    cwd = os.getcwd()
    os.chdir(Path(uri.removeprefix("sqlite:///")).parent)
    try:
        result = CliRunner().invoke(
            main, ["export", "mlflow", str(run), "--tracking-uri", uri, "--json"], catch_exceptions=False
        )
    finally:
        os.chdir(cwd)
    assert result.exit_code == 0, result.output
    data: dict[str, object] = json.loads(result.stdout)
    return data


def test_mlflow_run_has_the_params_tags_and_status(run2: Path, tracking: str) -> None:
    """The MLflow run carries the params as strings, the yprov run id as a tag, status FAILED."""
    from mlflow import MlflowClient

    out = _export(run2, tracking)
    got = MlflowClient(tracking_uri=tracking).get_run(str(out["run_id"]))
    assert got.data.params == {"lr": "0.05", "epochs": "4", "model": "linear", "shuffle": "True"}
    assert got.data.tags["yprov.run_id"] == "r2"
    assert got.info.status == "FAILED"
    assert got.info.run_name == "exp r2"


def test_mlflow_metric_history_has_every_step(run1: Path, tracking: str) -> None:
    """The loss history in MLflow has every logged step of the lowest rank, with its value."""
    from mlflow import MlflowClient

    out = _export(run1, tracking)
    client = MlflowClient(tracking_uri=tracking)
    history = client.get_metric_history(str(out["run_id"]), "training/loss")
    expected = load_run(run1).metrics
    expected = expected[(expected["rank"] == 0) & (expected["name"] == "loss")]
    assert sorted(m.step for m in history) == list(range(1, 101))
    assert sorted(m.value for m in history) == sorted(expected["value"])


def test_mlflow_has_one_nested_run_per_rank(run1: Path, tracking: str) -> None:
    """A two-rank run gets two child runs whose parent is the exported run."""
    from mlflow import MlflowClient

    out = _export(run1, tracking)
    client = MlflowClient(tracking_uri=tracking)
    children = out["rank_runs"]
    assert isinstance(children, dict) and sorted(children) == ["0", "1"]
    child = client.get_run(children["1"])
    assert child.data.tags["mlflow.parentRunId"] == out["run_id"]
    assert len(client.get_metric_history(child.info.run_id, "training/loss")) == 100


def test_mlflow_artifacts_hold_the_documents_and_the_rank_artifacts(run1: Path, tracking: str) -> None:
    """The run's PROV documents are artifacts of the parent; each rank's files of its child."""
    from mlflow import MlflowClient

    out = _export(run1, tracking)
    client = MlflowClient(tracking_uri=tracking)
    provenance = {Path(a.path).name for a in client.list_artifacts(str(out["run_id"]), "provenance")}
    assert {"prov_exp_collection.json", "prov_exp_rank0.json", "merge_report.json"} <= provenance
    children = out["rank_runs"]
    assert isinstance(children, dict)
    files = {Path(a.path).name for a in client.list_artifacts(children["0"], "artifacts")}
    assert {"weights_r1_rank0.json", "ckpt_r1_rank0_epoch1.json", "ckpt_r1_rank0_epoch3.json"} <= files


def test_mlflow_export_twice_does_not_duplicate(run1: Path, tracking: str) -> None:
    """Exporting the same run again returns the first export's run and adds nothing."""
    from mlflow import MlflowClient

    first = _export(run1, tracking)
    exp = MlflowClient(tracking_uri=tracking).get_experiment_by_name("exp")
    assert exp is not None
    before = len(MlflowClient(tracking_uri=tracking).search_runs([exp.experiment_id]))
    second = _export(run1, tracking)
    assert second["run_id"] == first["run_id"] and second["already"] is True
    assert len(MlflowClient(tracking_uri=tracking).search_runs([exp.experiment_id])) == before


@pytest.fixture
def crate_run(run2: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    target = tmp_path_factory.mktemp("crate") / run2.name
    return Path(shutil.copytree(run2, target, ignore=shutil.ignore_patterns("*.sock")))


def test_rocrate_lists_the_documents_series_and_artifacts(crate_run: Path) -> None:
    """The crate read back with rocrate holds every document, series file and artifact."""
    from rocrate.rocrate import ROCrate

    assert export_rocrate(crate_run) == crate_run / METADATA_FILE
    ids = {e.id for e in ROCrate(crate_run).data_entities}
    assert {"prov_exp_collection.json", "prov_exp_rank0.json", "prov_exp_rank1.json"} <= ids
    assert {"metrics/rank0.parquet", "metrics/rank1.parquet"} <= ids
    # an artifact is the revision its record names: artifacts/rank0/revisions/<name>/r1-<sha>/<name>
    assert any(i.startswith("artifacts/rank0/") and i.endswith("/weights_r2_rank0.json") for i in ids)
    assert not any(i.startswith("journal") for i in ids)


def test_rocrate_describes_the_run_as_a_create_action(crate_run: Path) -> None:
    """The run is a CreateAction with a failed status, its params as objects, documents as results."""
    from rocrate.rocrate import ROCrate

    export_rocrate(crate_run)
    crate = ROCrate(crate_run)
    action = crate.dereference("#run-r2")
    assert action.type == "CreateAction"
    assert action["actionStatus"] == "http://schema.org/FailedActionStatus"
    assert {p["name"]: p["value"] for p in action["object"]}["lr"] == "0.05"
    assert "prov_exp_collection.json" in {r.id for r in action["result"]}


def test_rocrate_command_writes_the_metadata(crate_run: Path) -> None:
    """yprov export rocrate RUN prints the metadata file it wrote."""
    result = CliRunner().invoke(main, ["export", "rocrate", str(crate_run)], catch_exceptions=False)
    assert result.exit_code == 0
    assert result.stdout.strip() == str(crate_run / METADATA_FILE)
    assert json.loads((crate_run / METADATA_FILE).read_text())["@context"]


def test_rocrate_holds_the_stored_model_versions(crate_run: Path) -> None:
    """Each model version's stored copy is a file of the crate, with its sha256."""
    from rocrate.rocrate import ROCrate

    export_rocrate(crate_run)
    versions = load_run(crate_run).model_versions
    crate = ROCrate(crate_run)
    assert len(versions) == 3  # rank 0: epochs 1 and 3; rank 1 failed after epoch 1
    for version in versions:
        entity = crate.dereference(version["path"])
        assert entity is not None and entity["sha256"] == version["sha256"]
