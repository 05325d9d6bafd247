"""The ``yprov`` commands that look at runs: ``ls``, ``show``, ``compare``, ``export``, and ``top``
(a running job).

Terminal output is rich tables; ``--json`` prints one JSON document for scripts instead. A path
that is no run is one line and exit code 2 (``NotARunError`` is a ``YProvError``, which the
``yprov`` group turns into its one-line usage error). Heavy imports happen inside the commands.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

import click

__all__ = ["compare", "export", "ls", "register", "show", "top"]

_RUN = click.Path(path_type=Path)


def register(group: click.Group) -> None:
    """Add these commands to the ``yprov`` group."""
    for command in (ls, show, compare, export, top):
        group.add_command(command)


def _emit_json(obj: Any) -> None:
    import orjson

    def default(value: Any) -> Any:
        if hasattr(value, "isoformat"):
            return value.isoformat()
        if hasattr(value, "item"):  # numpy scalars
            return value.item()
        return str(value)

    data = orjson.dumps(obj, default=default, option=orjson.OPT_INDENT_2 | orjson.OPT_NON_STR_KEYS)
    click.echo(data.decode())


def _console() -> Any:
    from rich.console import Console

    return Console(width=None if sys.stdout.isatty() else 160, highlight=False)


def _fmt(value: Any) -> str:
    from yprov_hpc.read.htmlkit import fmt

    return fmt(value)


def _table(title: str, columns: list[str], rows: list[list[Any]]) -> Any:
    from rich.table import Table

    table = Table(title=title, title_justify="left", title_style="bold", min_width=len(title) + 2)
    for column in columns:
        table.add_column(column, overflow="fold")
    for row in rows:
        table.add_row(*(_fmt(v) for v in row))
    return table


@click.command(name="ls")
@click.argument("directory", type=_RUN)
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@click.option(
    "--html",
    "html_file",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Also write an index page with the table of runs (and each run's page, if missing).",
)
def ls(directory: Path, as_json: bool, html_file: Path | None) -> None:
    """List the runs in DIRECTORY (a save directory, a run directory, or a glob): id,
    experiment, status, start, duration, ranks, energy, problems."""
    from yprov_hpc.read.load import NotARunError, find_runs, load_run, run_row

    found = find_runs(directory)
    if not found:
        import glob

        if not glob.has_magic(str(directory)) and not directory.exists():
            raise NotARunError(directory, "no such file or directory")
        raise NotARunError(directory, "no runs here (no prov_*_collection.json or journal/ below it)")
    runs = [load_run(p) for p in found]
    rows = [run_row(r) for r in runs]
    if html_file is not None:
        from yprov_hpc.read.pages import write_index_page, write_run_page

        pages = {}
        for run in runs:  # a page that `yprov report` wrote (with its energy pages) is kept
            target = run.path / "report" / "index.html"
            pages[run.path] = target if target.is_file() else write_run_page(run, target)
        write_index_page(runs, html_file, pages)
    if as_json:
        _emit_json(rows)
        return
    columns = ["id", "experiment", "status", "start", "duration_s", "ranks", "energy_j", "problems"]
    _console().print(_table(f"runs in {directory}", columns, [[r[c] for c in columns] for r in rows]))


def _show_data(run: Any) -> dict[str, Any]:
    from yprov_hpc.read.load import run_fields

    summaries = run.summaries
    finals = []
    if not summaries.empty:
        lowest = summaries.sort_values("rank", kind="stable").drop_duplicates(["kind", "name", "context"])
        for row in lowest.itertuples(index=False):
            finals.append(
                {
                    "name": row.name,
                    "context": None if row.context != row.context else row.context,
                    "kind": row.kind,
                    "rank": int(row.rank),
                    "count": row.count,
                    "last_step": row.last_step,
                    "last": row.last,
                    "min": row.min,
                    "max": row.max,
                }
            )
    params = run.common_params()
    per_rank = {r: p for r, p in run.params.items() if p != params}
    return {
        **run_fields(run),
        "nodes": run.nodes,
        "end_cause": run.end_cause,
        "ranks": [
            {"rank": r.rank, "node": r.node, "status": r.status, "start": r.start, "end": r.end}
            for r in (run.ranks[k] for k in sorted(run.ranks))
        ],
        "params": params,
        "params_differing_by_rank": per_rank,
        "metrics": finals,
        "energy_j": run.energy_j,
        "energy_nodes": run.energy_nodes,
        "energy_ranks": run.energy_ranks,
        "problems": run.problems,
        "documents": [str(p) for p in run.documents],
    }


@click.command()
@click.argument("run_path", metavar="RUN", type=_RUN)
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of tables.")
def show(run_path: Path, as_json: bool) -> None:
    """One run (a run directory or its collection document): status, params, final metrics,
    energy per node and rank, problems."""
    from yprov_hpc.read.load import load_run

    data = _show_data(load_run(run_path))
    if as_json:
        _emit_json(data)
        return
    out = _console()
    out.print(f"[bold]{data['experiment']}[/bold] run {data['id']}  status: [bold]{data['status']}[/bold]")
    ended = f", ended by {data['end_cause']}" if data["end_cause"] else ""
    out.print(
        f"{data['path']}\n{_fmt(data['start'])} .. {_fmt(data['end'])} ({_fmt(data['duration_s'])} s){ended}"
    )
    ranks = [[r["rank"], r["node"], r["status"], r["start"], r["end"]] for r in data["ranks"]]
    energy = data["energy_ranks"]
    for row in ranks:
        row.append(energy.get(row[0], {}).get("energy_j"))
    out.print(_table("ranks", ["rank", "node", "status", "start", "end", "energy (J)"], ranks))
    out.print(_table("params", ["param", "value"], [[k, v] for k, v in data["params"].items()]))
    for rank, params in data["params_differing_by_rank"].items():
        out.print(_table(f"params of rank {rank}", ["param", "value"], [[k, v] for k, v in params.items()]))
    cols = ["name", "context", "rank", "count", "last step", "last", "min", "max"]
    keys = ["name", "context", "rank", "count", "last_step", "last", "min", "max"]
    out.print(_table("final metrics", cols, [[m[k] for k in keys] for m in data["metrics"]]))
    node_cols = [
        "energy_j",
        "cpu_dram_energy_j",
        "gpu_energy_j",
        "other_energy_j",
        "emissions_kg",
        "cpu_method",
    ]
    out.print(
        _table(
            f"energy per node (job total {_fmt(data['energy_j'])} J)",
            ["node", "energy (J)", "CPU+DRAM (J)", "GPU (J)", "other (J)", "kg CO2eq", "method"],
            [[n, *(e.get(c) for c in node_cols)] for n, e in data["energy_nodes"].items()],
        )
    )
    for problem in data["problems"]:
        out.print(f"[yellow]problem:[/yellow] {problem}")
    if not data["problems"]:
        out.print("no problems recorded")


@click.command()
@click.argument("runs", nargs=-1, required=True, metavar="RUN RUN...", type=_RUN)
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of tables.")
@click.option("--html", "html_file", type=click.Path(dir_okay=False, path_type=Path), help="Write a page.")
@click.option("--all-params", is_flag=True, help="Show every param, not only those that differ.")
def compare(runs: tuple[Path, ...], as_json: bool, html_file: Path | None, all_params: bool) -> None:
    """Compare runs: params that differ, final metrics, energy; --html FILE writes a page with
    the runs' metric curves overlaid."""
    from yprov_hpc.read.compare import compare_runs

    if len(runs) < 2:
        raise click.UsageError("give at least two runs to compare")
    comparison = compare_runs(list(runs))
    if html_file is not None:
        from yprov_hpc.read.pages import write_compare_page

        write_compare_page(comparison, html_file)
    if as_json:
        data = comparison.as_dict()
        if html_file is not None:
            data["html"] = str(html_file)
        _emit_json(data)
        return
    out = _console()
    labels = comparison.labels
    runs_rows = [
        [label, r.experiment, r.status, r.start, r.duration_s, len(r.ranks), r.energy_j]
        for label, r in zip(labels, comparison.runs, strict=True)
    ]
    out.print(
        _table(
            "runs", ["run", "experiment", "status", "start", "duration_s", "ranks", "energy (J)"], runs_rows
        )
    )
    keys = list(comparison.params) if all_params else comparison.differing
    title = "params" if all_params else f"params that differ ({len(keys)} of {len(comparison.params)})"
    out.print(_table(title, ["param", *labels], [[k, *comparison.params[k]] for k in keys]))
    metric_rows = [[n, c, *v] for (n, c), v in comparison.metrics.items()]
    out.print(_table("final metrics", ["metric", "context", *labels], metric_rows))
    if html_file is not None:
        out.print(f"page: {html_file}")


