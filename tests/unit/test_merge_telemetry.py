"""The merge's telemetry: what was not measured says so (never 0), and holes in a node's sample
stream are reported as telemetry gaps in merge_report.json, the collection and the problems."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from yprov_hpc.merge import merge_run
from yprov_hpc.wire.codec import encode_batch
from yprov_hpc.wire.journal import JournalWriter
from yprov_hpc.wire.records import NODE_RANK, Kind

T0 = 1_780_000_000_000_000_000
S = 1_000_000_000


def _rank_events(end_s: int) -> list[tuple[Any, ...]]:
    start = {"run_id": "r1", "experiment": "e", "rank": 0, "world_size": 1, "node": "n0"}
    return [
        (int(Kind.RUN_START), T0, start),
        (int(Kind.METRIC), T0 + S, "loss", 0.5, None, 0),
        (int(Kind.RUN_END), T0 + end_s * S, "finished", {}),
    ]


def _sample(t_s: int) -> tuple[Any, ...]:
    ranks = {"0": {"pid": 100, "cpu_s": t_s / 2, "local_rank": 0}}
    values = {"cpu_busy_s": float(t_s), "cpu_percent": 50.0, "ranks": ranks}
    return (int(Kind.SAMPLE), T0 + t_s * S, "system", values)


def _merge(root: Path, samples_at_s: list[int], end_s: int = 20) -> Any:
    (root / "journal").mkdir(parents=True)
    writer = JournalWriter(root / "journal" / "node-n0.journal")
    writer.append(*encode_batch("r1", 0, "n0", 1, 0, _rank_events(end_s), T0))
    if samples_at_s:
        events = [_sample(t) for t in samples_at_s]
        writer.append(*encode_batch("r1", NODE_RANK, "n0", 2, 0, events, T0))
    writer.close()
    return merge_run(root, create_svg=False)


def _literal(value: Any) -> Any:
    return value["$"] if isinstance(value, dict) and "$" in value else value


def test_energy_without_samples_is_not_measured_never_zero(tmp_path: Path) -> None:
    """No node samples at all: the rank's energy and the job's have no figure, and say why; with
    no samples anywhere telemetry was off, which is not a gap."""
    root = tmp_path / "e_r1"
    result = _merge(root, [])
    doc = json.loads((root / "prov_e_rank0.json").read_text())
    energy = doc["entity"]["run:rank0.energy"]
    assert "yprov:energy_j" not in energy and energy["yprov:energy_status"].startswith("not measured")
    coll = json.loads(result.collection.read_text())
    assert "yprov:energy_j" not in coll["entity"]["run:collection"]
    assert coll["entity"]["run:collection"]["yprov:energy_status"].startswith("not measured")
    assert json.loads((root / "merge_report.json").read_text())["telemetry_gaps"] == []  # telemetry was off


def test_a_node_without_samples_beside_one_with_samples_is_a_gap(tmp_path: Path) -> None:
    """Node n1 has a rank but no samples while n0 has them: n1's sidecar was gone all along."""
    root = tmp_path / "e_r1"
    (root / "journal").mkdir(parents=True)
    writer = JournalWriter(root / "journal" / "node-n0.journal")
    for rank, node in ((0, "n0"), (1, "n1")):
        events = _rank_events(20)
        events[0] = (int(Kind.RUN_START), T0, {**events[0][2], "rank": rank, "node": node, "world_size": 2})
        writer.append(*encode_batch("r1", rank, node, 1 + rank, 0, events, T0))
    writer.append(*encode_batch("r1", NODE_RANK, "n0", 9, 0, [_sample(t) for t in range(21)], T0))
    writer.close()
    result = merge_run(root, create_svg=False)
    assert result.telemetry_gaps == [
        {"node": "n1", "from_ts_ns": T0, "to_ts_ns": T0 + 20 * S, "reason": "no samples from this node"}
    ]
    coll = json.loads(result.collection.read_text())
    assert coll["entity"]["run:node.n1"]["yprov:energy_status"].startswith("not measured")


def test_a_hole_and_an_early_stop_are_gaps_in_the_report_and_the_collection(tmp_path: Path) -> None:
    """Samples at 0-3 s and 9-10 s of a 20 s run: a hole and a stop, with their times, everywhere."""
    root = tmp_path / "e_r1"
    result = _merge(root, [0, 1, 2, 3, 9, 10])
    report = json.loads((root / "merge_report.json").read_text())
    spans = [(g["from_ts_ns"] - T0, g["to_ts_ns"] - T0) for g in report["telemetry_gaps"]]
    assert spans == [(3 * S, 9 * S), (10 * S, 20 * S)]
    assert sum("telemetry gap" in p for p in report["problems"]) == 2
    coll = json.loads(result.collection.read_text())
    node = coll["entity"]["run:node.n0"]
    assert len(json.loads(node["yprov:telemetry_gaps"])) == 2
    assert node["yprov:energy_status"].startswith("partially measured")


def test_a_steady_stream_has_no_gaps_and_is_measured(tmp_path: Path) -> None:
    """A sample every second through the whole run: no gap, the energy measured."""
    root = tmp_path / "e_r1"
    result = _merge(root, list(range(21)))
    assert result.telemetry_gaps == []
    coll = json.loads(result.collection.read_text())
    assert coll["entity"]["run:node.n0"]["yprov:energy_status"] == "measured"
    assert float(_literal(coll["entity"]["run:collection"]["yprov:energy_j"])) > 0
