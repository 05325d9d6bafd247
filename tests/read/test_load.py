"""load_run and load_runs on real runs: typed params, metrics from Parquet, status, energy,
problems, and untrusted files reported instead of raised."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from yprov_hpc.read.load import METRIC_COLUMNS, NotARunError, load_run, load_runs


def test_params_per_rank_are_typed_python_values(run1: Path) -> None:
    """Params come back as int, float, bool and str, for every rank."""
    run = load_run(run1)
    assert sorted(run.params) == [0, 1]
    assert run.params[1] == {"lr": 0.1, "epochs": 4, "model": "linear", "shuffle": True}
    assert type(run.params[0]["epochs"]) is int and type(run.params[0]["shuffle"]) is bool


def test_metrics_are_a_dataframe_of_every_rank_from_parquet(run1: Path) -> None:
    """metrics has the documented columns and every logged loss point of both ranks."""
    metrics = load_run(run1).metrics
    assert list(metrics.columns) == METRIC_COLUMNS
    loss = metrics[(metrics["name"] == "loss") & (metrics["context"] == "training")]
    assert loss.groupby("rank").size().to_dict() == {0: 100, 1: 100}
    assert sorted(loss[loss["rank"] == 0]["step"]) == list(range(1, 101))
    assert str(metrics["time"].dtype) == "datetime64[ns, UTC]"


def test_summaries_agree_with_the_series(run1: Path) -> None:
    """The documents' last value of each series equals the Parquet series' last point."""
    run = load_run(run1)
    s = run.summaries
    for rank in (0, 1):
        row = s[(s["rank"] == rank) & (s["name"] == "loss")].iloc[0]
        points = run.metrics[(run.metrics["rank"] == rank) & (run.metrics["name"] == "loss")]
        assert row["count"] == len(points)
        assert row["last"] == points.sort_values("time")["value"].iloc[-1]


def test_status_is_failed_when_a_rank_failed(run2: Path) -> None:
    """A run with one failed rank has status failed, and each rank keeps its own status."""
    run = load_run(run2)
    assert run.status == "failed"
    assert {r: info.status for r, info in run.ranks.items()} == {0: "finished", 1: "failed"}


def test_energy_per_node_and_per_rank(run1: Path) -> None:
    """Each node has its total, ranks' shares and other energy (adding up); each rank its share."""
    run = load_run(run1)
    (node,) = run.energy_nodes.values()
    assert node["energy_j"] > 0
    assert math.isclose(node["ranks_energy_j"] + node["other_energy_j"], node["energy_j"], rel_tol=1e-6)
    assert run.energy_j == pytest.approx(node["energy_j"])
    assert sorted(run.energy_ranks) == [0, 1]
    assert all(0 <= e["energy_j"] <= node["energy_j"] for e in run.energy_ranks.values())


def test_environment_per_rank(run1: Path) -> None:
    """Each rank's environment file is read (command line, Python version)."""
    env = load_run(run1).environment
    assert sorted(env) == [0, 1]
    assert "train_rank.py" in " ".join(env[1]["command"])
    assert env[0]["python_version"].count(".") == 2


def test_system_series_of_the_node(run1: Path) -> None:
    """system() returns the node's samples, with one device per rank."""
    system = load_run(run1).system()
    assert {"node", "rank:0", "rank:1"} <= set(system["device"])
    assert len(system[system["metric"] == "cpu_percent"]) >= 2


def test_a_collection_file_loads_the_same_run(run1: Path) -> None:
    """Giving the collection document instead of the directory loads the same run."""
    by_file = load_run(run1 / "prov_exp_collection.json")
    assert (by_file.id, by_file.path, by_file.params) == ("r1", run1, load_run(run1).params)


def test_merge_report_problems_are_reported(run_copy: Path) -> None:
    """The problems the merge listed in merge_report.json are the run's problems."""
    path = run_copy / "merge_report.json"
    report = json.loads(path.read_text())
    report["problems"] = ["rank 1: 5 events missing (gaps [[5, 9]])", "journal node-x.journal: torn tail cut"]
    path.write_text(json.dumps(report))
    problems = load_run(run_copy).problems
    assert problems[:2] == [
        "merge: rank 1: 5 events missing (gaps [[5, 9]])",
        "merge: journal node-x.journal: torn tail cut",
    ]


def test_a_report_without_a_problem_list_still_shows_losses(run_copy: Path) -> None:
    """Missing ranks and gaps are read from the report's fields when it lists no problems."""
    path = run_copy / "merge_report.json"
    report = json.loads(path.read_text())
    del report["problems"]
    report["missing_ranks"] = [7]
    report["ranks"]["1"]["gaps"] = [[5, 9]]
    path.write_text(json.dumps(report))
    problems = load_run(run_copy).problems
    assert "ranks missing: 7" in problems
    assert any(p.startswith("rank 1: events lost in gaps") for p in problems)


