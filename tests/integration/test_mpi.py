"""Real MPI ranks (mpiexec from the MPICH wheel, mpi4py) on one machine share one local sidecar."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from tests.conftest import PYTHON, ROOT, entity, literal, load, python_env, run_dirs

MPIEXEC = shutil.which("mpiexec", path=str(Path(PYTHON).parent)) or shutil.which("mpiexec")
pytestmark = pytest.mark.mpi
if MPIEXEC is None:  # the test set-up installs MPICH; say so loudly if it did not
    pytest.fail("mpiexec not found: install the dev extra (pip install -e .[dev])", pytrace=False)


def _mpiexec(n: int, *args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [MPIEXEC, "-n", str(n), PYTHON, *args],
        cwd=cwd,
        env=python_env(),  # type: ignore[list-item]
        capture_output=True,
        text=True,
        timeout=180,
    )


def test_four_rank_quickstart(tmp_path: Path) -> None:
    """mpiexec -n 4: four rank documents and a collection linking them, from one shared sidecar."""
    out = _mpiexec(
        4, str(ROOT / "examples" / "quickstart.py"), "--epochs", "2", "--save-dir", "prov", cwd=tmp_path
    )
    assert out.returncode == 0, out.stderr
    (run_dir,) = run_dirs(tmp_path / "prov")
    docs = sorted(run_dir.glob("prov_quickstart_rank*.json"))
    assert docs, f"no documents; ranks said:\n{out.stdout}\n{out.stderr}"
    assert [d.name for d in docs] == [f"prov_quickstart_rank{r}.json" for r in range(4)]
    for r, path in enumerate(docs):
        doc = load(path)
        act = {k: literal(v) for k, v in doc["activity"]["run:rank" + str(r)].items()}
        assert (act["yprov:rank"], act["yprov:world_size"], act["yprov:launcher"]) == (r, 4, "mpich")
        assert entity(doc, f"run:rank{r}.metric.MSE_train.training")["yprov:count"] == 2
        assert act["yprov:events_spilled"] == 0 and act["yprov:events_missing"] == 0
    coll = load(run_dir / "prov_quickstart_collection.json")
    members = {m["prov:entity"] for m in coll["hadMember"].values()}
    assert members == {f"run:rank{r}.document" for r in range(4)}
    assert len(list((run_dir / "journal").glob("node-*.journal"))) == 1
    assert "provenance of the whole run" in out.stdout


def test_mpi4py_data_parallel_training(tmp_path: Path) -> None:
    """An mpi4py program (allreduce every step) records every rank's metrics."""
    out = _mpiexec(
        3, str(ROOT / "examples" / "mpi_train.py"), "--steps", "50", "--save-dir", "prov", cwd=tmp_path
    )
    assert out.returncode == 0, out.stderr
    (run_dir,) = run_dirs(tmp_path / "prov")
    ws = []
    for r in range(3):
        doc = load(run_dir / f"prov_mpi_train_rank{r}.json")
        w = entity(doc, f"run:rank{r}.metric.w.training")
        assert w["yprov:count"] == 50
        ws.append(w["yprov:last"])
    assert ws[0] == ws[1] == ws[2]  # allreduce kept the replicas in step, and we recorded that faithfully


def test_single_rank_under_mpiexec(tmp_path: Path) -> None:
    """One rank under mpiexec is an ordinary run with a valid document."""
    out = _mpiexec(
        1, str(ROOT / "examples" / "quickstart.py"), "--epochs", "1", "--save-dir", "prov", cwd=tmp_path
    )
    assert out.returncode == 0, out.stderr
    assert len(list((tmp_path / "prov").glob("*/prov_quickstart_rank0.json"))) == 1
