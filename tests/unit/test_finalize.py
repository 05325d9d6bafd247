"""One merge at a time: final_merge serializes merges, records them, and skips unchanged journals."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import ROOT, python_env
from tests.unit.test_merge_properties import _rank_batches, _write_journals
from yprov_hpc.core.layout import RunLayout
from yprov_hpc.core.merge_state import journal_snapshot, read_merge_state, wait_for_merge
from yprov_hpc.finalize import MergeLockTimeout, final_merge
from yprov_hpc.wire.journal import JournalWriter


def _run_dir(tmp_path: Path) -> Path:
    root = tmp_path / "e_r1"
    _write_journals(root, _rank_batches(0, 50, 10) + _rank_batches(1, 50, 10), 2)
    return root


def test_a_merge_is_recorded_with_its_generation_and_snapshot(tmp_path: Path) -> None:
    """The first merge writes merge.state.json: generation 1, the journals' snapshot, ok."""
    root = _run_dir(tmp_path)
    outcome = final_merge(root, by="test")
    state = read_merge_state(RunLayout.open(root))
    assert state is not None and outcome.state == state
    assert (state.generation, state.by, state.ok, state.ranks) == (1, "test", True, 2)
    assert state.snapshot == journal_snapshot(RunLayout.open(root))
    assert state.events == 2 * (50 + 3)


def test_if_stale_skips_unchanged_journals_and_merges_changed_ones(tmp_path: Path) -> None:
    """--if-stale does nothing when no journal changed, and merges again when one grew."""
    root = _run_dir(tmp_path)
    final_merge(root, by="first")
    again = final_merge(root, by="second", if_stale=True)
    assert again.skipped and again.result is None and again.state is not None
    assert again.state.by == "first"
    writer = JournalWriter(root / "journal" / "node-9.journal")
    for header, body in _rank_batches(2, 5, 5, stream=99):
        writer.append(header, body)
    writer.close()
    third = final_merge(root, by="third", if_stale=True)
    assert not third.skipped and third.state is not None
    assert (third.state.generation, third.state.ranks) == (2, 3)


def test_a_merge_waits_for_the_lock_held_by_another_merge(tmp_path: Path) -> None:
    """While another process holds the merge lock, final_merge does not write (it times out here)."""
    root = _run_dir(tmp_path)
    layout = RunLayout.open(root)
    holder = subprocess.Popen(
        [sys.executable, "-c", _HOLD_LOCK, str(layout.merge_lock)],
        stdout=subprocess.PIPE,
        env=python_env(),
        cwd=ROOT,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == b"locked"
        with pytest.raises(MergeLockTimeout):
            final_merge(root, by="test", lock_timeout_s=0.3)
        assert read_merge_state(layout) is None
        assert not layout.collection_document.exists()
    finally:
        holder.kill()
        holder.wait()
    assert final_merge(root, by="test", lock_timeout_s=5).state is not None


_HOLD_LOCK = """
import fcntl, os, sys, time
fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT, 0o600)
fcntl.flock(fd, fcntl.LOCK_EX)
print("locked", flush=True)
time.sleep(60)
"""


def test_merges_started_together_write_in_turn_and_the_last_read_the_most(tmp_path: Path) -> None:
    """Two merge processes started at once both finish, one after the other (generations 1 and 2)."""
    root = _run_dir(tmp_path)
    cmd = [sys.executable, "-m", "yprov_hpc.finalize", str(root)]
    procs = [subprocess.Popen([*cmd, "--by", f"p{i}"], env=python_env(), cwd=ROOT) for i in range(2)]
    assert [p.wait(timeout=120) for p in procs] == [0, 0]
    state = read_merge_state(RunLayout.open(root))
    assert state is not None and state.generation == 2


def test_a_garbage_state_file_counts_as_no_merge(tmp_path: Path) -> None:
    """merge.state.json is untrusted: a file that is not a state is ignored, not raised."""
    root = _run_dir(tmp_path)
    layout = RunLayout.open(root)
    for garbage in (b"", b"[1,2]", b'{"generation": "x"}', b"\xff" * 100, b'{"generation": true}'):
        layout.merge_state.write_bytes(garbage)
        assert read_merge_state(layout) is None
    assert final_merge(root, by="test").state is not None  # and a merge replaces it


def test_wait_for_merge_returns_the_state_of_a_merge_that_started_later(tmp_path: Path) -> None:
    """wait_for_merge ignores an older merge and returns once a newer one is recorded."""
    root = _run_dir(tmp_path)
    layout = RunLayout.open(root)
    final_merge(root, by="old")
    after = time.time_ns()
    assert wait_for_merge(layout, after, timeout_s=0.05) is None
    final_merge(root, by="new")
    state = wait_for_merge(layout, after, timeout_s=1)
    assert state is not None and state.by == "new"


def test_a_symlinked_lock_file_is_not_followed(tmp_path: Path) -> None:
    """The lock is opened with O_NOFOLLOW: a symlink planted at merge.lock makes the merge fail."""
    root = _run_dir(tmp_path)
    target = tmp_path / "victim"
    target.write_text("keep")
    os.symlink(target, RunLayout.open(root).merge_lock)
    with pytest.raises(OSError):
        final_merge(root, by="test")
    assert target.read_text() == "keep"
