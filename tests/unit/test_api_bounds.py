"""API bounds: steps within int64, bounded names and values, any non-empty context, and
artifacts that are regular files, refused with a clear typed error otherwise."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest

import yprov_hpc as prov4ml
from tests.conftest import load, start
from yprov_hpc.core.hashing import sha256_path
from yprov_hpc.core.layout import RunLayout
from yprov_hpc.rank.artifacts import ArtifactStore
from yprov_hpc.wire.records import MAX_NAME_CHARS, MAX_TEXT_CHARS


@pytest.mark.parametrize("step", [2**63, -(2**63) - 1, 2**64])
def test_a_step_outside_int64_is_refused_by_name(save_dir: Path, step: int) -> None:
    """A step that does not fit int64 raises LimitExceededError naming the step, in every verb."""
    start(save_dir, sidecar="off")
    for call in (
        lambda: prov4ml.log_metric("loss", 1.0, step=step),
        lambda: prov4ml.log_system_metrics(step=step),
        lambda: prov4ml.log_current_execution_time("t", step=step),
    ):
        with pytest.raises(prov4ml.LimitExceededError, match="step") as info:
            call()
        assert info.value.name == "step" and info.value.value == step


def test_int64_edges_are_accepted(save_dir: Path) -> None:
    """The smallest and largest int64 steps are valid steps."""
    run = start(save_dir, sidecar="off")
    run.log_metric("loss", 1.0, step=2**63 - 1)
    run.log_metric("loss", 1.0, step=-(2**63))
    assert [e[5] for e in list(run._buffer)[-2:]] == [2**63 - 1, -(2**63)]


def test_an_overlong_name_is_refused(save_dir: Path) -> None:
    """Metric and param names longer than MAX_NAME_CHARS raise LimitExceededError."""
    start(save_dir, sidecar="off")
    name = "n" * (MAX_NAME_CHARS + 1)
    with pytest.raises(prov4ml.LimitExceededError, match=str(MAX_NAME_CHARS)):
        prov4ml.log_metric(name, 1.0)
    with pytest.raises(prov4ml.LimitExceededError):
        prov4ml.log_param(name, 1)
    prov4ml.log_metric("n" * MAX_NAME_CHARS, 1.0)  # the bound itself is fine


def test_an_oversized_param_value_is_refused(save_dir: Path) -> None:
    """A param whose text is over MAX_TEXT_CHARS raises LimitExceededError, and is not recorded."""
    run = start(save_dir, sidecar="off")
    with pytest.raises(prov4ml.LimitExceededError, match="value"):
        prov4ml.log_param("huge", "v" * (MAX_TEXT_CHARS + 1))
    with pytest.raises(prov4ml.LimitExceededError):
        prov4ml.log_param("huge_list", list(range(MAX_TEXT_CHARS // 2)))
    assert "huge" not in run._params


def test_any_non_empty_string_is_a_context(save_dir: Path) -> None:
    """Spaces, slashes and non-ASCII letters make a valid context, recorded as its own activity."""
    start(save_dir)
    prov4ml.log_metric("loss", 1.0, prov4ml.Context("my ctx/é"), 0)
    prov4ml.log_metric("loss", 2.0, "Another Phase", 1)
    report = prov4ml.end_run()
    assert report.merged, report.problems
    labels = {a.get("prov:label") for a in load(report.documents[0])["activity"].values()}
    assert {"my ctx/é", "another phase"} <= labels


def test_empty_and_overlong_contexts_are_refused() -> None:
    """An empty context is not a name; one over MAX_NAME_CHARS is over the limit."""
    with pytest.raises(prov4ml.InvalidKeyError):
        prov4ml.Context("")
    with pytest.raises(prov4ml.LimitExceededError):
        prov4ml.Context("c" * (MAX_NAME_CHARS + 1))


def test_a_character_device_is_refused(save_dir: Path) -> None:
    """/dev/null as an artifact raises ArtifactTypeError saying it is a character device."""
    start(save_dir, sidecar="off")
    with pytest.raises(prov4ml.ArtifactTypeError) as info:
        prov4ml.log_artifact("/dev/null")
    assert info.value.kind == "character device" and info.value.path == "/dev/null"


def test_a_fifo_is_refused_without_blocking(save_dir: Path, tmp_path: Path) -> None:
    """A FIFO raises ArtifactTypeError at once (reading it would block)."""
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    start(save_dir, sidecar="off")
    with pytest.raises(prov4ml.ArtifactTypeError, match="FIFO"):
        prov4ml.log_artifact(fifo)


def test_a_socket_inside_a_directory_is_refused(save_dir: Path, tmp_path: Path) -> None:
    """A directory holding a unix socket raises ArtifactTypeError naming the socket's path."""
    folder = tmp_path / "d"
    folder.mkdir()
    (folder / "ok.txt").write_text("fine")
    sock = socket.socket(socket.AF_UNIX)
    try:
        sock.bind(str(folder / "s.sock"))
        start(save_dir, sidecar="off")
        with pytest.raises(prov4ml.ArtifactTypeError, match="socket") as info:
            prov4ml.log_artifact(folder)
        assert info.value.path == str(folder / "s.sock")
    finally:
        sock.close()


