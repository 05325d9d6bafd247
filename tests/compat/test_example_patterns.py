"""Patterns of the yProvML example scripts that failed when they were run with only their import
lines changed (docs/compat.md, "The yProvML examples"), each written fresh as a regression test."""

from __future__ import annotations

import csv
import inspect
from pathlib import Path

import pytest

import yprov_hpc as prov4ml
from tests.compat.conftest import begin
from yprov_hpc.compat.warn import CompatWarning


def test_metric_data_is_an_import_path_with_metric_info() -> None:
    """``datamodel.metric_data.MetricInfo`` imports, and its save_to_file has Python source to
    show (cnn_training.py prints it with inspect.getsource)."""
    import yprov_hpc.datamodel.metric_data as md

    assert "def save_to_file" in inspect.getsource(md.MetricInfo.save_to_file)


def test_metric_info_counts_the_points_it_holds() -> None:
    """add_metric(value, epoch, timestamp) keeps each point under its epoch and counts them."""
    from yprov_hpc.datamodel.metric_data import MetricInfo

    info = MetricInfo("loss", "training", source="std")
    for epoch, value in ((0, 1.0), (0, 0.8), (1, 0.5)):
        info.add_metric(value, epoch, 1000 + epoch)
    assert info.total_metric_values == 3 and info.epochDataList[0] == [(1.0, 1000), (0.8, 1000)]


def test_metric_info_saves_its_points_as_csv_and_forgets_them(tmp_path: Path) -> None:
    """save_to_file writes <name>_<context>_<source>_GR<process>.csv with one row per point and
    empties the held points, as yProv4ML's flush does."""
    from yprov_hpc.datamodel.metric_data import MetricInfo

    info = MetricInfo("loss", "training", source="std")
    info.add_metric(0.5, 2, 1234)
    out = info.save_to_file(tmp_path, "csv", csv_separator=";", process=1)
    assert out == tmp_path / "loss_training_std_GR1.csv"
    assert list(csv.reader(out.open(), delimiter=";")) == [["value", "epoch", "time"], ["0.5", "2", "1234"]]
    assert info.epochDataList == {}


def test_metric_info_writes_csv_when_netcdf_is_asked(tmp_path: Path) -> None:
    """A NetCDF request is written as CSV, with a warning naming the format."""
    from yprov_hpc.datamodel.metric_data import MetricInfo

    info = MetricInfo("acc", "validation")
    info.add_metric(0.9, 0, 1)
    with pytest.warns(CompatWarning, match="netcdf"):
        out = info.save_to_file(tmp_path, prov4ml.MetricsType.NETCDF)
    assert out.suffix == ".csv" and out.is_file()


def test_prov4ml_data_shows_what_start_run_was_asked(save_dir: Path) -> None:
    """PROV4ML_DATA.unify_experiments, use_compressor and codecarbon_is_disabled give the
    start_run options (cnn_training_cuda.py prints unify_experiments)."""
    from yprov_hpc.constants import PROV4ML_DATA

    begin(save_dir, unify_experiments=True, use_compressor=False, disable_codecarbon=True)
    assert PROV4ML_DATA.unify_experiments is True
    assert PROV4ML_DATA.use_compressor is False
    assert PROV4ML_DATA.codecarbon_is_disabled is True


def test_prov4ml_data_options_default_to_off(save_dir: Path) -> None:
    """Without those options, PROV4ML_DATA says False and None, as yProv4ML's defaults."""
    from yprov_hpc.constants import PROV4ML_DATA

    begin(save_dir)
    assert (PROV4ML_DATA.unify_experiments, PROV4ML_DATA.use_compressor) == (False, None)
