"""The sidecar's command line, checked at start: bad settings fail fast, before binding."""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import click

from yprov_hpc.layout import RunLayout
from yprov_hpc.ranks import node_name

from .sidecar import Sidecar, SidecarSettings


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--run-dir",
    type=click.Path(file_okay=False, path_type=Path),
    required=True,
    help="The run directory (<save dir>/<experiment>_<run id>); created if missing.",
)
@click.option("--node", default=None, help="This node's name [default: Slurm's node name or host name].")
@click.option(
    "--endpoint",
    default=None,
    help="ZeroMQ endpoint to bind [default: an ipc socket in the run's private journal dir].",
)
@click.option(
    "--embedded",
    is_flag=True,
    help="Exit by itself once every rank that said hello has said bye or died (what start_run uses).",
)
@click.option(
    "--idle-timeout",
    "idle_timeout_s",
    type=click.FloatRange(min=0.1),
    default=120.0,
    show_default=True,
    help="Embedded mode: exit if no rank says hello within this many seconds.",
)
def main(
    run_dir: Path, node: str | None, endpoint: str | None, embedded: bool, idle_timeout_s: float
) -> None:
    """Run the node's sidecar: receive the ranks' event batches, journal them, ack them.

    One sidecar serves every rank of a node. It binds in the run's private (0700) journal
    directory, writes `sidecar-<node>.json` there once ready, journals every batch before
    acking it, and on SIGTERM/SIGINT drains, fsyncs and exits 0.
    """
    logging.basicConfig(level=logging.INFO, format="%(asctime)s yprov-sidecar %(levelname)s %(message)s")
    node = node or node_name()
    run_dir = run_dir.absolute()
    if not run_dir.name or "_" not in run_dir.name:
        click.echo(f"warning: {run_dir} is not named <experiment>_<run id>", err=True)
    layout = RunLayout(run_dir, run_dir.name.rsplit("_", 1)[0])
    layout.journal_dir.mkdir(parents=True, exist_ok=True)
    layout.journal_dir.chmod(0o700)
    settings = SidecarSettings(
        layout=layout,
        node=node,
        endpoint=endpoint or layout.ipc_endpoint(node),
        embedded=embedded,
        idle_timeout_s=idle_timeout_s,
    )
    sys.exit(Sidecar(settings).serve())
