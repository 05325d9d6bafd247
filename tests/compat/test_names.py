"""The names yProv4ML scripts use that yprov-hpc lacked: contexts, enumerations, import paths,
reproducibility and timing verbs, final metrics, the run view, and calls made before a run."""

from __future__ import annotations

import importlib
import logging
import subprocess
import sys
from enum import Enum
from pathlib import Path

import pytest

import yprov_hpc as prov4ml
from tests.compat.conftest import begin, ent, finish, ids
from tests.conftest import python_env
from yprov_hpc.compat import pending
from yprov_hpc.compat.warn import CompatWarning
from yprov_hpc.prov.vocab import artifact_id


def test_contexts_is_an_alias_with_models_and_datasets() -> None:
    """Contexts is Context, and both have yProv4ML's MODELS and DATASETS members."""
    assert prov4ml.Contexts is prov4ml.Context
    assert (prov4ml.Context.MODELS, prov4ml.Contexts.DATASETS) == ("models", "datasets")


def test_create_context_nests_under_its_parent(save_dir: Path) -> None:
    """create_context("TRAINING_LOD2", TRAINING) is the nested context training/training_lod2."""
    run = begin(save_dir)
    prov4ml.create_context("TRAINING_LOD2", prov4ml.Context.TRAINING)
    prov4ml.log_metric("loss", 1.0, prov4ml.Context.TRAINING_LOD2, step=0)  # type: ignore[attr-defined]
    assert "run:rank0.context.training--training_lod2" in ids(finish(run), "activity")


def test_a_sub_context_nests_again(save_dir: Path) -> None:
    """A sub-context of a sub-context carries both parents' names."""
    begin(save_dir)
    prov4ml.create_context("LOD_A", prov4ml.Context.VALIDATION)
    deeper = prov4ml.create_context("LOD_B", prov4ml.Context.LOD_A)  # type: ignore[attr-defined]
    assert deeper == "validation/lod_a/lod_b"


def test_log_context_names_the_parent_by_string(save_dir: Path) -> None:
    """log_context(name, is_subcontext_of="training") (3.2.8); the plain name then means it."""
    run = begin(save_dir)
    prov4ml.log_context("warmup", is_subcontext_of="training")
    prov4ml.log_metric("lr", 0.1, "warmup", step=0)
    assert ent(finish(run), "metric.lr.training--warmup")["yprov:context"] == "training/warmup"


def test_an_enum_context_with_an_int_value_is_its_name(save_dir: Path) -> None:
    """An Enum member whose value is not a str (PREPROCESSING = 3) is the context preprocessing."""

    class MyContext(Enum):
        PREPROCESSING = 3

    run = begin(save_dir)
    prov4ml.log_metric("rows", 10, MyContext.PREPROCESSING, step=0)
    assert "run:rank0.context.preprocessing" in ids(finish(run), "activity")


def test_the_enumerations_have_yprov4ml_members() -> None:
    """MetricsType, CompressorType and LoggingItemKind carry 3.2.8's members and values."""
    assert prov4ml.MetricsType.NETCDF.value == "netcdf"
    assert prov4ml.CompressorType.NONE.value is None
    assert prov4ml.LoggingItemKind.FLOPS_PER_BATCH.value == "flops_pb"


@pytest.mark.parametrize(
    ("module", "name"),
    [
        ("yprov_hpc.wrappers.indexed_dataset", "IndexedDatasetWrapper"),
        ("yprov_hpc.wrappers.tracked_function", "ProvenanceTrackedFunction"),
        ("yprov_hpc.wrappers.tracked_model", "ProvenanceTrackedModel"),
        ("yprov_hpc.wrappers.tracked_layers", "WeightDistributionTrackedModel"),
        ("yprov_hpc.datamodel.metric_type", "MetricsType"),
        ("yprov_hpc.datamodel.metric_data", "MetricInfo"),
        ("yprov_hpc.datamodel.compressor_type", "CompressorType"),
        ("yprov_hpc.datamodel.attribute_type", "LoggingItemKind"),
        ("yprov_hpc.constants", "PROV4ML_DATA"),
        ("yprov_hpc.loggers.prov4ml_itwinai_logger", "ProvMLItwinAILogger"),
        ("yprov_hpc.loggers.prov4ml_logger", "ProvMLLogger"),
        ("yprov_hpc.utils.getters", "list_parameters"),
        ("yprov_hpc", "ProvMLLogger"),
        ("yprov_hpc", "WeightDistributionTrackedModel"),
    ],
)
def test_the_import_paths_of_yprov4ml_scripts_exist(module: str, name: str) -> None:
    """Each submodule path a yProv4ML script imports gives the name it imports."""
    assert getattr(importlib.import_module(module), name) is not None


