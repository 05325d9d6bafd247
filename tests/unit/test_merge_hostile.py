"""Hostile journals and marker files: the merge skips and reports what is bad, keeps what is good,
and never fails the whole run (or allocates by a claimed rank or world size)."""

from __future__ import annotations

import json
import resource
import struct
from pathlib import Path
from typing import Any

import msgpack
import pytest

from yprov_hpc.merge import merge_run
from yprov_hpc.wire.codec import encode_batch
from yprov_hpc.wire.journal import JournalWriter
from yprov_hpc.wire.records import NODE_RANK, Kind

T0 = 1_780_000_000_000_000_000
S = 1_000_000_000
START = {"run_id": "r1", "namespace": "http://x.org/", "experiment": "e", "world_size": 1, "node": "n0"}

# one event of each hostile class, each decodable msgpack but breaking the schema
HOSTILE: dict[str, tuple[Any, ...]] = {
    "string metric value": (int(Kind.METRIC), T0 + 5, "loss", "abc", None, 1),
    "step 2**63": (int(Kind.METRIC), T0 + 5, "loss", 1.0, None, 2**63),
    "short event": (int(Kind.METRIC), T0 + 5, "loss"),
    "param name not a str": (int(Kind.PARAM), T0 + 5, 7, 1, "int"),
    "negative time": (int(Kind.METRIC), -1, "loss", 1.0, None, 1),
    "not an array": ("garbage",),
    "huge claimed rank": (int(Kind.RUN_START), T0, {"rank": 2**40, "world_size": 2**40}),
    "artifact info not a map": (int(Kind.ARTIFACT), T0 + 5, "a.txt", None, None, [1, 2]),
    "huge name": (int(Kind.METRIC), T0 + 5, "x" * 5000, 1.0, None, 1),
}


def _write(root: Path, batches: list[tuple[int, str, list[tuple[Any, ...]]]]) -> None:
    """Journal (rank, node, events) batches, numbering each rank's events from 0."""
    journal = root / "journal"
    journal.mkdir(parents=True, exist_ok=True)
    writer = JournalWriter(journal / "node-n0.journal")
    seq: dict[int, int] = {}
    for rank, node, events in batches:
        start = seq.get(rank, 0)
        seq[rank] = start + len(events)
        writer.append(*encode_batch("r1", rank, node, 7 if rank >= 0 else 99, start, events, T0))
    writer.close()


def _good(rank: int = 0, n: int = 20, end: bool = True, world: int = 1) -> list[tuple[Any, ...]]:
    events: list[tuple[Any, ...]] = [(int(Kind.RUN_START), T0, {**START, "rank": rank, "world_size": world})]
    events += [(int(Kind.METRIC), T0 + 10 + i, "loss", float(i), "training", i) for i in range(n)]
    if end:
        events.append((int(Kind.RUN_END), T0 + 10 * S, "finished", {}))
    return events


def _doc(root: Path, name: str = "prov_e_rank0.json") -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads((root / name).read_text())
    return loaded


def _literal(value: Any) -> Any:
    return value["$"] if isinstance(value, dict) and "$" in value else value


@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_a_bad_event_is_skipped_and_reported_and_the_good_ones_kept(tmp_path: Path, case: str) -> None:
    """Each class of bad event, beside good ones: every good metric is in the document, the bad
    event is counted with its reason in merge_report.json and on the rank's activity."""
    root = tmp_path / "e_r1"
    good = _good()
    _write(root, [(0, "n0", [*good[:11], HOSTILE[case], *good[11:]])])
    result = merge_run(root, create_svg=False)
    loss = _doc(root)["entity"]["run:rank0.metric.loss.training"]
    assert _literal(loss["yprov:count"]) == "20"
    assert result.ranks[0].bad_events == 1
    report = json.loads((root / "merge_report.json").read_text())
    assert report["ranks"]["0"]["bad_events"] == 1 and "seq 11" in report["ranks"]["0"]["bad_reasons"][0]
    activity = _doc(root)["activity"]["run:rank0"]
    assert (
        "bad events skipped" in activity["yprov:problems"] and _literal(activity["yprov:events_bad"]) == "1"
    )


