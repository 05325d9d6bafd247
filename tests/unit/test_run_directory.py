"""Run directory safety: never through a symlink, never another user's, private journal, and a
ConfigError instead of a traceback."""

from __future__ import annotations

import os
import stat
import subprocess
from pathlib import Path

import pytest

import yprov_hpc as prov4ml
from tests.conftest import PYTHON, python_env, start


def test_a_pre_created_symlink_for_the_run_directory_is_refused(save_dir: Path, tmp_path: Path) -> None:
    """An attacker's symlink at the predictable run directory path is refused, never followed."""
    target = tmp_path / "victim"
    target.mkdir()
    save_dir.mkdir()
    (save_dir / "exp_fixed").symlink_to(target)
    with pytest.raises(prov4ml.ConfigError, match="symbolic link") as info:
        start(save_dir, sidecar="off", run_id="fixed")
    assert info.value.value == str(save_dir / "exp_fixed")
    assert list(target.iterdir()) == []


def test_a_symlinked_journal_directory_is_refused(save_dir: Path, tmp_path: Path) -> None:
    """A journal/ that is a symlink is refused too (it holds the sockets and journals)."""
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (save_dir / "exp_j").mkdir(parents=True)
    (save_dir / "exp_j" / "journal").symlink_to(elsewhere)
    with pytest.raises(prov4ml.ConfigError, match="symbolic link"):
        start(save_dir, sidecar="off", run_id="j")
    assert list(elsewhere.iterdir()) == []


def test_another_users_run_directory_is_refused(save_dir: Path) -> None:
    """A run directory owned by another uid is not written into."""
    if os.geteuid() != 0:
        pytest.fail("this test makes a directory of another user, which needs root")
    (save_dir / "exp_other").mkdir(parents=True)
    os.chown(save_dir / "exp_other", 12345, 12345)
    with pytest.raises(prov4ml.ConfigError, match="owned by uid 12345"):
        start(save_dir, sidecar="off", run_id="other")


def test_the_journal_directory_is_private(save_dir: Path) -> None:
    """The journal directory is 0700, even when it existed with looser bits."""
    (save_dir / "exp_p" / "journal").mkdir(parents=True, mode=0o755)
    os.chmod(save_dir / "exp_p" / "journal", 0o755)
    run = start(save_dir, sidecar="off", run_id="p")
    assert stat.S_IMODE(os.stat(run.run_dir / "journal").st_mode) == 0o700


def test_a_save_dir_that_cannot_be_made_is_a_config_error(tmp_path: Path) -> None:
    """A save directory below a regular file gives a ConfigError naming the run directory."""
    (tmp_path / "file").write_text("x")
    with pytest.raises(prov4ml.ConfigError, match="cannot be created or used"):
        start(tmp_path / "file" / "prov", sidecar="off")


_UNWRITABLE = """
import os, sys, yprov_hpc as prov4ml
start_run, ConfigError = prov4ml.start_run, prov4ml.ConfigError  # loaded before the stdlib may be unreadable
if os.geteuid() == 0:
    os.setgid(65534)
    os.setuid(65534)  # root writes anywhere: become nobody to meet a permission error
try:
    start_run("www.example.org", "x", sys.argv[1], sidecar="off", handle_sigterm=False)
except ConfigError as exc:
    print("ConfigError:", exc.reason)
"""


def test_a_save_dir_without_write_permission_is_a_config_error(tmp_path: Path) -> None:
    """An unwritable save directory gives one ConfigError line, not a PermissionError traceback."""
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o555)
    script = tmp_path / "unwritable.py"
    script.write_text(_UNWRITABLE)
    out = subprocess.run(
        [PYTHON, str(script), str(locked)], env=python_env(), capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0 and "Traceback" not in out.stderr, out.stderr
    assert out.stdout.strip() == "ConfigError: cannot be created or used (Permission denied); " + (
        "choose a save directory you can write"
    )
