"""Shared fixtures. Every PROV document a test writes under its tmp_path is validated at teardown."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import yprov_hpc
from yprov_hpc import api
from yprov_hpc.prov.validate import validate_file

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Launcher and YPROV_* variables of the machine must not leak into tests."""
    for name in list(os.environ):
        if name.startswith(
            ("YPROV_", "SLURM_", "OMPI_", "PMI_", "PMIX_", "MPI_LOCAL", "TORCHELASTIC_")
        ) or name in (
            "RANK",
            "LOCAL_RANK",
            "WORLD_SIZE",
        ):
            monkeypatch.delenv(name, raising=False)


@pytest.fixture(autouse=True)
def _end_leftover_run() -> Iterator[None]:
    yield
    if api.active_run() is not None:
        api.end_run_with_status("test teardown")


@pytest.fixture(autouse=True)
def _validate_produced_documents(tmp_path: Path) -> Iterator[None]:
    """Every document the test suite produces goes through `yprov validate`'s checks."""
    yield
    for doc in sorted(tmp_path.rglob("prov_*.json")):
        result = validate_file(doc)
        assert result.ok, f"{doc} is not valid PROV:\n" + "\n".join(result.errors)


@pytest.fixture
def save_dir(tmp_path: Path) -> Path:
    return tmp_path / "prov"


def start(save_dir: Path, experiment: str = "exp", **kwargs: Any) -> yprov_hpc.Run:
    """start_run with the test defaults (no SIGTERM handler in the pytest process)."""
    kwargs.setdefault("handle_sigterm", False)
    return yprov_hpc.start_run("www.example.org", experiment, save_dir, **kwargs)


def run_dirs(save_dir: Path) -> list[Path]:
    """The run directories in a save directory (it also holds the experiment records)."""
    return sorted(p for p in save_dir.iterdir() if (p / "journal").is_dir())


def load(path: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(path.read_text())
    return data


def literal(value: Any) -> Any:
    """The Python value of a PROV-JSON attribute value."""
    if isinstance(value, dict) and "$" in value:
        text, kind = value["$"], value.get("type")
        if kind == "xsd:long":
            return int(text)
        if kind == "xsd:double":
            return float({"INF": "inf", "-INF": "-inf"}.get(text, text))
        if kind == "xsd:boolean":
            return text == "true"
        return text
    return value


def entity(doc: dict[str, Any], ident: str) -> dict[str, Any]:
    return {k: literal(v) for k, v in doc["entity"][ident].items()}


def python_env() -> dict[str, str]:
    """Environment for subprocesses running this checkout's python (not inside a Slurm step,
    even when the tests run in one: the tests that want a step say so)."""
    skip = ("SLURM_JOB_ID", "SLURM_STEP_ID")
    env = {k: v for k, v in os.environ.items() if not k.startswith("YPROV_") and k not in skip}
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    env["PYTHONUNBUFFERED"] = "1"
    return env


PYTHON = sys.executable


def run_example(cwd: Path, *command: str, timeout_s: int = 600) -> subprocess.CompletedProcess[str]:
    """Run a command (an example script, a launcher) in ``cwd`` with this checkout importable;
    fail with the end of its stderr if it fails."""
    import subprocess

    out = subprocess.run(
        list(command), cwd=cwd, env=python_env(), capture_output=True, text=True, timeout=timeout_s
    )
    assert out.returncode == 0, out.stderr[-3000:]
    return out