@click.group()
def export() -> None:
    """Export a run to other tools: MLflow, RO-Crate."""


@export.command(name="mlflow")
@click.argument("run_path", metavar="RUN", type=_RUN)
@click.option("--tracking-uri", required=True, help="MLflow tracking URI (e.g. sqlite:///mlflow.db).")
@click.option("--experiment", "experiment_name", default=None, help="MLflow experiment [default: the run's].")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def export_mlflow_command(
    run_path: Path, tracking_uri: str, experiment_name: str | None, as_json: bool
) -> None:
    """Write RUN's params, metrics (with steps), tags and artifacts to MLflow through its client."""
    from yprov_hpc.read.export_mlflow import export_mlflow

    result = export_mlflow(run_path, tracking_uri, experiment_name=experiment_name)
    if as_json:
        _emit_json(result)
        return
    click.echo(f"MLflow run {result['run_id']} in experiment {result['experiment_id']} at {tracking_uri}")
    for rank, child in result["rank_runs"].items():
        click.echo(f"  rank {rank}: run {child}")


@export.command(name="rocrate")
@click.argument("run_path", metavar="RUN", type=_RUN)
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def export_rocrate_command(run_path: Path, as_json: bool) -> None:
    """Make RUN an RO-Crate in place: ro-crate-metadata.json describing its documents, series,
    artifacts and environment (written with the rocrate library)."""
    from yprov_hpc.read.export_rocrate import export_rocrate
    from yprov_hpc.read.load import load_run

    metadata = export_rocrate(load_run(run_path).path)
    if as_json:
        _emit_json({"metadata": str(metadata)})
        return
    click.echo(str(metadata))


