"""A merge split across nodes: node parts, then a join whose output is the one-process merge's,
whatever parts ran, went stale, were damaged or are missing. One real run for the module: two
nodes' sidecars (nodeA aggregates, nodeB forwards), two rank processes on each node."""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
import signal
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conftest import PYTHON, entity, load, python_env
from tests.integration.sidecar_proc import start_sidecar
from yprov_hpc.core.layout import RunLayout
from yprov_hpc.finalize import MergeLockTimeout, final_merge, part_merge
from yprov_hpc.fold.parts import part_path
from yprov_hpc.merge import merge_run
from yprov_hpc.wire.codec import encode_batch
from yprov_hpc.wire.journal import JournalWriter
from yprov_hpc.wire.records import Kind

RANKS = {0: "nodeA", 1: "nodeA", 2: "nodeB", 3: "nodeB"}
RANK_SCRIPT = """
import yprov_hpc as prov4ml
run = prov4ml.start_run("www.example.org", "parts", handle_sigterm=False, auto_merge=False, run_id="r1")
prov4ml.log_param("lr", 0.1)
for i in range(500):
    prov4ml.log_metric("loss", 1.0 / (i + 1), prov4ml.Context.TRAINING, i)
prov4ml.end_run()
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A finished 4-rank, 2-node run directory with its journals only (not merged)."""
    run_dir = tmp_path_factory.mktemp("parts") / "parts_r1"
    endpoint = f"tcp://127.0.0.1:{_free_port()}"
    a = start_sidecar(run_dir, "--aggregate", endpoint, node="nodeA")[0]
    b = start_sidecar(run_dir, "--forward", endpoint, node="nodeB")[0]
    try:
        ranks = []
        for rank, node in RANKS.items():
            env = python_env()
            env.update(
                SLURMD_NODENAME=node,
                YPROV_RUN_DIR=str(run_dir),
                RANK=str(rank),
                LOCAL_RANK=str(rank % 2),
                WORLD_SIZE=str(len(RANKS)),
            )
            ranks.append(subprocess.Popen([PYTHON, "-c", RANK_SCRIPT], env=env, stderr=subprocess.PIPE))
        for proc in ranks:
            assert proc.wait(timeout=120) == 0, proc.communicate()[1].decode()[-2000:]
    finally:
        for proc in (b, a):
            proc.send_signal(signal.SIGTERM)
            proc.communicate(timeout=30)
    yield run_dir


@pytest.fixture
def run_dir(finished_run: Path, tmp_path: Path) -> Path:
    """A private copy of the finished run, for one test to merge and damage."""
    copy = tmp_path / finished_run.name
    shutil.copytree(finished_run, copy, ignore=shutil.ignore_patterns("*.sock"))
    return copy


def merge_outputs(run_dir: Path) -> dict[str, str]:
    """sha256 of every file outside journal/ (the merge report without its timing and path)."""
    out = {}
    for path in sorted(run_dir.rglob("*")):
        if not path.is_file() or "journal" in path.relative_to(run_dir).parts:
            continue
        data = path.read_bytes()
        if path.name == "merge_report.json":
            report = json.loads(data)
            report.pop("seconds")
            report.pop("run_dir")
            data = json.dumps(report).encode()
        out[path.relative_to(run_dir).as_posix()] = hashlib.sha256(data).hexdigest()
    return out


def _one_process_merge(run_dir: Path) -> dict[str, str]:
    """The outputs of a plain merge, which are then removed (journals and markers stay)."""
    merge_run(run_dir)
    reference = merge_outputs(run_dir)
    for path in list(run_dir.iterdir()):
        if path.name != "journal":
            shutil.rmtree(path) if path.is_dir() else path.unlink()
    return reference


def test_join_after_every_part_equals_one_merge(run_dir: Path) -> None:
    """Parts for both nodes then the join: every rank comes from a part, every file is the same."""
    reference = _one_process_merge(run_dir)
    for node in ("nodeA", "nodeB"):
        part = part_merge(run_dir, [node])
        assert part is not None and sorted(part.ranks) == [r for r, n in RANKS.items() if n == node]
    joined = final_merge(run_dir, by="test", join=True)
    assert joined.result is not None and joined.result.from_parts == 4
    assert merge_outputs(run_dir) == reference and len(reference) >= 4 * 3 + 2


def test_join_folds_the_ranks_of_a_missing_part(run_dir: Path) -> None:
    """Only nodeA's part ran: the join takes its two ranks and folds nodeB's; the output is equal."""
    reference = _one_process_merge(run_dir)
    part_merge(run_dir, ["nodeA"])
    joined = final_merge(run_dir, by="test", join=True)
    assert joined.result is not None and joined.result.from_parts == 2
    assert merge_outputs(run_dir) == reference


