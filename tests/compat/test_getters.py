"""The getters that read a finished run's documents and directories (those that read its params
and metrics need the run loader, yprov_hpc.read.load, and are tested with it)."""

from __future__ import annotations

from pathlib import Path

import pytest

import yprov_hpc as prov4ml
from tests.compat.conftest import begin
from yprov_hpc.utils import getters


def _finished_run(save_dir: Path, name: str = "exp") -> Path:
    run = begin(save_dir, experiment_name=name)
    prov4ml.log_param("lr", 0.1)
    prov4ml.log_metric("loss", 0.5, "training", 0)
    prov4ml.end_run()
    return run.run_dir


def test_list_activities_reads_a_rank_document(save_dir: Path) -> None:
    """list_activities(path) gives the run's activity and its contexts."""
    run_dir = _finished_run(save_dir)
    activities = getters.list_activities(run_dir / "prov_exp_rank0.json")
    assert {"run:rank0", "run:rank0.context.training"} <= set(activities)


def test_list_entities_filters_by_type(save_dir: Path) -> None:
    """list_entities(path, "yprov:Parameter") gives only the params."""
    run_dir = _finished_run(save_dir)
    assert getters.list_entities(run_dir, "yprov:Parameter") == ["run:rank0.param.lr"]


def test_get_parameter_reads_one_attribute_unwrapped(save_dir: Path) -> None:
    """get_parameter(doc, entity, "value") finds prov:value and unwraps the typed literal."""
    run_dir = _finished_run(save_dir)
    assert getters.get_parameter(run_dir, "run:rank0.param.lr", "value") == "0.1"


def test_get_parameter_of_an_unknown_record_names_it(save_dir: Path) -> None:
    """An unknown record raises KeyError naming it."""
    run_dir = _finished_run(save_dir)
    with pytest.raises(KeyError, match="nothing_here"):
        getters.get_parameter(run_dir, "nothing_here", "value")


def test_list_runs_and_their_documents_in_a_save_dir(save_dir: Path) -> None:
    """list_runs_in_proj lists each run directory; list_provjson_in_proj each run's collection."""
    first, second = _finished_run(save_dir, "a"), _finished_run(save_dir, "b")
    assert getters.list_runs_in_proj(save_dir) == sorted([first, second])
    assert [p.name for p in getters.list_provjson_in_proj(save_dir)] == [
        "prov_a_collection.json",
        "prov_b_collection.json",
    ]
