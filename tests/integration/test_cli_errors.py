"""Every yprov subcommand answers a wrong path or the wrong kind of path with one line and exit 2."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tests.conftest import PYTHON, python_env


def _yprov(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [PYTHON, "-m", "yprov_hpc.cli", *args],
        cwd=cwd,
        env=python_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    """A save directory with two (empty) runs, a plain file and an empty directory."""
    for run in ("exp_a", "exp_b"):
        (tmp_path / "prov" / run / "journal").mkdir(parents=True)
    (tmp_path / "notes.txt").write_text("hello")
    (tmp_path / "empty").mkdir()
    return tmp_path


WRONG = [
    ("merge", "missing"),
    ("merge", "notes.txt"),
    ("merge", "empty"),
    ("merge", "prov"),
    ("merge", "prov/exp_a/journal"),
    ("report", "missing"),
    ("report", "notes.txt"),
    ("report", "prov"),
    ("validate", "missing.json"),
    ("validate", "empty"),
    ("validate", "prov/exp_a"),
    ("graph", "missing.json"),
    ("graph", "empty"),
    ("keys", "missing/typo/path"),
    ("keys", "notes.txt"),
    ("keys", "prov"),
]


@pytest.mark.parametrize(("command", "path"), WRONG)
def test_a_wrong_path_is_one_line_and_exit_2(tree: Path, command: str, path: str) -> None:
    """No traceback: one line on stderr that names the path, and exit code 2."""
    out = _yprov(tree, command, path)
    assert out.returncode == 2, out.stderr
    assert "Traceback" not in out.stderr
    lines = [line for line in out.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and path.split("/")[0] in lines[0], out.stderr


def test_merge_of_the_save_directory_lists_the_runs_below_it(tree: Path) -> None:
    """`yprov merge prov/` (the likeliest slip) names the run directories found below."""
    out = _yprov(tree, "merge", "prov")
    assert "prov/exp_a" in out.stderr and "prov/exp_b" in out.stderr


def test_keys_never_creates_directories(tree: Path) -> None:
    """`yprov keys` on a path that does not exist creates nothing (no stray key directories)."""
    _yprov(tree, "keys", "missing/typo/path")
    assert not (tree / "missing").exists()


def test_report_on_the_save_directory_writes_nothing(tree: Path) -> None:
    """`yprov report prov/` refuses, and writes no report/ folder into the directory it was given."""
    _yprov(tree, "report", "prov")
    assert not (tree / "prov" / "report").exists()


def test_validate_skips_the_merge_report_beside_the_documents(tree: Path) -> None:
    """`yprov validate RUN/*.json` does not fail on merge_report.json: it is skipped, with a note."""
    report = tree / "prov" / "exp_a" / "merge_report.json"
    report.write_text("{}")
    out = _yprov(tree, "validate", str(report))
    assert out.returncode == 2 and "skip" in out.stderr  # nothing left to validate: a usage error


@pytest.mark.parametrize(
    ("name", "value"), [("YPROV_SIDECAR_ON_SIGTERM", "later"), ("YPROV_SAMPLE_INTERVAL_S", "0.05")]
)
def test_sidecar_names_a_bad_variable_behind_an_option(tmp_path: Path, name: str, value: str) -> None:
    """A variable that is an option's default is checked before the options are parsed, so the
    error names the variable (not only the option), and the sidecar never binds: exit 2."""
    env = python_env()
    env[name] = value
    out = subprocess.run(
        [PYTHON, "-m", "yprov_daemon", "--run-dir", str(tmp_path / "exp_r1"), "--samplers", "none"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 2 and f"{name}={value!r}" in out.stderr, out.stderr
    assert not (tmp_path / "exp_r1" / "journal" / "sidecar-n0.json").exists()
