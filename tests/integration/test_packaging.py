"""The wheel a user installs holds every module of the source tree (an editable install would hide a gap)."""

from __future__ import annotations

import shutil
import subprocess
import zipfile
from pathlib import Path

from tests.conftest import PYTHON, ROOT

_NOT_SOURCE_ANYWHERE = shutil.ignore_patterns(
    ".git", ".venv*", "build", "*.egg-info", "__pycache__", ".*_cache", ".hypothesis"
)


def _NOT_SOURCE(directory: str, names: list[str]) -> set[str]:
    """Build outputs anywhere, and the demo's prov/ output folder at the top (not yprov_hpc/prov/)."""
    ignored = set(_NOT_SOURCE_ANYWHERE(directory, names))
    if Path(directory) == ROOT:
        ignored |= {"prov", "runs"} & set(names)
    return ignored


def test_wheel_contains_every_source_module(tmp_path: Path) -> None:
    """Every .py under yprov_hpc/ and daemon/ is in the wheel (daemon/ as yprov_daemon/), with py.typed."""
    src = tmp_path / "src"  # a clean copy: setuptools would reuse a stale build/ of the checkout
    shutil.copytree(ROOT, src, ignore=_NOT_SOURCE)
    cmd = [
        PYTHON,
        "-m",
        "pip",
        "wheel",
        "--no-deps",
        "--no-build-isolation",
        "-q",
        "-w",
        str(tmp_path / "dist"),
    ]
    subprocess.run([*cmd, str(src)], check=True, capture_output=True, timeout=300)
    (wheel,) = (tmp_path / "dist").glob("yprov_hpc-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    expected = {p.relative_to(ROOT).as_posix() for p in (ROOT / "yprov_hpc").rglob("*.py")}
    expected |= {
        "yprov_daemon/" + p.relative_to(ROOT / "daemon").as_posix() for p in (ROOT / "daemon").rglob("*.py")
    }
    expected |= {"yprov_hpc/py.typed", "yprov_daemon/py.typed"}
    expected |= {"yprov_hpc/slurm/yprov-job.sbatch", "yprov_hpc/slurm/torchrun-step.sh"}  # slurm-template
    assert not expected - names, f"missing from the wheel: {sorted(expected - names)}"
    assert any(n.endswith("entry_points.txt") for n in names)