def test_every_hostile_class_at_once_still_merges_every_rank(tmp_path: Path) -> None:
    """All hostile classes in one batch of rank 0 and none in rank 1: both ranks get documents."""
    root = tmp_path / "e_r1"
    _write(root, [(0, "n0", _good(0, world=2) + list(HOSTILE.values())), (1, "n0", _good(1, world=2))])
    result = merge_run(root, create_svg=False)
    assert sorted(p.name for p in result.documents) == ["prov_e_rank0.json", "prov_e_rank1.json"]
    assert result.ranks[0].bad_events == len(HOSTILE) and result.ranks[1].bad_events == 0
    assert result.collection is not None and not result.missing_ranks


def test_a_done_marker_claiming_a_huge_world_is_ignored_and_memory_stays_bounded(tmp_path: Path) -> None:
    """A done marker with world_size 2**40 is reported and ignored: no allocation per claimed rank."""
    root = tmp_path / "e_r1"
    _write(root, [(0, "n0", _good())])
    (root / "journal" / "rank0.done").write_text(json.dumps({"rank": 0, "world_size": 2**40}))
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    result = merge_run(root, create_svg=False)
    grown_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before
    assert any("rank0.done: ignored" in p and "world_size" in p for p in result.problems)
    assert result.missing_count == 0 and grown_kib < 200_000


def test_a_claimed_world_of_a_million_ranks_lists_only_the_first_missing(tmp_path: Path) -> None:
    """A RunStart claiming the largest world size: missing ranks are counted, and only the first listed."""
    root = tmp_path / "e_r1"
    _write(root, [(0, "n0", _good(world=2**20))])
    result = merge_run(root, create_svg=False)
    assert result.missing_count == 2**20 - 1 and len(result.missing_ranks) == 1000
    assert result.missing_ranks[:2] == [1, 2]


@pytest.mark.parametrize(
    "content",
    [b"{not json", b"[1, 2]", b'{"rank": "zero"}', b'{"rank": 1}', b"[" * 50_000, b" " * 100_000],
)
def test_a_bad_done_marker_is_reported_and_ignored(tmp_path: Path, content: bytes) -> None:
    """Garbage, a wrong shape, a wrong type, a wrong rank, deep nesting or an oversized file: the
    marker is ignored, the problem named, and the rank merged from its events."""
    root = tmp_path / "e_r1"
    _write(root, [(0, "n0", _good())])
    (root / "journal" / "rank0.done").write_bytes(content)
    result = merge_run(root, create_svg=False)
    assert any(p.startswith("rank0.done: ignored") for p in result.problems)
    assert result.ranks[0].events == 22


def test_a_lost_rank_is_lost_keeps_its_events_and_is_a_problem(tmp_path: Path) -> None:
    """The sidecar's rank1.lost: rank 1's status is "lost", its events are kept, problems name it."""
    root = tmp_path / "e_r1"
    _write(root, [(0, "n0", _good(0, world=2)), (1, "n0", _good(1, n=7, end=False, world=2))])
    marker = {"rank": 1, "pid": 4242, "node": "n0", "detected_ts_ns": T0 + 5 * S}
    (root / "journal" / "rank1.lost").write_text(json.dumps(marker))
    result = merge_run(root, create_svg=False)
    act = _doc(root, "prov_e_rank1.json")["activity"]["run:rank1"]
    assert act["yprov:status"] == "lost"
    assert (
        _literal(_doc(root, "prov_e_rank1.json")["entity"]["run:rank1.metric.loss.training"]["yprov:count"])
        == "7"
    )
    assert any(p.startswith("rank 1: lost") for p in result.problems)
    coll = json.loads(result.collection.read_text())  # type: ignore[union-attr]
    assert coll["activity"]["run:rank1"]["yprov:status"] == "lost"


def test_the_job_end_cause_is_recorded_and_names_ranks_without_end_run(tmp_path: Path) -> None:
    """journal/job.end says "time_limit": the job activity carries it, and a rank with no end_run
    is "time limit", not "incomplete"; a rank that ended keeps its own status."""
    root = tmp_path / "e_r1"
    _write(root, [(0, "n0", _good(0, world=2)), (1, "n0", _good(1, end=False, world=2))])
    (root / "journal" / "job.end").write_text(json.dumps({"cause": "time_limit", "ts_ns": T0 + 9 * S}))
    result = merge_run(root, create_svg=False)
    coll = json.loads(result.collection.read_text())  # type: ignore[union-attr]
    assert coll["activity"]["run:job"]["yprov:end_cause"] == "time_limit"
    assert coll["activity"]["run:rank1"]["yprov:status"] == "time limit (no end_run recorded)"
    assert coll["activity"]["run:rank0"]["yprov:status"] == "finished"
    assert json.loads((root / "merge_report.json").read_text())["end_cause"] == "time_limit"


