"""The merge is order-independent, duplicate-proof, idempotent, and reports gaps exactly."""

from __future__ import annotations

import json
import random
import shutil
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from yprov_hpc.core.layout import RunLayout
from yprov_hpc.fold import workers
from yprov_hpc.merge import merge_run
from yprov_hpc.wire.codec import decode_body, decode_header, encode_batch
from yprov_hpc.wire.journal import JournalWriter
from yprov_hpc.wire.records import Kind

T0 = 1_780_000_000_000_000_000


def _rank_batches(
    rank: int, n_metrics: int, batch: int, stream: int = 11, records: bool = False
) -> list[tuple[bytes, bytes]]:
    events: list[tuple[object, ...]] = [
        (
            int(Kind.RUN_START),
            T0,
            {
                "run_id": "r1",
                "namespace": "http://x.org/",
                "experiment": "e",
                "rank": rank,
                "world_size": 2,
                "node": "n0",
            },
        ),
        (int(Kind.PARAM), T0 + 1, "lr", 0.1, "float"),
    ]
    if records:  # an artifact re-logged as a revision, and a dataset in a context
        events += [
            (int(Kind.ARTIFACT), T0 + 2, "cfg/a.yaml", None, None, {"stored": "artifacts/a1"}),
            (int(Kind.DATASET), T0 + 3, "train", "training", {"samples": 10}),
            (int(Kind.ARTIFACT), T0 + 4, "cfg/a.yaml", None, None, {"stored": "artifacts/a2", "revision": 2}),
        ]
    events += [
        (int(Kind.METRIC), T0 + 10 + i, "loss", 1.0 / (i + 1), "training", i) for i in range(n_metrics)
    ]
    events.append((int(Kind.RUN_END), T0 + 10**9, "finished", {}))
    out = []
    for start in range(0, len(events), batch):
        chunk = events[start : start + batch]
        out.append(encode_batch("r1", rank, "n0", stream, start, chunk, T0))
    return out


def _write_journals(root: Path, frames: list[tuple[bytes, bytes]], n_files: int) -> None:
    journal = root / "journal"
    journal.mkdir(parents=True, exist_ok=True)
    writers = [JournalWriter(journal / f"node-{i}.journal") for i in range(n_files)]
    for i, (h, b) in enumerate(frames):
        writers[i % n_files].append(h, b)
    for w in writers:
        w.close()


def _outputs(root: Path, ignore: tuple[str, ...] = ()) -> dict[str, object]:
    """The merge's outputs; ``ignore`` drops attributes that legitimately differ (delivery counters)."""
    out: dict[str, object] = {"metrics/rank0.parquet": (root / "metrics/rank0.parquet").read_bytes()}
    for name in ["prov_e_rank0.json", "prov_e_rank1.json", "prov_e_collection.json"]:
        doc = json.loads((root / name).read_text())
        for section in doc.values():
            for record in section.values():
                if isinstance(record, dict):
                    for key in ignore:
                        record.pop(key, None)
        out[name] = doc
    return out


@settings(suppress_health_check=[HealthCheck.function_scoped_fixture], max_examples=15, deadline=None)
@given(seed=st.integers(0, 10**6), n_files=st.integers(1, 4), dup=st.floats(0, 1), batch=st.integers(1, 40))
def test_order_and_duplicates_do_not_change_the_result(
    tmp_path: Path, seed: int, n_files: int, dup: float, batch: int
) -> None:
    """Shuffled, duplicated and split across journals, the same batches merge to the same bytes."""
    frames = _rank_batches(0, 60, batch, records=True) + _rank_batches(1, 30, batch, records=True)
    canonical = tmp_path / "canon" / "e_r1"
    shutil.rmtree(canonical.parent, ignore_errors=True)
    _write_journals(canonical, frames, 1)
    merge_run(canonical, create_svg=False)

    rng = random.Random(seed)
    noisy = [f for f in frames for _ in range(2 if rng.random() < dup else 1)]
    rng.shuffle(noisy)
    other = tmp_path / "noisy" / "e_r1"
    shutil.rmtree(other.parent, ignore_errors=True)
    _write_journals(other, noisy, n_files)
    result = merge_run(other, create_svg=False)
    ignore = ("yprov:events_duplicate_dropped", "yprov:sha256")
    assert _outputs(other, ignore) == _outputs(canonical, ignore)
    assert result.ranks[0].events == 66 and not result.ranks[0].gaps
    dup_events = result.ranks[0].duplicates + result.ranks[1].duplicates
    assert dup_events == _events_in(noisy) - _events_in(frames)


def _events_in(frames: list[tuple[bytes, bytes]]) -> int:
    from yprov_hpc.wire.codec import decode_header

    return sum(decode_header(h).n_events for h, _ in frames)