def test_a_broken_rank_document_is_a_problem_not_a_traceback(run_copy: Path) -> None:
    """A rank document that is not JSON is reported and the other rank still loads."""
    (run_copy / "prov_exp_rank1.json").write_text("{not json")
    run = load_run(run_copy)
    assert any(p.startswith("prov_exp_rank1.json: not JSON") for p in run.problems)
    assert run.ranks[1].status == "unreadable document"
    assert run.params[0]["lr"] == 0.1


def test_a_broken_series_file_is_a_problem(run_copy: Path) -> None:
    """A truncated Parquet file leaves that rank out of metrics, with a problem."""
    path = run_copy / "metrics" / "rank0.parquet"
    path.write_bytes(path.read_bytes()[:100])
    run = load_run(run_copy)
    assert set(run.metrics["rank"]) == {1}
    assert any(p.startswith("rank0.parquet: not a readable Parquet file") for p in run.problems)


def test_a_series_path_outside_the_run_is_ignored(run_copy: Path) -> None:
    """A document pointing its series file outside the run directory is not followed."""
    path = run_copy / "prov_exp_rank0.json"
    path.write_text(path.read_text().replace('"metrics/rank0.parquet"', '"../../../etc/passwd"'))
    run = load_run(run_copy)
    assert 0 not in run.series
    assert any("outside the run" in p for p in run.problems)


def test_a_changed_series_file_is_reported(run_copy: Path) -> None:
    """A series file whose sha256 differs from the document's is reported when read."""
    other = run_copy.parent.parent / "other.parquet"
    src = run_copy / "metrics" / "rank1.parquet"
    other.write_bytes(src.read_bytes())
    (run_copy / "metrics" / "rank0.parquet").write_bytes(other.read_bytes())
    run = load_run(run_copy)
    _ = run.metrics
    assert any(p.startswith("rank0.parquet: changed since the merge") for p in run.problems)


def test_an_unmerged_run_directory_loads_as_not_merged(tmp_path: Path) -> None:
    """A run directory with journals but no documents has status "not merged" and says why."""
    (tmp_path / "exp_r9" / "journal").mkdir(parents=True)
    run = load_run(tmp_path / "exp_r9")
    assert run.status == "not merged"
    assert run.problems[0].startswith("not merged yet")


def test_a_path_that_is_no_run_raises_a_typed_error(tmp_path: Path) -> None:
    """A missing path and a directory without a run raise NotARunError naming the path."""
    with pytest.raises(NotARunError, match="no such file"):
        load_run(tmp_path / "nope")
    with pytest.raises(NotARunError, match="not a run directory"):
        load_run(tmp_path)


def test_load_runs_gives_one_row_per_run(runs_dir: Path) -> None:
    """load_runs on the save directory: one row per run, params and final metrics as columns."""
    table = load_runs(runs_dir)
    assert list(table["id"]) == ["r1", "r2"]
    assert list(table["status"]) == ["finished", "failed"]
    assert list(table["params.lr"]) == [0.1, 0.05]
    assert table["metrics.loss[training]"].notna().all()
    assert (table["ranks"] == 2).all()


def test_load_runs_takes_a_glob(runs_dir: Path) -> None:
    """A glob pattern selects the runs it matches."""
    table = load_runs(str(runs_dir / "*_r2"))
    assert list(table["id"]) == ["r2"]


def test_end_cause_of_a_batch_job_is_read(run_copy: Path) -> None:
    """The job's recorded end cause (a Slurm time limit, say) is on the loaded run."""
    path = run_copy / "prov_exp_collection.json"
    doc = json.loads(path.read_text())
    (job,) = [a for a in doc["activity"].values() if a["prov:type"]["$"] == "yprov:Job"]
    job["yprov:end_cause"] = "time limit"
    path.write_text(json.dumps(doc))
    assert load_run(run_copy).end_cause == "time limit"


def test_thinned_metrics_bound_each_series_and_keep_its_last_point(run1: Path) -> None:
    """thinned_metrics(10) keeps at most about 10 loss points per rank, the last step included."""
    run = load_run(run1)
    thin = run.thinned_metrics(10)
    loss = thin[(thin["name"] == "loss") & (thin["rank"] == 0)]
    assert 5 <= len(loss) <= 11 and loss["step"].max() == 100
    accuracy = thin[(thin["name"] == "accuracy") & (thin["rank"] == 0)]
    assert len(accuracy) == 4  # shorter than the bound: untouched