def test_a_bad_job_end_is_reported_and_ignored(tmp_path: Path) -> None:
    """A job.end with an unknown cause is named in the problems and changes no status."""
    root = tmp_path / "e_r1"
    _write(root, [(0, "n0", _good(end=False))])
    (root / "journal" / "job.end").write_text(json.dumps({"cause": "exploded"}))
    result = merge_run(root, create_svg=False)
    assert any(p.startswith("job.end: ignored") for p in result.problems)
    assert _doc(root)["activity"]["run:rank0"]["yprov:status"] == "incomplete (no end_run recorded)"


def _system(ts: int, busy: float, **extra: Any) -> tuple[Any, ...]:
    ranks = {"0": {"pid": 100, "cpu_s": busy / 2, "local_rank": 0}}
    return (
        int(Kind.SAMPLE),
        ts,
        "system",
        {"cpu_busy_s": busy, "cpu_percent": 50.0, "ranks": ranks, **extra},
    )


def test_samples_of_one_time_merge(tmp_path: Path) -> None:
    """Two system samples (and two GPU samples) of the same time, as a journal may hold them,
    merge like any others: the samples are ordered by time alone."""
    root = tmp_path / "e_r1"
    samples = [_system(T0 + k * S, float(k)) for k in range(11)]
    samples.insert(5, _system(T0 + 4 * S, 4.5))
    gpu = {"gpus": {"0": {"power_w": 100.0, "pids": [100]}}}
    samples += [(int(Kind.SAMPLE), T0 + 2 * S, "nvml", gpu), (int(Kind.SAMPLE), T0 + 2 * S, "nvml", gpu)]
    _write(root, [(0, "n0", _good()), (NODE_RANK, "n0", samples)])
    result = merge_run(root, create_svg=False)
    assert result.collection is not None and result.nodes["n0"].samples == 14
    assert not [p for p in result.problems if "sample" in p]


def test_events_that_are_not_samples_in_a_node_stream_are_counted(tmp_path: Path) -> None:
    """A node stream's metrics, marks and blocks (only a hostile journal holds them: the sidecar
    refuses them) are counted as bad, each event once, and the samples beside them still count."""
    root = tmp_path / "e_r1"
    samples: list[Any] = [_system(T0 + k * S, float(k)) for k in range(11)]
    samples += [(int(Kind.METRIC), T0, "loss", 1.0, None, 1), (int(Kind.MARK), T0, "system", None, 1)]
    _write(root, [(0, "n0", _good()), (NODE_RANK, "n0", samples)])
    block = [15, struct.pack("<20q", *range(20)), ["a"] * 20, bytes(160), [None] * 20, None, [3]]
    writer = JournalWriter(root / "journal" / "node-n0.journal")
    writer.append(msgpack.packb([4, 1, "r1", NODE_RANK, "n0", 99, 13, 20, T0]), msgpack.packb([block]))
    writer.close()
    result = merge_run(root, create_svg=False)
    assert any("node n0: 22 bad samples skipped" in p for p in result.problems), result.problems
    assert result.nodes["n0"].samples == 11


def test_a_sample_in_a_rank_stream_is_counted(tmp_path: Path) -> None:
    """A SAMPLE event in a rank's stream (only a hostile journal holds one: the sidecar refuses
    it) is counted as a bad event of the rank, with its sequence number."""
    root = tmp_path / "e_r1"
    events = _good()
    events.insert(2, _system(T0 + 1, 1.0))
    _write(root, [(0, "n0", events)])
    result = merge_run(root, create_svg=False)
    assert result.ranks[0].bad_events == 1
    assert any("seq 2: a SAMPLE event belongs to a node stream" in p for p in result.problems), (
        result.problems
    )


def test_bad_samples_are_skipped_and_reported(tmp_path: Path) -> None:
    """A node sample whose values have wrong types is skipped and reported; the others count."""
    root = tmp_path / "e_r1"
    samples = [_system(T0 + k * S, float(k)) for k in range(11)]
    samples.insert(3, (int(Kind.SAMPLE), T0 + 3 * S + 1, "system", {"cpu_percent": "hot", "ranks": {}}))
    _write(root, [(0, "n0", _good()), (NODE_RANK, "n0", samples)])
    result = merge_run(root, create_svg=False)
    assert any("node n0: 1 bad samples skipped" in p for p in result.problems)
    assert result.nodes["n0"].samples == 11
