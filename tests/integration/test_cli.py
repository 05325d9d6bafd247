"""The yprov command: help, merge (re-runnable), validate (rejects what is not PROV), graph."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

import yprov_hpc as prov4ml
from tests.conftest import PYTHON, python_env, start


def _yprov(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [PYTHON, "-m", "yprov_hpc.cli", *args], env=python_env(), capture_output=True, text=True, timeout=120
    )


def test_help_lists_every_subcommand() -> None:
    """`yprov --help` names sidecar, merge, validate and graph, and each has its own help."""
    out = _yprov("--help")
    assert out.returncode == 0
    for name in ("sidecar", "merge", "validate", "graph"):
        assert name in out.stdout
    for name in ("merge", "validate", "graph"):
        sub = _yprov(name, "--help")
        assert sub.returncode == 0 and "Usage:" in sub.stdout and len(sub.stdout) > 200


def test_merge_by_hand_is_idempotent(save_dir: Path) -> None:
    """`yprov merge RUN_DIR` re-merges a run to identical documents."""
    start(save_dir, "cli", auto_merge=False)
    for i in range(10):
        prov4ml.log_metric("loss", float(i), step=i)
    report = prov4ml.end_run()
    assert not report.merged and not list(report.run_dir.glob("prov_*.json"))
    first = _yprov("merge", str(report.run_dir))
    assert first.returncode == 0, first.stderr
    assert "collection:" in first.stdout
    doc = (report.run_dir / "prov_cli_rank0.json").read_bytes()
    again = _yprov("merge", "-q", str(report.run_dir))
    assert again.returncode == 0 and (report.run_dir / "prov_cli_rank0.json").read_bytes() == doc


def test_validate_rejects_broken_documents(tmp_path: Path) -> None:
    """validate exits 1 and says why for a schema violation, a non-NCName id and non-JSON."""
    bad_schema = tmp_path / "bad_schema.json"
    bad_schema.write_text(json.dumps({"entity": {"ex:e": {}}, "bogus": {}}))
    bad_xml = tmp_path / "bad_xml.json"
    bad_xml.write_text(json.dumps({"prefix": {"ex": "http://ex.org/"}, "entity": {"ex:a/b": {}}}))
    not_json = tmp_path / "not.json"
    not_json.write_text("{")
    out = _yprov("validate", str(bad_schema), str(bad_xml), str(not_json))
    assert out.returncode == 1
    assert "PROV-JSON schema" in out.stdout and "bogus" in out.stdout
    assert "PROV-XML" in out.stdout
    assert "not readable JSON" in out.stdout
    for path in (bad_schema, bad_xml, not_json):
        path.unlink()  # keep the autouse validation of produced documents for real documents


def test_graph_command_writes_dot(save_dir: Path, tmp_path: Path) -> None:
    """`yprov graph` draws a document as DOT (and SVG when Graphviz is there)."""
    start(save_dir, "graph")
    prov4ml.log_param("lr", 0.1)
    report = prov4ml.end_run()
    out_dir = tmp_path / "g"
    args = ["graph", str(report.documents[0]), "--out", str(out_dir)]
    if shutil.which("dot"):
        args.append("--svg")
    out = _yprov(*args)
    assert out.returncode == 0, out.stderr
    assert (out_dir / "prov_graph_rank0.dot").read_text().startswith("digraph")
    if shutil.which("dot"):
        assert (out_dir / "prov_graph_rank0.svg").exists()


def test_merge_of_a_non_run_directory_fails_clearly(tmp_path: Path) -> None:
    """Merging a directory that is not a run says so."""
    out = _yprov("merge", str(tmp_path))
    assert out.returncode == 2 and "is not a run directory" in out.stderr


@pytest.mark.parametrize("module", ["yprov_hpc", "yprov_daemon"])
def test_import_does_not_load_heavy_modules(module: str) -> None:
    """Importing the package loads neither torch nor ZeroMQ nor pyarrow (they load when used)."""
    heavy = "('torch', 'zmq', 'pyarrow', 'prov')"
    code = f"import sys, {module}; print(sorted(m for m in {heavy} if m in sys.modules))"
    out = subprocess.run([PYTHON, "-c", code], env=python_env(), capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_slurm_template_writes_the_shipped_batch_script(tmp_path: Path) -> None:
    """`yprov slurm-template DIR` writes the batch script and its helper, and never overwrites."""
    from tests.conftest import ROOT

    out = _yprov("slurm-template", str(tmp_path))
    assert out.returncode == 0, out.stderr
    for name in ("yprov-job.sbatch", "torchrun-step.sh"):
        assert (tmp_path / name).read_bytes() == (ROOT / "scripts" / "slurm" / name).read_bytes()
        assert (tmp_path / name).stat().st_mode & 0o111
    again = _yprov("slurm-template", str(tmp_path))
    assert again.returncode == 2 and "--force" in again.stderr
