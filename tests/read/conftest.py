"""Fixtures of the read tests: one save directory with two real runs of one experiment,
made once per session (read-only: a test that breaks files works on a copy)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests.read.runs import make_run


@pytest.fixture(scope="session")
def runs_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two runs of experiment "exp": r1 (lr 0.1, both ranks finish), r2 (lr 0.05, rank 1 fails)."""
    save = tmp_path_factory.mktemp("runs")
    make_run(save, "exp", "r1", lr=0.1)
    make_run(save, "exp", "r2", lr=0.05, fail_rank=1)
    return save


@pytest.fixture(scope="session")
def run1(runs_dir: Path) -> Path:
    return runs_dir / "exp_r1"


@pytest.fixture(scope="session")
def run2(runs_dir: Path) -> Path:
    return runs_dir / "exp_r2"


@pytest.fixture
def run_copy(run1: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A private copy of run r1, free to break (outside tmp_path: the suite validates every
    document under tmp_path, and a broken one is the point here)."""
    target = tmp_path_factory.mktemp("broken") / run1.name
    return Path(shutil.copytree(run1, target, ignore=shutil.ignore_patterns("*.sock")))
