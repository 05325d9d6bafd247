"""yProv4ML's leniency on values, made explicit: param revisions, integral float steps, None as a
missing value, lists as one point per element; the clear errors stay where leniency would corrupt."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

import yprov_hpc as prov4ml
from tests.compat.conftest import begin, ent, finish, ids
from yprov_hpc.compat.coerce import looks_like_namespace, metric_points, step_of
from yprov_hpc.compat.warn import CompatWarning


def test_a_param_logged_again_with_a_new_value_becomes_a_revision(save_dir: Path) -> None:
    """log_param("lr", 0.1) then ("lr", 0.01): both kept, the second a revision of the first."""
    run = begin(save_dir)
    prov4ml.log_param("lr", 0.1)
    prov4ml.log_param("lr", 0.01)
    doc = finish(run)
    assert ent(doc, "param.lr")["prov:value"] == 0.1
    second = ent(doc, "param.lr-rev2")
    assert (second["prov:label"], second["prov:value"], second["yprov:revision"]) == ("lr", 0.01, 2)
    revisions = [
        (d["prov:generatedEntity"], d["prov:usedEntity"]) for d in doc.get("wasDerivedFrom", {}).values()
    ]
    assert ("run:rank0.param.lr-rev2", "run:rank0.param.lr") in revisions


def test_the_same_revision_again_adds_nothing(save_dir: Path) -> None:
    """A third log_param with the latest value is a no-op: one revision, not two."""
    run = begin(save_dir)
    for value in (1, 2, 2):
        prov4ml.log_param("epochs", value)
    doc = finish(run)
    assert len([k for k in ids(doc) if k.startswith("run:rank0.param.epochs")]) == 2


def test_a_third_value_is_the_third_revision(save_dir: Path) -> None:
    """Each new value gets the next revision number."""
    run = begin(save_dir)
    for value in ("a", "b", "c"):
        prov4ml.log_param("opt", value)
    doc = finish(run)
    assert [ent(doc, f"param.opt{tail}")["prov:value"] for tail in ("", "-rev2", "-rev3")] == ["a", "b", "c"]


def test_an_integral_float_step_is_accepted(save_dir: Path) -> None:
    """step=2.0 is recorded as step 2."""
    run = begin(save_dir)
    prov4ml.log_metric("loss", 0.5, prov4ml.Context.TRAINING, step=2.0)
    assert ent(finish(run), "metric.loss.training")["yprov:last_step"] == 2


def test_a_fractional_step_is_refused() -> None:
    """step=1.5 raises InvalidArgumentError naming the step."""
    with pytest.raises(prov4ml.InvalidArgumentError, match="step"):
        step_of("log_metric", 1.5)


def test_a_numpy_integral_float_step_is_accepted() -> None:
    """A numpy float64 step with an integral value is an int step."""
    np = pytest.importorskip("numpy")
    assert step_of("log_metric", np.float64(3.0)) == 3


def test_none_is_recorded_as_a_missing_value(save_dir: Path) -> None:
    """log_metric(key, None) records one NaN point."""
    run = begin(save_dir)
    prov4ml.log_metric("acc", None, prov4ml.Context.VALIDATION, step=0)
    metric = ent(finish(run), "metric.acc.validation")
    assert metric["yprov:count"] == 1 and math.isnan(metric["yprov:last"])


def test_a_list_value_is_one_point_per_element(save_dir: Path) -> None:
    """log_metric(key, [1, 2, 3], step=4) records three points at step 4."""
    run = begin(save_dir)
    prov4ml.log_metric("indices", [1, 2, 3], prov4ml.Context.TRAINING, step=4)
    metric = ent(finish(run), "metric.indices.training")
    assert (metric["yprov:count"], metric["yprov:min"], metric["yprov:max"]) == (3, 1.0, 3.0)
    assert metric["yprov:first_step"] == metric["yprov:last_step"] == 4


def test_a_tensor_of_several_values_is_one_point_per_element() -> None:
    """A multi-element tensor becomes its elements, in order."""
    torch = pytest.importorskip("torch")
    assert metric_points("x", torch.tensor([0.5, 1.5])) == [0.5, 1.5]


def test_a_nested_list_is_refused() -> None:
    """[[1, 2]] is not a list of numbers: MetricValueError naming the key."""
    with pytest.raises(prov4ml.MetricValueError, match="'grid'"):
        metric_points("grid", [[1, 2]])


def test_a_string_value_is_still_refused(save_dir: Path) -> None:
    """A str metric value would corrupt the series: MetricValueError, as before."""
    begin(save_dir)
    with pytest.raises(prov4ml.MetricValueError):
        prov4ml.log_metric("loss", "0.5")


def test_source_and_timestamp_are_accepted_and_warned_once(save_dir: Path) -> None:
    """log_metric(..., source=..., timestamp=...) records the value and warns once per keyword."""
    run = begin(save_dir)
    with pytest.warns(CompatWarning) as caught:
        for step in range(3):
            prov4ml.log_metric("loss", 1.0, "training", step, source="custom", timestamp=123)
    assert len(caught) == 2
    assert ent(finish(run), "metric.loss.training")["yprov:count"] == 3


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("www.example.org", True),
        ("http://x/", True),
        ("lab.example.net", True),
        ("mnist", False),
        ("mnist.v2", False),
        ("exp_1", False),
    ],
)
def test_what_reads_as_a_namespace(text: str, expected: bool) -> None:
    """URIs and domains read as namespaces; experiment-like names do not."""
    assert looks_like_namespace(text) is expected
