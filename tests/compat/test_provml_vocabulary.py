"""The prov-ml vocabulary of yProv4ML beside our yprov: types (docs/prov-mapping.md): one test per
kind of record, a round trip through the ``prov`` library, and the getters on typed lists."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch
from prov.identifier import QualifiedName
from prov.model import PROV_TYPE, ProvDocument
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

import yprov_hpc as prov4ml
from tests.conftest import load
from yprov_hpc.prov.validate import validate_file
from yprov_hpc.prov.vocab import PROVML_NS, YPROV_NS
from yprov_hpc.utils import getters


@pytest.fixture(scope="module")
def rank_doc_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One finished run that logged every kind of record yProv4ML types with prov-ml."""
    from tests.compat.conftest import begin

    save_dir = tmp_path_factory.mktemp("provml") / "prov"
    run = begin(save_dir)
    model = nn.Linear(4, 2)
    loader = DataLoader(TensorDataset(torch.randn(8, 4), torch.zeros(8)), batch_size=4)
    prov4ml.log_param("lr", 0.1)
    prov4ml.log_metric("loss", 0.5, prov4ml.Context.TRAINING, 0)
    prov4ml.log_execution_start_time()
    prov4ml.log_execution_end_time()
    prov4ml.save_model_version("net", model, prov4ml.Context.TRAINING, 0)
    prov4ml.log_model("final", model)
    prov4ml.log_dataset("train", loader)
    report = prov4ml.end_run()
    assert report.status == "finished", report
    return run.run_dir / "prov_exp_rank0.json"


def _types_of(doc: dict[str, Any], section: str, yprov_type: str) -> list[list[str]]:
    """The prov:type names of every record of ``section`` that carries ``yprov_type``."""
    found = []
    for attrs in doc.get(section, {}).values():
        raw = attrs.get("prov:type")
        names = [v["$"] for v in (raw if isinstance(raw, list) else [raw])]
        if yprov_type in names:
            found.append(names)
    return found


@pytest.mark.parametrize(
    ("ours", "provml"),
    [
        ("yprov:Metric", "provml:Metric"),
        ("yprov:ExecutionTime", "provml:Metric"),
        ("yprov:Parameter", "provml:HyperParameter"),
        ("yprov:ModelVersion", "provml:Model"),
        ("yprov:Model", "provml:Model"),
        ("yprov:Dataset", "provml:Dataset"),
    ],
)
def test_each_kind_carries_its_provml_type_beside_ours(rank_doc_path: Path, ours: str, provml: str) -> None:
    """Every record of one of our kinds has exactly [our type, its prov-ml type] as prov:type."""
    found = _types_of(load(rank_doc_path), "entity", ours)
    assert found and all(names == [ours, provml] for names in found)


def test_kinds_without_a_provml_term_keep_one_type(rank_doc_path: Path) -> None:
    """The run, its contexts and the series file (no prov-ml term in yProv4ML) keep a single type."""
    doc = load(rank_doc_path)
    assert _types_of(doc, "activity", "yprov:TrainingRun") == [["yprov:TrainingRun"]]
    assert _types_of(doc, "activity", "yprov:Context") == [["yprov:Context"]]
    assert _types_of(doc, "entity", "yprov:SeriesFile") == [["yprov:SeriesFile"]]


def test_the_provml_prefix_is_an_absolute_uri(rank_doc_path: Path) -> None:
    """The document binds provml to our absolute URI, never to yProv4ML's relative 'prov-ml'."""
    prefixes = load(rank_doc_path)["prefix"]
    assert prefixes["provml"] == PROVML_NS and PROVML_NS.startswith("https://")


def test_the_document_passes_every_validation_level(rank_doc_path: Path) -> None:
    """PROV-JSON schema, prov's parser and the PROV-XML schema all accept the typed lists."""
    result = validate_file(rank_doc_path)
    assert result.ok, result.errors


def test_prov_reads_both_types_back_as_qualified_names(rank_doc_path: Path) -> None:
    """prov's reader gives a metric both types as qualified names in their namespaces, and keeps
    them through a serialize/deserialize round trip."""
    doc = ProvDocument.deserialize(source=str(rank_doc_path), format="json")
    again = ProvDocument.deserialize(content=doc.serialize(format="json"), format="json")
    for bundle in (doc, again):
        (loss,) = [r for r in bundle.get_records() if str(r.identifier).endswith("metric.loss.training")]
        types = {(q.namespace.uri, q.localpart) for q in loss.get_asserted_types()}
        assert all(isinstance(q, QualifiedName) for q in loss.get_attribute(PROV_TYPE))
        assert types == {(YPROV_NS, "Metric"), (PROVML_NS, "Metric")}


def test_provml_types_survive_the_provn_conversion(rank_doc_path: Path) -> None:
    """The PROV-N text of the document names provml:HyperParameter on the param."""
    provn = ProvDocument.deserialize(source=str(rank_doc_path), format="json").get_provn()
    (line,) = [ln for ln in provn.splitlines() if "param.lr" in ln and "entity(" in ln]
    assert "provml:HyperParameter" in line and "yprov:Parameter" in line


def test_list_entities_finds_records_by_either_type(rank_doc_path: Path) -> None:
    """getters.list_entities gives the same models for provml:Model as for both of our types."""
    by_provml = getters.list_entities(rank_doc_path, "provml:Model")
    ours = getters.list_entities(rank_doc_path, "yprov:Model") + getters.list_entities(
        rank_doc_path, "yprov:ModelVersion"
    )
    assert by_provml and sorted(by_provml) == sorted(ours)


def test_getters_read_params_and_metrics_of_the_run(rank_doc_path: Path) -> None:
    """get_param and get_metric still read the run whose records carry two types."""
    assert getters.get_param(rank_doc_path, "lr") == 0.1
    assert list(getters.get_metric(rank_doc_path, "loss", "training")["value"]) == [0.5]


def test_get_parameter_unwraps_one_attribute_of_a_typed_record(rank_doc_path: Path) -> None:
    """get_parameter reads an attribute of a metric record whose prov:type is a list."""
    (metric_id,) = [
        k for k in getters.list_entities(rank_doc_path, "provml:Metric") if k.endswith("loss.training")
    ]
    assert getters.get_parameter(rank_doc_path, metric_id, "count") == "1"
    assert json.loads(rank_doc_path.read_text())["entity"][metric_id]["prov:label"] == "loss"
