"""The environment capture: git state with untracked files, the entry script, seeds, settings."""

from __future__ import annotations

import random
import subprocess
from pathlib import Path

import pytest

from yprov_hpc.rank.discovery import discover
from yprov_hpc.rank.environment import ENTRY_COPY_MAX_BYTES, capture, entry_script, git_state, seeds


def _git(repo: Path, *args: str) -> None:
    subprocess.run(
        ["git", "-c", "user.email=t@example.org", "-c", "user.name=t", *args],
        cwd=repo,
        check=True,
        capture_output=True,
    )


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """A git repository with one committed file."""
    (tmp_path / "lib.py").write_text("x = 1\n")
    _git(tmp_path, "init", "-q")
    _git(tmp_path, "add", "lib.py")
    _git(tmp_path, "commit", "-qm", "first")
    return tmp_path


def test_a_clean_repository_is_not_dirty(repo: Path) -> None:
    """No change and no untracked file: not dirty, no diff digest."""
    state = git_state(repo)
    assert state["git_dirty"] is False and state["git_untracked"] == [] and state["git_diff_sha256"] == ""


def test_an_untracked_script_makes_the_repository_dirty(repo: Path) -> None:
    """An untracked train.py in a clean repository is recorded, and the state says dirty."""
    (repo / "train.py").write_text("print('hi')\n")
    state = git_state(repo)
    assert state["git_dirty"] is True
    assert state["git_untracked"] == ["train.py"] and state["git_untracked_count"] == 1


def test_the_diff_digest_changes_with_the_change(repo: Path) -> None:
    """A modified tracked file is listed, and two different edits give two different digests."""
    (repo / "lib.py").write_text("x = 2\n")
    first = git_state(repo)
    (repo / "lib.py").write_text("x = 3\n")
    second = git_state(repo)
    assert first["git_modified"] == ["lib.py"]
    assert first["git_diff_sha256"] and first["git_diff_sha256"] != second["git_diff_sha256"]


def test_the_entry_script_is_hashed_and_copied_within_the_bound(tmp_path: Path) -> None:
    """A small script is hashed and copied; a script over the bound is hashed and not copied."""
    small, big = tmp_path / "small.py", tmp_path / "big.py"
    small.write_text("print(1)\n")
    big.write_bytes(b"#" * (ENTRY_COPY_MAX_BYTES + 1))
    out = tmp_path / "run" / "environment"
    info = entry_script(small, out / "small.py")
    assert info["entry_script_size_bytes"] == 9 and (out / "small.py").read_text() == "print(1)\n"
    assert len(info["entry_script_sha256"]) == 64
    info = entry_script(big, out / "big.py")
    assert "entry_script_copy" not in info and not (out / "big.py").exists()
    assert info["entry_script_size_bytes"] == ENTRY_COPY_MAX_BYTES + 1


def test_the_python_generator_state_digest_follows_the_seed() -> None:
    """Seeding random with the same value gives the same digest; another seed another digest."""
    random.seed(7)
    a = seeds()["python_random_state_sha256"]
    random.seed(7)
    b = seeds()["python_random_state_sha256"]
    random.seed(8)
    c = seeds()["python_random_state_sha256"]
    assert a == b != c


def test_thread_and_communication_settings_are_recorded(monkeypatch: pytest.MonkeyPatch) -> None:
    """OMP_*, MKL_*, NCCL_* variables are in runtime_variables; unrelated ones are not."""
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    monkeypatch.setenv("NCCL_DEBUG", "INFO")
    monkeypatch.setenv("UNRELATED_SETTING", "x")
    info = capture(discover())
    assert info["runtime_variables"]["OMP_NUM_THREADS"] == "3"
    assert info["runtime_variables"]["NCCL_DEBUG"] == "INFO"
    assert "UNRELATED_SETTING" not in info["runtime_variables"]
