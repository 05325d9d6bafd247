"""The ``yprov`` command: sidecar, merge, validate, graph."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import click

_FILES = click.Path(exists=True, dir_okay=False, path_type=Path)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="yprov-hpc")
def main() -> None:
    """yprov-hpc: provenance of ML training runs as W3C PROV-JSON.

    Training code records with `import yprov_hpc as prov4ml`; these commands run the node
    sidecar, merge a run's journals into PROV documents, and check or draw documents.
    """


@main.command(
    context_settings={"ignore_unknown_options": True, "allow_extra_args": True, "help_option_names": []},
    add_help_option=False,
)
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
def sidecar(args: tuple[str, ...]) -> None:
    """Run a node sidecar (see `yprov sidecar --help`)."""
    # The sidecar is its own process (package yprov_daemon); yprov_hpc never imports it.
    os.execv(sys.executable, [sys.executable, "-m", "yprov_daemon", *args])


@main.command()
@click.argument("run_dir", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--svg/--no-svg", default=None, help="Render SVG graphs [default: as the run asked].")
@click.option("--quiet", "-q", is_flag=True, help="Print only problems.")
@click.option(
    "--workers",
    "-j",
    type=click.IntRange(min=1),
    default=None,
    help="Worker processes for the ranks [default: one per CPU core].",
)
@click.option(
    "--if-stale",
    is_flag=True,
    help="Do nothing if the journals are unchanged since the last recorded merge.",
)
def merge(run_dir: Path, svg: bool | None, quiet: bool, workers: int | None, if_stale: bool) -> None:
    """Merge RUN_DIR's journals and spools into per-rank PROV-JSON and the collection.

    Safe to re-run, and to run on partial data: missing ranks and lost events are reported
    here, in merge_report.json and in the collection document. Merges of one run take turns
    (a lock in the run's journal directory), so the last one to finish read the most.
    """
    from yprov_hpc.finalize import final_merge

    outcome = final_merge(
        run_dir,
        by="yprov merge",
        if_stale=if_stale,
        create_svg=svg,
        progress=not quiet and sys.stderr.isatty(),
        workers=workers or os.cpu_count() or 1,
    )
    if outcome.skipped:
        if not quiet:
            gen = outcome.state.generation if outcome.state is not None else 0
            click.echo(f"{run_dir}: already merged from these journals (generation {gen})")
        sys.exit(0)
    result = outcome.result
    assert result is not None
    for problem in result.problems:
        click.secho(f"problem: {problem}", fg="yellow", err=True)
    if not quiet:
        events = sum(d.events for d in result.ranks.values())
        click.echo(f"merged {len(result.documents)} rank(s), {events} events in {result.seconds:.2f} s")
        if result.collection:
            click.echo(f"collection: {result.collection}")
        for doc in result.documents:
            click.echo(f"rank document: {doc}")
    sys.exit(0 if result.documents else 1)


@main.command()
@click.argument("files", nargs=-1, required=True, type=_FILES)
def validate(files: tuple[Path, ...]) -> None:
    """Check PROV-JSON FILES: W3C PROV-JSON schema, prov parse, PROV-XML schema.

    Exits 1 if any file fails.
    """
    from yprov_hpc.prov.validate import validate_file

    failed = 0
    for path in files:
        result = validate_file(path)
        if result.ok:
            click.echo(f"ok    {path} ({result.records} records)")
        else:
            failed += 1
            click.secho(f"FAIL  {path}", fg="red")
            for error in result.errors:
                click.echo(f"      {error}")
    sys.exit(1 if failed else 0)


@main.command()
@click.argument("run_dir", type=click.Path(file_okay=False, path_type=Path))
def keys(run_dir: Path) -> None:
    """Make the job's CURVE keys in RUN_DIR/journal/keys (0700), for the sidecars' links to the
    aggregator; existing keys are kept. Batch scripts run this before starting the sidecars."""
    from yprov_hpc.core.keys import make_keys
    from yprov_hpc.core.layout import RunLayout

    layout = RunLayout.open(run_dir)
    layout.journal_dir.mkdir(parents=True, exist_ok=True)
    os.chmod(layout.journal_dir, 0o700)
    click.echo(str(make_keys(layout)))


@main.command()
@click.argument("run_dir", type=click.Path(exists=True, file_okay=False, path_type=Path))
def report(run_dir: Path) -> None:
    """Write per-node energy reports (Markdown and HTML, with plots) and a job summary into
    RUN_DIR/report/: power per device, cumulative energy, utilisation, per-rank shares, totals,
    emissions and the method of every figure. Needs matplotlib (pip install 'yprov-hpc[report]')."""
    from yprov_hpc.read.report import write_report

    try:
        result = write_report(run_dir)
    except RuntimeError as exc:
        raise click.ClickException(str(exc)) from None
    for problem in result.problems:
        click.secho(f"problem: {problem}", fg="yellow", err=True)
    for path in result.files:
        if path.suffix in (".md", ".html"):
            click.echo(str(path))
    sys.exit(0 if result.files else 1)


@main.command()
@click.argument("files", nargs=-1, required=True, type=_FILES)
@click.option("--svg", is_flag=True, help="Also render SVG with Graphviz.")
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Output directory [default: next to each file].",
)
def graph(files: tuple[Path, ...], svg: bool, out: Path | None) -> None:
    """Draw PROV-JSON FILES as DOT (and SVG)."""
    from yprov_hpc.prov.graph import write_graphs

    problems_seen = 0
    for path in files:
        written, problems = write_graphs([path], out or path.parent, svg=svg)
        for w in written:
            click.echo(str(w))
        for p in problems:
            problems_seen += 1
            click.secho(f"problem: {p}", fg="yellow", err=True)
    sys.exit(1 if problems_seen else 0)


if __name__ == "__main__":
    main()