def test_merge_is_idempotent(tmp_path: Path) -> None:
    """Merging twice writes the same documents and series."""
    root = tmp_path / "e_r1"
    _write_journals(root, _rank_batches(0, 50, 7) + _rank_batches(1, 5, 7), 2)
    merge_run(root, create_svg=False)
    first = _outputs(root)
    merge_run(root, create_svg=False)
    assert _outputs(root) == first


def test_missing_batch_is_reported_as_a_gap(tmp_path: Path) -> None:
    """A lost batch shows as a gap with its exact sequence range, in the result and the document."""
    root = tmp_path / "e_r1"
    frames = _rank_batches(0, 50, 10) + _rank_batches(1, 5, 10)
    del frames[2]  # rank 0, events 20..29
    _write_journals(root, frames, 1)
    result = merge_run(root, create_svg=False)
    assert result.ranks[0].gaps == [(11, 20, 29)]
    assert any("10 events missing" in p for p in result.problems)
    doc = (RunLayout.open(root).rank_document(0)).read_text()
    assert '"yprov:events_missing": {\n        "$": "10"' in doc


def test_a_rank_with_no_events_is_reported_missing(tmp_path: Path) -> None:
    """When world_size says 2 ranks but only one has events, the merge names the missing rank."""
    root = tmp_path / "e_r1"
    _write_journals(root, _rank_batches(0, 5, 10), 1)
    result = merge_run(root, create_svg=False)
    assert result.missing_ranks == [1]
    assert "ranks_missing" in result.collection.read_text()  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("parent", "expected"),
    [("https://wf.example.org/runs/wf-42", "parent:wf-42"), ("not a uri at all", "run:parent_run")],
)
def test_parent_workflow_run_is_linked(tmp_path: Path, parent: str, expected: str) -> None:
    """A parent workflow run (YPROV_PARENT_RUN) becomes an activity that informs the job."""
    frames = []
    for header, body in _rank_batches(0, 5, 100):
        hdr = decode_header(header)
        events = decode_body(body, hdr)
        for ev in events:
            if ev[0] == int(Kind.RUN_START):
                ev[2]["parent_run"] = parent
                ev[2]["world_size"] = 1
        frames.append(encode_batch("r1", 0, "n0", hdr.stream, hdr.seq_start, [tuple(e) for e in events], T0))
    root = tmp_path / "e_r1"
    _write_journals(root, frames, 1)
    coll = json.loads(merge_run(root, create_svg=False).collection.read_text())  # type: ignore[union-attr]
    informed = [(r["prov:informed"], r["prov:informant"]) for r in coll["wasInformedBy"].values()]
    assert ("run:job", expected) in informed
    assert coll["activity"][expected]["yprov:uri"] == parent


def test_parallel_merge_writes_what_a_sequential_one_does(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Ranks merged in 2 worker processes give the same documents and series as in-process."""
    import concurrent.futures

    monkeypatch.setattr(workers, "POOL_MIN_EVENTS", 0)  # workers even for this small run
    pools: list[int] = []

    class _Counted(concurrent.futures.ProcessPoolExecutor):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            pools.append(kwargs.get("max_workers", 0))
            super().__init__(*args, **kwargs)

    monkeypatch.setattr(concurrent.futures, "ProcessPoolExecutor", _Counted)
    frames = _rank_batches(0, 200, 17) + _rank_batches(1, 150, 17)
    one, two = tmp_path / "a" / "e_r1", tmp_path / "b" / "e_r1"
    _write_journals(one, frames, 2)
    _write_journals(two, frames, 2)
    merge_run(one, create_svg=False, workers=1, create_graph=True)
    assert pools == []
    result = merge_run(two, create_svg=False, workers=2, create_graph=True)
    assert pools and set(pools) == {2}, "the second merge (its ranks, then its graphs) runs in pools of 2"
    assert _outputs(two) == _outputs(one)
    assert sorted(p.name for p in result.graphs) == [
        "prov_e_collection.dot",
        "prov_e_rank0.dot",
        "prov_e_rank1.dot",
    ]


def test_unknown_event_kinds_are_reported_not_silently_dropped(tmp_path: Path) -> None:
    """A batch with an event kind from a newer writer: the merge says so, and keeps the rest."""
    frames = _rank_batches(0, 5, 100)
    frames.append(encode_batch("r1", 0, "n0", 11, 8, [(99, T0, "from the future")], T0))
    root = tmp_path / "e_r1"
    _write_journals(root, frames, 1)
    result = merge_run(root, create_svg=False)
    assert any("does not know" in p and "99" in p for p in result.problems)
    assert "does not know" in result.collection.read_text()  # type: ignore[union-attr]
