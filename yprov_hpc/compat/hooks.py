"""What ``end_run(crate_ro_crate=True, create_card=True)`` does after the run ended.

The exports read the merged run, so they run where the merge's output is complete (the rank
that waited for the merge), and in a child process (``yprov export rocrate|card RUN``): the
reading stage and its libraries (rocrate, pandas) never load into the training process.
Whatever happens, the run stays as it ended: a failed export is one line in the report's
problems.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from yprov_hpc.compat.warn import warn_once

__all__ = ["after_end_run"]


EXPORT_TIMEOUT_S = 300.0


def _export(kind: str, run_dir: Path) -> str | None:
    """Run ``yprov export KIND RUN_DIR`` in a child process; the problem, or None if it worked."""
    import subprocess
    import sys

    cmd = [sys.executable, "-m", "yprov_hpc.cli", "export", kind, str(run_dir)]
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=EXPORT_TIMEOUT_S, check=False)
    except (OSError, subprocess.SubprocessError) as exc:
        return f"end_run: the {kind} export could not run ({exc}); run: yprov export {kind} {run_dir}"
    if out.returncode != 0:
        why = (out.stderr.strip().splitlines() or ["no message"])[-1][:300]
        return f"end_run: the {kind} export failed ({why}); run: yprov export {kind} {run_dir}"
    return None


def after_end_run(report: Any, crate_ro_crate: bool, create_card: bool) -> None:
    """Called once after ``end_run`` returned ``report`` (a RunReport), with the export requests."""
    if not (crate_ro_crate or create_card):
        return
    if not getattr(report, "merged", False):
        warn_once(
            "end_run.export_unmerged",
            "end_run(crate_ro_crate/create_card): this rank did not wait for the merge; the rank that "
            "ends last writes them (or run: yprov export rocrate|card RUN after the merge)",
        )
        return
    run_dir = Path(report.run_dir)
    for wanted, kind in ((crate_ro_crate, "rocrate"), (create_card, "card")):
        if wanted:
            problem = _export(kind, run_dir)
            if problem is not None:
                report.problems.append(problem)
                warn_once(f"end_run.{kind}", problem)
