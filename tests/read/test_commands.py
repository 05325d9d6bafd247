"""yprov ls, show and compare on real runs: tables, --json, and one-line errors with exit 2."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from yprov_hpc.cli import main
from yprov_hpc.read.load import load_run


def _run(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, list(args), catch_exceptions=False)
    return result.exit_code, result.stdout, result.stderr


def test_ls_shows_a_table_of_the_runs(runs_dir: Path) -> None:
    """yprov ls DIR prints one table row per run with its status."""
    code, out, _ = _run("ls", str(runs_dir))
    assert code == 0
    rows = [line for line in out.splitlines() if line.startswith("│")]
    assert [row.split("│")[1].strip() for row in rows] == ["r1", "r2"]
    assert "failed" in rows[1] and "finished" in rows[0]


def test_ls_json_gives_one_object_per_run(runs_dir: Path) -> None:
    """yprov ls --json prints every run's row, params and final metrics included."""
    code, out, _ = _run("ls", str(runs_dir), "--json")
    rows = json.loads(out)
    assert code == 0
    assert [(r["id"], r["params.lr"]) for r in rows] == [("r1", 0.1), ("r2", 0.05)]
    assert isinstance(rows[0]["metrics.loss[training]"], float)


def test_show_prints_params_metrics_energy_and_status(run2: Path) -> None:
    """yprov show RUN prints the run's status, each rank's status, params, final metrics, energy."""
    code, out, _ = _run("show", str(run2))
    assert code == 0
    assert "status: failed" in out
    assert "params" in out and "0.05" in out
    assert "final metrics" in out and "accuracy" in out
    assert "energy per node" in out


def test_show_json_has_the_ranks_and_problems(run2: Path) -> None:
    """yprov show --json gives each rank's status, the params and the problems list."""
    data = json.loads(_run("show", str(run2), "--json")[1])
    assert [r["status"] for r in data["ranks"]] == ["finished", "failed"]
    assert data["params"]["lr"] == 0.05
    assert data["problems"] == load_run(run2).problems
    assert {m["name"] for m in data["metrics"]} >= {"loss", "accuracy", "epoch"}


def test_compare_shows_only_the_params_that_differ(run1: Path, run2: Path) -> None:
    """yprov compare lists lr (different) and not epochs (the same)."""
    code, out, _ = _run("compare", str(run1), str(run2))
    assert code == 0
    assert "params that differ (1 of 4)" in out
    param_rows = out.split("params that differ")[1].split("final metrics")[0]
    assert "lr" in param_rows and "epochs" not in param_rows


def test_compare_json_joins_metrics_by_name_and_context(run1: Path, run2: Path) -> None:
    """yprov compare --json gives one final value per run for each (name, context)."""
    data = json.loads(_run("compare", str(run1), str(run2), "--json")[1])
    assert data["params_differing"] == ["lr"]
    loss = next(m for m in data["metrics"] if (m["name"], m["context"]) == ("loss", "training"))
    assert len(loss["final"]) == 2 and all(isinstance(v, float) for v in loss["final"])


@pytest.mark.parametrize("command", [["ls"], ["show"], ["compare", "RUN"], ["export", "rocrate"]])
def test_a_wrong_path_is_one_line_and_exit_2(command: list[str], run1: Path, tmp_path: Path) -> None:
    """Every read command given a path that does not exist says so in one line, exit code 2."""
    args = [str(run1) if a == "RUN" else a for a in command]
    code, _, err = _run(*args, str(tmp_path / "nope"))
    assert code == 2
    assert err.strip().count("\n") == 0 and "no such file or directory" in err


def test_show_of_a_directory_without_a_run_is_exit_2(tmp_path: Path) -> None:
    """A directory that holds no run is one line, exit code 2."""
    code, _, err = _run("show", str(tmp_path))
    assert code == 2 and "not a run directory" in err
