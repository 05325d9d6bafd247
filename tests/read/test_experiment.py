"""The experiment-level record ties consecutive runs of one experiment together in PROV."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from yprov_hpc.cli import main
from yprov_hpc.read.experiment import write_experiment_record


@pytest.fixture
def save_copy(runs_dir: Path, tmp_path: Path) -> Path:
    """The two runs in a save directory of this test (its documents are validated at teardown)."""
    return Path(shutil.copytree(runs_dir, tmp_path / "save", ignore=shutil.ignore_patterns("*.sock")))


def _expand(ident: str, doc: dict[str, Any]) -> str:
    prefix, _, local = ident.partition(":")
    return str(doc["prefix"][prefix]) + local


def _relations(doc: dict[str, Any], kind: str) -> list[dict[str, Any]]:
    return list(doc.get(kind, {}).values())


def test_record_has_every_run_as_a_member_in_order(save_copy: Path) -> None:
    """The experiment collection has both runs as members, numbered in the order they started."""
    doc = json.loads(write_experiment_record(save_copy, "exp").read_text())
    members = [m["prov:entity"] for m in _relations(doc, "hadMember")]
    runs = {doc["entity"][m]["yprov:run_id"]: doc["entity"][m]["yprov:sequence"]["$"] for m in members}
    assert runs == {"r1": "1", "r2": "2"}


def test_consecutive_runs_are_linked_as_revisions(save_copy: Path) -> None:
    """r2's collection is a revision of r1's, and names r1 as its previous run."""
    doc = json.loads(write_experiment_record(save_copy, "exp").read_text())
    (rev,) = [
        d for d in _relations(doc, "wasDerivedFrom") if d.get("prov:type", {}).get("$") == "prov:Revision"
    ]
    assert doc["entity"][rev["prov:generatedEntity"]]["yprov:run_id"] == "r2"
    assert doc["entity"][rev["prov:usedEntity"]]["yprov:run_id"] == "r1"
    assert doc["entity"][rev["prov:generatedEntity"]]["yprov:previous_run"] == "r1"


def test_members_are_the_runs_own_collection_entities(save_copy: Path) -> None:
    """Each member's URI is the URI of the prov:Collection in that run's collection document."""
    doc = json.loads(write_experiment_record(save_copy, "exp").read_text())
    for m in (r["prov:entity"] for r in _relations(doc, "hadMember")):
        run_doc = json.loads((save_copy / doc["entity"][m]["yprov:path"]).read_text())
        (own,) = [k for k, v in run_doc["entity"].items() if v["prov:type"]["$"] == "prov:Collection"]
        assert _expand(m, doc) == _expand(own, run_doc)


def test_record_validates_and_reads_with_the_prov_library(save_copy: Path) -> None:
    """yprov validate accepts the record, and prov reads one revision and two memberships."""
    from prov.model import ProvDerivation, ProvDocument, ProvMembership

    path = write_experiment_record(save_copy, "exp")
    result = CliRunner().invoke(main, ["validate", str(path)], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    records = ProvDocument.deserialize(str(path), format="json").get_records()
    assert len([r for r in records if isinstance(r, ProvMembership)]) == 2
    assert len([r for r in records if isinstance(r, ProvDerivation)]) == 1


def test_a_broken_collection_is_left_out_and_noted(
    runs_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """A run whose collection is not JSON is not a member; the record says so and still validates."""
    from yprov_hpc.prov.validate import validate_file

    save = Path(
        shutil.copytree(
            runs_dir, tmp_path_factory.mktemp("broken") / "save", ignore=shutil.ignore_patterns("*.sock")
        )
    )  # outside tmp_path: not validated
    (save / "exp_r3").mkdir()
    (save / "exp_r3" / "prov_exp_collection.json").write_text("{")
    path = write_experiment_record(save, "exp")
    doc = json.loads(path.read_text())
    assert doc["entity"]["exp:experiment"]["yprov:runs"]["$"] == "2"
    assert "not JSON" in doc["entity"]["exp:experiment"]["yprov:problems"]
    assert validate_file(path).ok
