"""The sidecar's command line, checked at start: bad settings fail fast, before binding."""

from __future__ import annotations

import importlib
import logging
import signal
import sys
from pathlib import Path

import click

from yprov_hpc.core.config import (
    ENV_AGGREGATE,
    ENV_FORWARD,
    ENV_NVML_MODULE,
    ENV_RAPL_ROOT,
    ENV_SAMPLE_INTERVAL_S,
    ENV_SAMPLERS,
    ENV_SIDECAR_ON_SIGTERM,
    SIGTERM_MODES,
    check_environment,
)
from yprov_hpc.core.errors import ConfigError
from yprov_hpc.core.layout import RunLayout
from yprov_hpc.rank.discovery import in_slurm_step, node_name

from .early import STOP_SIGNALS, WARNING_SIGNALS
from .sidecar import Sidecar, SidecarSettings

_KNOWN_SAMPLERS = ("system", "rapl", "nvml")


def _sampler_names(text: str) -> tuple[str, ...]:
    names = tuple(n.strip() for n in text.split(",") if n.strip() and n.strip() != "none")
    unknown = [n for n in names if n not in _KNOWN_SAMPLERS]
    if unknown:
        raise click.BadParameter(f"unknown sampler(s) {unknown}; choose from {list(_KNOWN_SAMPLERS)}")
    return names


def run() -> None:
    """``python -m yprov_daemon``: every YPROV_* variable is checked before the options are
    parsed, so that a bad one (several are option defaults) is named by its variable: one line
    on stderr (the sidecar log, for an embedded sidecar, which the rank names) and exit code 2."""
    try:
        check_environment()
    except ConfigError as exc:
        click.echo(f"yprov sidecar: {exc}", err=True)
        sys.exit(2)
    main(prog_name="yprov sidecar")


def _check_settings(nvml_module: str | None) -> None:
    """The NVML module, if one is named, imported before the sidecar binds or says it is ready
    (exit code 2 if it cannot be)."""
    if nvml_module:
        try:
            importlib.import_module(nvml_module)
        except Exception as exc:  # ImportError, or whatever the module raises on import
            click.echo(
                f"yprov sidecar: {ENV_NVML_MODULE}/--nvml-module {nvml_module!r}: cannot import: {exc}",
                err=True,
            )
            sys.exit(2)


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
    help="Exit by itself once every rank that said hello has said bye or died, then run the final "
    "merge if every rank of the world ended (what start_run uses).",
)
@click.option(
    "--idle-timeout",
    "idle_timeout_s",
    type=click.FloatRange(min=0.1),
    default=120.0,
    show_default=True,
    help="Embedded mode: exit if no rank says hello within this many seconds (or, when a rank gave "
    "no pid, if nothing arrives for that long).",
)
@click.option(
    "--interval",
    "interval_s",
    type=click.FloatRange(min=0.1),
    default=1.0,
    show_default=True,
    envvar=ENV_SAMPLE_INTERVAL_S,
    help=f"Seconds between node samples (${ENV_SAMPLE_INTERVAL_S}).",
)
@click.option(
    "--samplers",
    default="system,rapl,nvml",
    show_default=True,
    envvar=ENV_SAMPLERS,
    help=f"Comma-separated samplers to try, or 'none' (${ENV_SAMPLERS}). A source that cannot be "
    "read here is skipped with one warning.",
)
@click.option(
    "--rapl-root",
    type=click.Path(path_type=Path),
    default="/sys/class/powercap",
    show_default=True,
    envvar=ENV_RAPL_ROOT,
    help=f"Where the powercap tree is (${ENV_RAPL_ROOT}).",
)
@click.option(
    "--nvml-module",
    default=None,
    envvar=ENV_NVML_MODULE,
    help=f"Python module providing the NVML API [default: pynvml] (${ENV_NVML_MODULE}).",
)
@click.option(
    "--on-sigterm",
    type=click.Choice(SIGTERM_MODES),
    default="auto",
    show_default=True,
    envvar=ENV_SIDECAR_ON_SIGTERM,
    help="SIGTERM: 'stop' (drain, fsync, exit), or 'wait': the job is ending, serve this node's "
    "ranks until they have ended, then stop (SIGINT always stops at once). 'auto': wait inside a "
    f"Slurm step, where Slurm signals every step at once and SIGKILL follows (${ENV_SIDECAR_ON_SIGTERM}).",
)
@click.option(
    "--aggregate",
    default=None,
    envvar=ENV_AGGREGATE,
    help=f"Also be the job's aggregator, bound here, e.g. tcp://*:5600 (${ENV_AGGREGATE}).",
)
@click.option(
    "--forward",
    default=None,
    envvar=ENV_FORWARD,
    help=f"Forward every journaled batch to the aggregator here, e.g. tcp://node1:5600 (${ENV_FORWARD}).",
)
def main(
    run_dir: Path,
    node: str | None,
    endpoint: str | None,
    embedded: bool,
    idle_timeout_s: float,
    interval_s: float,
    samplers: str,
    rapl_root: Path,
    nvml_module: str | None,
    on_sigterm: str,
    aggregate: str | None,
    forward: str | None,
) -> None:
    """Run the node's sidecar: receive the ranks' event batches, journal them, ack them.

    One sidecar serves every rank of a node. It binds in the run's private (0700) journal
    directory, writes `sidecar-<node>.json` there once ready, checks every batch and journals
    it before acking it (a bad batch is refused with its reason), writes `rank<r>.lost` for a
    rank that dies without bye, and on SIGINT/SIGHUP, on SIGTERM (inside a Slurm step: once
    the node's ranks have ended, see --on-sigterm), or when the run directory disappears,
    drains, fsyncs, writes `stats-sidecar-<node>.json` and exits 0. SIGUSR1/SIGUSR2 (Slurm's
    time-limit warning) are logged, not a stop.
    """
    logging.basicConfig(level=logging.INFO, format="%(asctime)s yprov-sidecar %(levelname)s %(message)s")
    _check_settings(nvml_module)
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
        interval_s=interval_s,
        samplers=_sampler_names(samplers),
        rapl_root=rapl_root,
        nvml_module=nvml_module,
        aggregate=aggregate,
        forward=forward if forward != aggregate else None,
        term_waits_for_ranks=on_sigterm == "wait" or (on_sigterm == "auto" and in_slurm_step()),
    )
    code = Sidecar(settings).serve()
    # Stopped: a stop signal that comes again now must not kill the exiting process (Python
    # restores their default actions while it shuts down), or srun logs
    # "task N: Interrupt" for a clean stop.
    for sig in (*STOP_SIGNALS, *WARNING_SIGNALS):
        signal.signal(sig, signal.SIG_IGN)
    sys.exit(code)
