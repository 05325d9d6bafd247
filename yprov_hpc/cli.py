"""The ``yprov`` command: sidecar, merge, validate, graph, report, keys.

A user's mistake (a wrong path, the wrong kind of path) is one line on stderr and exit code 2,
never a traceback.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import click

_ANY_PATH = click.Path(path_type=Path)
# files in a run directory that are not PROV documents (validate and graph skip them there)
_NOT_DOCUMENTS = frozenset({"merge_report.json"})


class UserError(click.ClickException):
    """A mistake in the command line: printed as one line, exit code 2."""

    exit_code = 2


def _runs_below(path: Path, limit: int = 10) -> list[Path]:
    found = sorted(p.parent for p in path.glob("*/journal") if p.is_dir())
    found += sorted(p.parent for p in path.glob("*/*/journal") if p.is_dir())
    return found[:limit]


def _run_dir(path: Path) -> Path:
    """``path`` if it is a run directory (it has journal/), else a UserError that lists the runs
    found below it: the likeliest slip is giving the save directory."""
    if not path.exists():
        raise UserError(f"{path}: no such directory")
    if not path.is_dir():
        raise UserError(f"{path}: not a directory (give a run directory)")
    if (path / "journal").is_dir():
        return path
    below = _runs_below(path)
    if below:
        names = ", ".join(str(p) for p in below)
        raise UserError(f"{path} is not a run directory (no journal/); runs found below it: {names}")
    raise UserError(f"{path} is not a run directory (no journal/ inside, and no runs below it)")


def _documents(paths: tuple[Path, ...]) -> list[Path]:
    """PROV-JSON files named on the command line; a run directory stands for its documents."""
    files: list[Path] = []
    for path in paths:
        if not path.exists():
            raise UserError(f"{path}: no such file or directory")
        if path.is_dir():
            docs = sorted(path.glob("prov_*.json"))
            if not docs:
                hint = " (not merged yet? run: yprov merge DIR)" if (path / "journal").is_dir() else ""
                raise UserError(f"{path}: a directory with no prov_*.json documents{hint}")
            files.extend(docs)
        elif path.name in _NOT_DOCUMENTS:
            click.echo(f"skip  {path} (the merge's report, not a PROV document)", err=True)
        else:
            files.append(path)
    if not files:
        raise UserError("no PROV documents given")
    return files


class _Group(click.Group):
    """Turns the errors a user can cause into one line: a setting (exit 2) or the file system (1)."""

    def invoke(self, ctx: click.Context) -> Any:
        from yprov_hpc.core.errors import YProvError

        try:
            return super().invoke(ctx)
        except YProvError as exc:
            raise UserError(str(exc)) from None
        except OSError as exc:
            raise click.ClickException(f"{exc.filename or ''}: {exc.strerror or exc}".lstrip(": ")) from None


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="yprov-hpc")
def main() -> None:
    """yprov-hpc: provenance of ML training runs as W3C PROV-JSON.

    Training code records with `import yprov_hpc as prov4ml`; these commands run the node
    sidecar, merge a run's journals into PROV documents, check or draw documents, write energy
    reports, and make a job's keys.
    """


@main.command(
    context_settings={"ignore_unknown_options": True, "allow_extra_args": True, "help_option_names": []},
    add_help_option=False,
)
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
def sidecar(args: tuple[str, ...]) -> None:
    """Run a node sidecar (see `yprov sidecar --help`)."""
    # The sidecar is its own process (package yprov_daemon); yprov_hpc never imports it. The
    # `yprov` command itself gets here without this module (yprov_hpc._entry).
    from yprov_hpc._entry import exec_sidecar

    exec_sidecar(args)


@main.command()
@click.argument("run_dir", type=_ANY_PATH)
@click.option("--graph/--no-graph", default=None, help="Draw DOT graphs [default: as the run asked].")
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
@click.option(
    "--part",
    "parts",
    multiple=True,
    metavar="NODE",
    help="Fold only NODE's ranks and write its part file (repeatable); 'auto': this Slurm task's "
    "share of the run's nodes. Then run --join.",
)
@click.option("--join", is_flag=True, help="Merge, taking every rank a --part folded from its part file.")
def merge(
    run_dir: Path,
    graph: bool | None,
    svg: bool | None,
    quiet: bool,
    workers: int | None,
    if_stale: bool,
    parts: tuple[str, ...],
    join: bool,
) -> None:
    """Merge RUN_DIR's journals and spools into per-rank PROV-JSON and the collection.

    Safe to re-run, and to run on partial data: missing ranks and lost events are reported
    here, in merge_report.json and in the collection document. Merges of one run take turns
    (a lock in the run's journal directory), so the last one to finish read the most.
    On N nodes, split it: `--part NODE` on each node (side by side), then `--join` once; the
    join folds itself every rank whose part is missing or stale, and writes what one merge would.
    """
    from yprov_hpc.finalize import final_merge
    from yprov_hpc.fold.series import arrow_without_pandas

    arrow_without_pandas()  # this process only merges: pyarrow's pandas check is 0.3-0.5 s of waste
    if parts and join:
        raise UserError("--part and --join are two steps: run the parts, then the join")
    if parts:
        _merge_parts(_run_dir(run_dir), parts, quiet, workers, if_stale)
        return
    outcome = final_merge(
        _run_dir(run_dir),
        by="yprov merge --join" if join else "yprov merge",
        if_stale=if_stale,
        create_graph=graph,
        create_svg=svg,
        progress=not quiet and sys.stderr.isatty(),
        workers=workers or _cores(),
        join=join,
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
        if join:
            click.echo(f"joined: {result.from_parts} rank(s) from the nodes' parts, the rest folded here")
        for line in result.parts_unusable:
            click.secho(f"part not used: {line}", fg="yellow", err=True)
        if result.collection:
            click.echo(f"collection: {result.collection}")
        for doc in result.documents:
            click.echo(f"rank document: {doc}")
    sys.exit(0 if result.documents else 1)


def _cores() -> int:
    """The cores this process may run on (a Slurm task's share, not the whole node's count)."""
    try:
        return len(os.sched_getaffinity(0)) or 1
    except (AttributeError, OSError):  # not on Linux
        return os.cpu_count() or 1


def _slurm_share(nodes: list[str]) -> list[str]:
    """This Slurm task's share of ``nodes``: every SLURM_NTASKS-th from SLURM_PROCID (all of
    them outside a step, or when either variable is not a sane number)."""
    procid, ntasks = os.environ.get("SLURM_PROCID", ""), os.environ.get("SLURM_NTASKS", "")
    if not (procid.isdigit() and ntasks.isdigit() and 0 <= int(procid) < int(ntasks) <= 1_000_000):
        return nodes
    return nodes[int(procid) :: int(ntasks)]


def _merge_parts(
    run_dir: Path, parts: tuple[str, ...], quiet: bool, workers: int | None, if_stale: bool
) -> None:
    from yprov_hpc.finalize import part_merge
    from yprov_hpc.merge import part_nodes

    nodes = _slurm_share(part_nodes(run_dir)) if parts == ("auto",) else list(parts)
    result = part_merge(run_dir, nodes, if_stale=if_stale, workers=workers or _cores())
    if not quiet and result is None:
        click.echo(f"{run_dir}: already merged from these journals; no part needed")
    elif not quiet and result is not None:
        click.echo(
            f"part {' '.join(nodes) or '(no nodes)'}: folded {len(result.documents)} rank(s) "
            f"in {result.seconds:.2f} s"
        )


@main.command()
@click.argument("files", nargs=-1, required=True, type=_ANY_PATH)
def validate(files: tuple[Path, ...]) -> None:
    """Check PROV-JSON FILES (or every document of a run directory): W3C PROV-JSON schema,
    prov parse, PROV-XML schema.

    Exits 1 if any file fails.
    """
    from yprov_hpc.prov.validate import validate_file

    failed = 0
    for path in _documents(files):
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
@click.argument("run_dir", type=_ANY_PATH)
def keys(run_dir: Path) -> None:
    """Make the job's CURVE keys in RUN_DIR/journal/keys (0700), for the sidecars' links to the
    aggregator; existing keys are kept. RUN_DIR/journal must exist (the batch script makes it):
    this command never creates the directories it is given."""
    from yprov_hpc.core.keys import make_keys
    from yprov_hpc.core.layout import RunLayout

    layout = RunLayout.open(_run_dir(run_dir))
    os.chmod(layout.journal_dir, 0o700)
    click.echo(str(make_keys(layout)))


@main.command()
@click.argument("run_dir", type=_ANY_PATH)
def report(run_dir: Path) -> None:
    """Write per-node energy reports (Markdown and HTML, with plots) and a job summary into
    RUN_DIR/report/: power per device, cumulative energy, utilisation, per-rank shares, totals,
    emissions and the method of every figure. Needs matplotlib (pip install 'yprov-hpc[report]')."""
    from yprov_hpc.read.report import write_report

    try:
        result = write_report(_run_dir(run_dir))
    except RuntimeError as exc:
        raise click.ClickException(str(exc)) from None
    for problem in result.problems:
        click.secho(f"problem: {problem}", fg="yellow", err=True)
    for path in result.files:
        if path.suffix in (".md", ".html"):
            click.echo(str(path))
    sys.exit(0 if result.files else 1)


@main.command()
@click.argument("files", nargs=-1, required=True, type=_ANY_PATH)
@click.option("--svg", is_flag=True, help="Also render SVG with Graphviz.")
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Output directory [default: next to each file].",
)
def graph(files: tuple[Path, ...], svg: bool, out: Path | None) -> None:
    """Draw PROV-JSON FILES (or every document of a run directory) as DOT (and SVG)."""
    from yprov_hpc.prov.graph import write_graphs

    if out is not None and out.exists() and not out.is_dir():
        raise UserError(f"--out {out}: exists and is not a directory")
    problems_seen = 0
    for path in _documents(files):
        written, problems = write_graphs([path], out or path.parent, svg=svg)
        for w in written:
            click.echo(str(w))
        for p in problems:
            problems_seen += 1
            click.secho(f"problem: {p}", fg="yellow", err=True)
    sys.exit(1 if problems_seen else 0)


def _slurm_scripts() -> Path:
    """The shipped Slurm scripts: inside the installed package, or scripts/slurm/ of a checkout."""
    import yprov_hpc

    package = Path(yprov_hpc.__file__).parent
    for candidate in (package / "slurm", package.parent / "scripts" / "slurm"):
        if (candidate / "yprov-job.sbatch").is_file():
            return candidate
    raise click.ClickException("the Slurm scripts are not installed with this yprov-hpc")


@main.command("slurm-template")
@click.argument("directory", type=_ANY_PATH)
@click.option("--force", is_flag=True, help="Overwrite files that exist.")
def slurm_template(directory: Path, force: bool) -> None:
    """Write the Slurm batch script (yprov-job.sbatch) and its helper (torchrun-step.sh) into
    DIRECTORY, to copy and edit; see docs/slurm.md. DIRECTORY must exist."""
    if not directory.is_dir():
        raise UserError(f"{directory}: no such directory")
    source = _slurm_scripts()
    names = [p.name for p in sorted(source.iterdir()) if p.suffix in (".sbatch", ".sh")]
    names = [n for n in names if not n.startswith("cluster-")]  # the test cluster is not for users
    clashes = [n for n in names if (directory / n).exists()]
    if clashes and not force:
        raise UserError(f"{directory}: would overwrite {', '.join(clashes)} (use --force)")
    for name in names:
        target = directory / name
        target.write_bytes((source / name).read_bytes())
        target.chmod(0o755)
        click.echo(str(target))


from yprov_hpc.read.commands import register as _register_read_commands  # noqa: E402

_register_read_commands(main)  # ls, show, compare, export (yprov_hpc/read/commands.py)

if __name__ == "__main__":
    main()