def test_import_yprov_hpc_still_imports_neither_torch_nor_lightning() -> None:
    """The compatibility names that need torch or Lightning load on first use only."""
    code = (
        "import sys, yprov_hpc, yprov_hpc.wrappers, yprov_hpc.loggers; "
        "print('torch' in sys.modules, 'lightning' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], env=python_env(), capture_output=True, text=True)
    assert out.stdout.split() == ["False", "False"], out.stderr


def test_log_source_code_logs_the_given_file(save_dir: Path, tmp_path: Path) -> None:
    """log_source_code(path) logs that file as an artifact."""
    script = tmp_path / "train.py"
    script.write_text("print('hi')\n")
    run = begin(save_dir)
    prov4ml.log_source_code(str(script))
    assert artifact_id(0, str(script)) in ids(finish(run))


def test_log_source_code_of_a_missing_path_warns_and_goes_on(save_dir: Path) -> None:
    """A path that does not exist is warned about and does not stop the training."""
    run = begin(save_dir)
    with pytest.warns(CompatWarning, match="no such path"):
        prov4ml.log_source_code("/nowhere/train.py")
    assert finish(run)["activity"]


def test_log_execution_command_is_a_param(save_dir: Path) -> None:
    """log_execution_command(cmd, path) records "cmd path" as the param execution_command."""
    run = begin(save_dir)
    prov4ml.log_execution_command("python", "train.py")
    assert ent(finish(run), "param.execution_command")["prov:value"] == "python train.py"


def test_execution_start_and_end_times_are_series(save_dir: Path) -> None:
    """log_execution_start_time/end_time record the seconds since start_run under their labels."""
    run = begin(save_dir)
    prov4ml.log_execution_start_time()
    prov4ml.log_execution_end_time()
    doc = finish(run)
    labels = {e.get("prov:label") for e in doc["entity"].values()}
    assert {"execution_start_time", "execution_end_time"} <= labels


def test_register_final_metric_folds_every_point(save_dir: Path) -> None:
    """register_final_metric(name, 0, ADD) records the sum as <name>_final at end_run."""
    run = begin(save_dir)
    prov4ml.register_final_metric("loss", 0.0, prov4ml.FoldOperation.ADD)
    for step, value in enumerate([1.0, 2.0, 3.5]):
        prov4ml.log_metric("loss", value, "training", step)
    assert ent(finish(run), "metric.loss_final.run")["yprov:last"] == 6.5


def test_register_final_metric_takes_a_callable(save_dir: Path) -> None:
    """A lambda fold works as the documented custom fold does."""
    run = begin(save_dir)
    prov4ml.register_final_metric("acc", 1.0, lambda x, y: x * y)
    prov4ml.log_metric("acc", 0.5, "validation", 0)
    prov4ml.log_metric("acc", 0.5, "validation", 1)
    assert ent(finish(run), "metric.acc_final.run")["yprov:last"] == 0.25


def test_log_input_and_output_number_values_and_log_files(save_dir: Path, tmp_path: Path) -> None:
    """Values become params input_<n>/output_<n>; a file becomes an artifact."""
    result = tmp_path / "result.txt"
    result.write_text("42")
    run = begin(save_dir)
    prov4ml.log_input(0.5)
    prov4ml.log_input("seed=1")
    prov4ml.log_output(str(result))
    doc = finish(run)
    assert {"run:rank0.param.input_1", "run:rank0.param.input_2", artifact_id(0, str(result))} <= ids(doc)


def test_get_artifacts_dir_is_inside_the_run(save_dir: Path) -> None:
    """get_artifacts_dir() is this rank's artifacts directory under get_run_dir()."""
    begin(save_dir)
    assert prov4ml.get_artifacts_dir().is_relative_to(prov4ml.get_run_dir())


def test_prov4ml_data_reads_the_active_run(save_dir: Path) -> None:
    """constants.PROV4ML_DATA gives yProv4ML's attribute names for the active run."""
    from yprov_hpc.constants import PROV4ML_DATA

    run = begin(save_dir, metrics_file_type=prov4ml.MetricsType.NETCDF)
    assert str(run.run_dir) == PROV4ML_DATA.EXPERIMENT_DIR and PROV4ML_DATA.global_rank == 0
    assert PROV4ML_DATA.metrics_file_type is prov4ml.MetricsType.NETCDF


def test_calls_before_any_run_are_replayed_into_the_first(save_dir: Path) -> None:
    """log_param before start_run is held (with a warning) and recorded once the run starts."""
    with pytest.warns(CompatWarning, match="held until a run starts"):
        prov4ml.log_param("early", 1)
    run = begin(save_dir)
    assert ent(finish(run), "param.early")["prov:value"] == 1


def test_held_calls_never_recorded_are_reported(caplog: pytest.LogCaptureFixture) -> None:
    """Calls held when no run ever started are named in a warning at exit."""
    with pytest.warns(CompatWarning):
        prov4ml.log_param("orphan", 1)
    with caplog.at_level(logging.WARNING, logger="yprov_hpc"):
        pending._report_unrecorded()
    assert "never recorded (log_param)" in caplog.text


def test_after_a_run_a_call_without_one_raises(save_dir: Path) -> None:
    """Once a run has started, log_param without an active run raises NoActiveRunError."""
    begin(save_dir)
    prov4ml.end_run()
    with pytest.raises(prov4ml.NoActiveRunError):
        prov4ml.log_param("late", 1)


def test_log_metric_before_any_run_still_raises() -> None:
    """The hot path is not held: log_metric before start_run raises NoActiveRunError."""
    with pytest.raises(prov4ml.NoActiveRunError):
        prov4ml.log_metric("loss", 1.0)
