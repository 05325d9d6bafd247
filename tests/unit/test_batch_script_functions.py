"""Functions of scripts/slurm/yprov-job.sbatch run by themselves in bash (the whole script needs
Slurm: tests/slurm): what they write when the disk is full, what they read from hostile files."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from tests.conftest import ROOT

SCRIPT = ROOT / "scripts" / "slurm" / "yprov-job.sbatch"


def _run(body: str, journal: Path, **env: str) -> subprocess.CompletedProcess[str]:
    """``body`` in bash, after the script's functions (not its top level) are defined."""
    prelude = f"""
set -u
JOURNAL={journal} SLURM_JOB_ID=77 SLURM_JOB_NUM_NODES=2
say() {{ echo "yprov-job: $*"; }}
eval "$(sed -n '/^write_job_end() {{/,/^}}/p; /^steps_sigterm_ns() {{/,/^}}/p' {SCRIPT})"
"""
    return subprocess.run(
        ["bash", "-c", prelude + body],
        capture_output=True,
        text=True,
        timeout=60,
        env={"PATH": "/usr/bin:/bin", **env},
    )


def test_job_end_is_written_whole(tmp_path: Path) -> None:
    out = _run("write_job_end completed 1796000000000000000 0", tmp_path)
    assert out.returncode == 0, out.stderr
    assert json.loads((tmp_path / "job.end").read_text()) == {
        "cause": "completed",
        "ts_ns": 1796000000000000000,
        "slurm_job_id": "77",
        "exit_code": 0,
    }


def test_a_full_disk_never_replaces_job_end_with_a_part(tmp_path: Path) -> None:
    """The temp file is /dev/full (every write: ENOSPC): the job.end written before stays, the
    temp file is gone, and the log says so."""
    (tmp_path / "job.end").write_text('{"cause": "cancelled", "ts_ns": 1, "exit_code": null}\n')
    body = 'ln -s /dev/full "$JOURNAL/.job.end.$$" && write_job_end cancelled 1796000000000000001 143'
    out = _run(body, tmp_path)
    job_end = tmp_path / "job.end"
    assert job_end.is_file() and not job_end.is_symlink(), "job.end was replaced by the temp file"
    assert json.loads(job_end.read_text())["exit_code"] is None
    assert not list(tmp_path.glob(".job.end.*"))
    assert "could not write" in out.stdout + out.stderr


@pytest.mark.parametrize(
    ("text", "found"),
    [
        ('{"node":"node1","ts_ns":1796000000000000500}', "1796000000000000500"),
        ('{\n  "node": "node1",\n  "ts_ns": 1796000000000000500\n}\n', "1796000000000000500"),
        ('{"node":"node1","ts_ns":1796000000000000001}', ""),  # before the script started
        ('{"node":"node1","ts_ns":1796000000000009999}', ""),  # not before the training's end
        ('{"node":"node1","ts_ns":99999999999999999999}', ""),  # over int64
        ('{"node":"node1","ts_ns":-1796000000000000500}', ""),
        ('{"node":"node1","ts_ns":"1796000000000000500"}', ""),
        ("\x00\xff garbage", ""),
    ],
)
def test_sigterm_markers_are_read_with_suspicion(tmp_path: Path, text: str, found: str) -> None:
    """steps_sigterm_ns takes a marker's ts_ns only as a plain 19-digit number after the script
    started and before the training ended; anything else is no marker."""
    (tmp_path / "sigterm-node1.json").write_text(text, errors="surrogateescape")
    body = "SCRIPT_START_NS=1796000000000000100; steps_sigterm_ns 1796000000000009000 || true"
    out = _run(body, tmp_path)
    assert out.stdout.strip() == found, out.stderr


def test_a_symlinked_marker_is_skipped(tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere.json"
    elsewhere.write_text('{"node":"node1","ts_ns":1796000000000000500}')
    (tmp_path / "sigterm-node1.json").symlink_to(elsewhere)
    out = _run("SCRIPT_START_NS=1796000000000000100; steps_sigterm_ns 1796000000000009000 || true", tmp_path)
    assert out.stdout.strip() == ""