def _store(tmp_path: Path, limit: int) -> ArtifactStore:
    layout = RunLayout(tmp_path / "run", "exp")
    layout.root.mkdir()
    return ArtifactStore(layout, 0, limit)


def test_a_directory_over_the_copy_limit_is_referenced_in_place(tmp_path: Path) -> None:
    """A directory whose files together pass the limit is hashed and sized, never copied."""
    folder = tmp_path / "d"
    (folder / "sub").mkdir(parents=True)
    (folder / "a.bin").write_bytes(b"a" * 60)
    (folder / "sub" / "b.bin").write_bytes(b"b" * 60)
    stored = _store(tmp_path, 100).store(folder)
    assert (stored.stored, stored.size_bytes) == ("", 120) and "copy limit" in stored.note
    assert stored.sha256 == sha256_path(folder)[0]
    assert not list((tmp_path / "run").rglob("*.bin"))


def test_a_directory_within_the_limit_is_copied_with_its_hash(tmp_path: Path) -> None:
    """A directory under the limit is copied whole; its hash is that of core.hashing."""
    folder = tmp_path / "d"
    (folder / "sub").mkdir(parents=True)
    (folder / "a.bin").write_bytes(b"a" * 60)
    (folder / "sub" / "b.bin").write_bytes(b"b" * 30)
    stored = _store(tmp_path, 100).store(folder)
    copy = tmp_path / "run" / stored.stored
    assert (copy / "sub" / "b.bin").read_bytes() == b"b" * 30
    assert stored.sha256 == sha256_path(folder)[0] == sha256_path(copy)[0]


def test_symlinked_directories_inside_a_directory_are_not_followed(tmp_path: Path) -> None:
    """A symlink to a directory inside a logged directory is skipped and said so."""
    folder = tmp_path / "d"
    folder.mkdir()
    (folder / "a.txt").write_text("a")
    (folder / "loop").symlink_to(tmp_path)
    stored = _store(tmp_path, 1 << 20).store(folder)
    assert stored.size_bytes == 1 and "1 symlinked" in stored.note


def test_record_model_version_file_checks_its_step(save_dir: Path, tmp_path: Path) -> None:
    """The checkpoint verb Lightning uses checks its step like every other verb."""
    ckpt = tmp_path / "epoch=0.ckpt"
    ckpt.write_bytes(b"weights")
    run = start(save_dir, sidecar="off")
    with pytest.raises(prov4ml.InvalidArgumentError, match="step"):
        run.record_model_version_file(ckpt, "checkpoint", step="3")  # type: ignore[arg-type]
    with pytest.raises(prov4ml.LimitExceededError, match="step"):
        run.record_model_version_file(ckpt, "checkpoint", step=2**63)


def test_an_unhashable_context_is_a_typed_error(save_dir: Path) -> None:
    """A list as context raises InvalidArgumentError naming the context, not a bare TypeError."""
    start(save_dir, sidecar="off")
    with pytest.raises(prov4ml.InvalidArgumentError, match="context"):
        prov4ml.log_metric("loss", 1.0, context=["training"])  # type: ignore[arg-type]
