"""Re-logged artifacts: every revision kept and named, the natural path holds the latest, one file
name in two folders gives two artifacts, a file inside the run directory is not copied again."""

from __future__ import annotations

import hashlib
from pathlib import Path

import yprov_hpc as prov4ml
from tests.conftest import entity, load, start
from yprov_hpc.prov.vocab import artifact_id


def test_a_relogged_path_is_a_new_revision_and_the_natural_path_holds_the_latest(
    save_dir: Path, tmp_path: Path
) -> None:
    """Logging config.yaml twice with new content: two entities (the second wasRevisionOf the
    first), each naming a stored file with its own content; artifacts/rank0/config.yaml is the latest."""
    cfg = tmp_path / "config.yaml"
    cfg.write_text("lr: 0.1\n")
    run = start(save_dir, "rev")
    prov4ml.log_artifact(cfg)
    cfg.write_text("lr: 0.01\n")
    prov4ml.log_artifact(cfg)
    report = prov4ml.end_run()
    doc = load(report.run_dir / "prov_rev_rank0.json")
    first, second = entity(doc, artifact_id(0, str(cfg))), entity(doc, artifact_id(0, str(cfg), 2))
    assert (run.run_dir / first["yprov:path"]).read_text() == "lr: 0.1\n"
    assert (run.run_dir / second["yprov:path"]).read_text() == "lr: 0.01\n"
    assert second["yprov:sha256"] == hashlib.sha256(b"lr: 0.01\n").hexdigest()
    assert (run.run_dir / "artifacts" / "rank0" / "config.yaml").read_text() == "lr: 0.01\n"
    derived = {(d["prov:generatedEntity"], d["prov:usedEntity"]) for d in doc["wasDerivedFrom"].values()}
    assert (artifact_id(0, str(cfg), 2), artifact_id(0, str(cfg))) in derived


def test_one_file_name_in_two_folders_is_two_artifacts_each_referenced(
    save_dir: Path, tmp_path: Path
) -> None:
    """a/config.yaml and b/config.yaml: two entities, two stored copies, each with its own content."""
    for folder in ("a", "b"):
        (tmp_path / folder).mkdir()
        (tmp_path / folder / "config.yaml").write_text(f"from {folder}\n")
    run = start(save_dir, "two")
    prov4ml.log_artifact(tmp_path / "a" / "config.yaml")
    prov4ml.log_artifact(tmp_path / "b" / "config.yaml")
    report = prov4ml.end_run()
    doc = load(report.run_dir / "prov_two_rank0.json")
    for folder in ("a", "b"):
        ent = entity(doc, artifact_id(0, str(tmp_path / folder / "config.yaml")))
        assert (run.run_dir / ent["yprov:path"]).read_text() == f"from {folder}\n"
    naturals = sorted(p.name for p in (run.run_dir / "artifacts" / "rank0").iterdir() if p.is_file())
    assert len(naturals) == 2 and "config.yaml" in naturals


def test_a_file_inside_the_run_directory_is_referenced_not_copied(save_dir: Path) -> None:
    """A checkpoint written into the run directory is recorded where it is: no second copy."""
    run = start(save_dir, "inside")
    ckpt = run.run_dir / "checkpoints" / "epoch1.ckpt"
    ckpt.parent.mkdir()
    ckpt.write_bytes(b"weights" * 100)
    prov4ml.log_artifact(ckpt)
    report = prov4ml.end_run()
    doc = load(report.run_dir / "prov_inside_rank0.json")
    assert entity(doc, artifact_id(0, str(ckpt)))["yprov:path"] == "checkpoints/epoch1.ckpt"
    copies = [p for p in (run.run_dir / "artifacts").rglob("*") if p.is_file()]
    assert copies == []