def test_join_refolds_a_rank_whose_journals_changed_since_its_part(run_dir: Path) -> None:
    """A spool of rank 2 appears after the parts (events the part never saw): rank 2 is folded
    again with them, rank 3 of the same node still comes from the part."""
    for node in ("nodeA", "nodeB"):
        part_merge(run_dir, [node])
    layout = RunLayout.open(run_dir, "parts")
    late = [
        (int(Kind.METRIC), 1_780_000_000_000_000_000 + i, "late", float(i), "training", i) for i in range(7)
    ]
    writer = JournalWriter(layout.spool(2, 99))
    writer.append(*encode_batch("r1", 2, "nodeB", 99, 0, late, 1_780_000_000_000_000_000))
    writer.close()
    joined = final_merge(run_dir, by="test", join=True)
    assert joined.result is not None and joined.result.from_parts == 3
    late_metric = entity(load(run_dir / "prov_parts_rank2.json"), "run:rank2.metric.late.training")
    assert late_metric["yprov:count"] == 7


def test_stale_join_output_equals_one_merge(run_dir: Path) -> None:
    """With a rank's part gone stale (its done marker changed after the part), the join still
    writes what one merge writes from the same journals and markers."""
    for node in ("nodeA", "nodeB"):
        part_merge(run_dir, [node])
    marker = RunLayout.open(run_dir, "parts").done_marker(3)
    done = json.loads(marker.read_text())  # rank 3 now says it sent 5 events more than it did
    done["delivery"]["events"] += 5
    marker.write_text(json.dumps(done))
    result = final_merge(run_dir, by="test", join=True).result
    joined = merge_outputs(run_dir)
    assert result is not None and result.from_parts == 3 and result.ranks[3].missing_at_end == 5
    assert joined == _one_process_merge(run_dir)


@pytest.mark.parametrize(
    "content",
    [b"{not json", b'{"format": "yprov-merge-part/1", "ranks": [{"rank": "0"}, 5, null]}', b"[" * 100_000],
    ids=["not JSON", "wrong types", "nested too deep"],
)
def test_a_damaged_part_file_is_not_used(run_dir: Path, content: bytes) -> None:
    """A part file that does not parse or has wrong types: its ranks are folded by the join."""
    reference = _one_process_merge(run_dir)
    for node in ("nodeA", "nodeB"):
        part_merge(run_dir, [node])
    part_path(RunLayout.open(run_dir), "nodeB").write_bytes(content)
    joined = final_merge(run_dir, by="test", join=True)
    assert joined.result is not None and joined.result.from_parts == 2
    assert merge_outputs(run_dir) == reference


@pytest.mark.parametrize("world_size", ["x", 10**12, True])
def test_a_part_with_a_hostile_start_is_not_used(run_dir: Path, world_size: Any) -> None:
    """A part entry whose key is right but whose run start says what no journal could (a world
    size that is not a count) is not taken: the join folds that rank, as one merge would."""
    reference = _one_process_merge(run_dir)
    for node in ("nodeA", "nodeB"):
        part_merge(run_dir, [node])
    path = part_path(RunLayout.open(run_dir), "nodeB")
    part = json.loads(path.read_bytes())
    part["ranks"][0]["fold"]["start"]["world_size"] = world_size
    path.write_text(json.dumps(part))
    joined = final_merge(run_dir, by="test", join=True)
    assert joined.result is not None and joined.result.from_parts == 3
    assert merge_outputs(run_dir) == reference


@pytest.mark.parametrize("damage", ["series deleted", "environment changed"])
def test_a_series_or_environment_changed_after_its_part_is_written_again(run_dir: Path, damage: str) -> None:
    """The files a rank's document names (its series, its environment) must be the part's too:
    a deleted series or a changed environment file makes the join fold the rank again."""
    reference = _one_process_merge(run_dir)
    part_merge(run_dir, ["nodeA", "nodeB"])
    layout = RunLayout.open(run_dir, "parts")
    if damage == "series deleted":
        layout.series_file(1).unlink()
    else:
        layout.environment_file(1).write_text('{"host": "elsewhere"}')
    joined = final_merge(run_dir, by="test", join=True)
    assert joined.result is not None and joined.result.from_parts == 3
    assert merge_outputs(run_dir) == reference