@export.command(name="card")
@click.argument("run_path", metavar="RUN", type=_RUN)
def export_card_command(run_path: Path) -> None:
    """Write RUN/MODEL_CARD.md: model versions, datasets, params, final metrics, energy, status
    and problems, as the run's documents record them."""
    from yprov_hpc.read.export_card import export_card

    click.echo(str(export_card(run_path)))


@click.command()
@click.argument("run_path", metavar="RUN_DIR", type=_RUN)
@click.option("--metric", "-m", "metrics", multiple=True, help="A metric to show per rank (repeatable).")
@click.option("--interval", type=click.FloatRange(min=0.2), default=1.0, show_default=True, help="Seconds.")
@click.option("--once", is_flag=True, help="Print one snapshot and exit.")
@click.option("--json", "as_json", is_flag=True, help="Print one snapshot as JSON and exit.")
def top(run_path: Path, metrics: tuple[str, ...], interval: float, once: bool, as_json: bool) -> None:
    """A running job, refreshing in place: per node the sidecar, events per second, batches not
    acked, spool bytes and power; per rank whether it is alive, its last step and the latest
    value of each --metric (default: the first three it logged). Reads the status files the
    sidecars rewrite every sample interval in RUN_DIR/journal/, so it works from a login node."""
    import dataclasses

    from yprov_hpc.read.live import read_status, status_table

    if not run_path.is_dir():
        raise click.UsageError(f"{run_path}: no such directory")
    nodes = read_status(run_path)
    if as_json:
        _emit_json({"nodes": [dataclasses.asdict(n) for n in nodes]})
        return
    if not metrics:
        seen = [m for n in nodes for r in n.ranks.values() for m in r["metrics"]]
        metrics = tuple(dict.fromkeys(seen))[:3]
    if once or not sys.stdout.isatty():
        if not nodes:
            click.echo(f"{run_path}: no live sidecar status (the job has not started, or ended)")
            return
        _console().print(status_table(nodes, metrics))
        return
    from rich.live import Live

    with Live(status_table(nodes, metrics), refresh_per_second=4, screen=False) as live:
        try:
            while True:
                time.sleep(interval)
                live.update(status_table(read_status(run_path), metrics))
        except KeyboardInterrupt:
            return