def test_a_document_changed_after_its_part_is_written_again(run_dir: Path) -> None:
    """A rank document whose sha256 is not the part's record is not trusted: the join rewrites it."""
    reference = _one_process_merge(run_dir)
    part_merge(run_dir, ["nodeA", "nodeB"])
    (run_dir / "prov_parts_rank1.json").write_text("{}")
    joined = final_merge(run_dir, by="test", join=True)
    assert joined.result is not None and joined.result.from_parts == 3
    assert merge_outputs(run_dir) == reference


@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    parts=st.sets(st.sampled_from(["nodeA", "nodeB"])),
    damaged=st.sets(st.sampled_from(sorted(RANKS))),
    order=st.permutations(["nodeA", "nodeB"]),
)
def test_any_parts_in_any_order_join_to_one_merge(
    finished_run: Path,
    tmp_path_factory: pytest.TempPathFactory,
    parts: set[str],
    damaged: set[int],
    order: list[str],
) -> None:
    """Whichever parts ran, in whichever order, and whichever rank documents were damaged
    after them, the join writes what one merge writes and takes exactly the intact ranks."""
    run_dir = tmp_path_factory.mktemp("any") / finished_run.name
    shutil.copytree(finished_run, run_dir, ignore=shutil.ignore_patterns("*.sock"))
    reference = _one_process_merge(run_dir)
    for node in (n for n in order if n in parts):
        part_merge(run_dir, [node])
    for rank in damaged:
        (run_dir / f"prov_parts_rank{rank}.json").write_text("{}")
    joined = final_merge(run_dir, by="test", join=True).result
    expected = {r for r, n in RANKS.items() if n in parts} - damaged
    assert joined is not None and joined.from_parts == len(expected)
    assert merge_outputs(run_dir) == reference


def test_a_part_waits_for_a_final_merge_holding_the_lock(run_dir: Path) -> None:
    """Parts take the merge lock shared: while a merge holds it, a part does not start."""
    fd = os.open(RunLayout.open(run_dir).merge_lock, os.O_RDWR | os.O_CREAT, 0o600)
    fcntl.flock(fd, fcntl.LOCK_EX)
    try:
        with pytest.raises(MergeLockTimeout):
            part_merge(run_dir, ["nodeA"], lock_timeout_s=0.3)
    finally:
        os.close(fd)


def test_parts_of_two_nodes_hold_the_lock_side_by_side(run_dir: Path) -> None:
    """A part runs while another part holds the shared lock."""
    fd = os.open(RunLayout.open(run_dir).merge_lock, os.O_RDWR | os.O_CREAT, 0o600)
    fcntl.flock(fd, fcntl.LOCK_SH)
    try:
        assert part_merge(run_dir, ["nodeB"], lock_timeout_s=5) is not None
    finally:
        os.close(fd)


def test_a_part_after_the_join_does_nothing_with_if_stale(run_dir: Path) -> None:
    """--if-stale: once a merge recorded these journals, a part (the merge job's) is skipped."""
    final_merge(run_dir, by="test", join=True)
    assert part_merge(run_dir, ["nodeA"], if_stale=True) is None
    assert not part_path(RunLayout.open(run_dir), "nodeA").exists()


def _yprov(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    full = {**python_env(), **env}
    command = [PYTHON, "-m", "yprov_hpc.cli", *args]
    return subprocess.run(command, env=full, capture_output=True, text=True, timeout=120)


def test_cli_part_auto_takes_this_slurm_tasks_share_of_the_nodes(run_dir: Path) -> None:
    """`yprov merge --part auto` as task 1 of 2 folds the second node (of nodeA, nodeB) only."""
    out = _yprov("merge", "--part", "auto", "-j", "1", str(run_dir), SLURM_PROCID="1", SLURM_NTASKS="2")
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("part nodeB: folded 2 rank(s)"), out.stdout
    assert sorted(p.name for p in (run_dir / "journal").glob("part-*.json")) == ["part-nodeB.json"]


def test_cli_join_says_how_many_ranks_came_from_parts(run_dir: Path) -> None:
    """`yprov merge --join` after one part: 2 ranks from the part, all 4 merged."""
    assert _yprov("merge", "--part", "nodeA", "-j", "1", str(run_dir)).returncode == 0
    out = _yprov("merge", "--join", "-j", "1", str(run_dir))
    assert out.returncode == 0, out.stderr
    assert "merged 4 rank(s)" in out.stdout and "joined: 2 rank(s) from the nodes' parts" in out.stdout


def test_cli_refuses_part_and_join_together(run_dir: Path) -> None:
    """--part and --join in one command is a usage error (exit 2), not a merge."""
    out = _yprov("merge", "--part", "nodeA", "--join", str(run_dir))
    assert out.returncode == 2 and "two steps" in out.stderr
