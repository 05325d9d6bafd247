"""The one way a run's final output is written: a merge under the run's merge lock.

Whoever merges (the embedded sidecar after the last rank's bye, the Slurm batch script, the
dependent merge job, the last rank's detached merge process, or a user's ``yprov merge``) goes
through ``final_merge``. It holds an exclusive ``flock`` on ``journal/merge.lock`` for the whole
merge, so merges of one run never overlap; a merge that waited for the lock reads the journals
after the one before it finished, so an older merge can never write last. Each completed merge
is recorded in ``journal/merge.state.json`` with the snapshot of the journals it read; with
``if_stale=True`` a merger whose journals are unchanged since that merge does nothing.

A merge can be split across nodes (``fold.parts``): ``part_merge`` folds one node's ranks and
writes their documents and a part file, under a *shared* lock (parts run side by side, never
during a final merge); the join is a ``final_merge(join=True)``, which takes from the part files
every rank whose inputs are unchanged and folds the rest itself, so its output is the one of a
merge in one process, whatever parts ran, failed or went stale.

``python -m yprov_hpc.finalize RUN_DIR --by WHO`` runs it as its own process (the last rank's
detached merge); ``yprov merge`` is the command for users and batch scripts.
"""

from __future__ import annotations

import argparse
import fcntl
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from yprov_hpc.core.layout import RunLayout
from yprov_hpc.core.merge_state import MergeState, journal_snapshot, read_merge_state, write_merge_state
from yprov_hpc.merge import MergeResult, merge_part, merge_run

__all__ = ["FinalMerge", "MergeLockTimeout", "final_merge", "part_merge"]


class MergeLockTimeout(TimeoutError):
    """Another merge of the run held the lock for longer than the caller would wait."""


@dataclass
class FinalMerge:
    """What ``final_merge`` did: the merge's result (None when skipped) and the recorded state."""

    result: MergeResult | None
    state: MergeState | None
    skipped: bool


def _lock(path: Path, timeout_s: float | None, shared: bool = False) -> int:
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o600)
    deadline = None if timeout_s is None else time.monotonic() + timeout_s
    while True:
        try:
            fcntl.flock(fd, (fcntl.LOCK_SH if shared else fcntl.LOCK_EX) | fcntl.LOCK_NB)
            return fd
        except BlockingIOError:
            if deadline is not None and time.monotonic() >= deadline:
                os.close(fd)
                raise MergeLockTimeout(f"{path} stayed locked for {timeout_s} s") from None
            time.sleep(0.02)


def final_merge(
    run_dir: Path,
    *,
    by: str,
    if_stale: bool = False,
    workers: int = 1,
    create_svg: bool | None = None,
    progress: bool = False,
    lock_timeout_s: float | None = None,
    create_graph: bool | None = None,
    join: bool = False,
) -> FinalMerge:
    """Merge ``run_dir`` under its merge lock and record the merge; see the module docstring."""
    layout = RunLayout.open(run_dir)
    if not layout.journal_dir.is_dir():
        raise FileNotFoundError(f"{run_dir} has no journal/ directory: not a yprov run directory")
    fd = _lock(layout.merge_lock, lock_timeout_s)
    try:
        previous = read_merge_state(layout)
        snapshot = journal_snapshot(layout)
        if if_stale and previous is not None and previous.ok and previous.snapshot == snapshot:
            return FinalMerge(None, previous, skipped=True)
        started = time.time_ns()
        result = merge_run(
            layout.root,
            create_svg=create_svg,
            progress=progress,
            workers=workers,
            create_graph=create_graph,
            join=join,
        )
        state = MergeState(
            generation=(previous.generation if previous is not None else 0) + 1,
            snapshot=snapshot,
            by=by,
            pid=os.getpid(),
            started_ts_ns=started,
            finished_ts_ns=time.time_ns(),
            seconds=round(result.seconds, 3),
            ranks=len(result.documents),
            events=sum(d.events for d in result.ranks.values()),
            ok=result.collection is not None,
            collection=result.collection.name if result.collection is not None else None,
            problems=tuple(result.problems),
        )
        write_merge_state(layout, state)
        _experiment_record(layout, result)
        return FinalMerge(result, state, skipped=False)
    finally:
        os.close(fd)  # closing the descriptor releases the flock


def part_merge(
    run_dir: Path,
    nodes: list[str],
    *,
    if_stale: bool = False,
    workers: int = 1,
    progress: bool = False,
    lock_timeout_s: float | None = None,
) -> MergeResult | None:
    """One node part of a split merge (``merge.merge_part``) under the shared merge lock; None
    when ``if_stale`` and the last recorded merge read these very journals (nothing to do)."""
    layout = RunLayout.open(run_dir)
    if not layout.journal_dir.is_dir():
        raise FileNotFoundError(f"{run_dir} has no journal/ directory: not a yprov run directory")
    fd = _lock(layout.merge_lock, lock_timeout_s, shared=True)
    try:
        previous = read_merge_state(layout)
        if (
            if_stale
            and previous is not None
            and previous.ok
            and previous.snapshot == journal_snapshot(layout)
        ):
            return None
        return merge_part(layout.root, nodes, workers=workers, progress=progress)
    finally:
        os.close(fd)


def _experiment_record(layout: RunLayout, result: MergeResult) -> None:
    """Link this run with the experiment's other runs in its save directory
    (``<save dir>/prov_<experiment>_experiment.json``), when the run directory is named as
    start_run names it; a failure is one more problem of the merge, never an error."""
    from yprov_hpc.read.experiment import write_experiment_record

    if result.collection is None:
        return
    experiment = result.collection.name.removeprefix("prov_").removesuffix("_collection.json")
    if not layout.root.name.startswith(f"{experiment}_"):
        return  # a run directory a batch script named: its parent is not a save directory
    try:
        write_experiment_record(layout.root.parent, experiment)
    except OSError as exc:
        result.problems.append(f"the experiment record in {layout.root.parent} was not written: {exc}")


def main(argv: list[str] | None = None) -> int:
    """``python -m yprov_hpc.finalize RUN_DIR --by WHO [--if-stale]``: the last rank's detached
    merge process (``rank.ending``), whose output goes to ``journal/merge.log``. Users and batch
    scripts run ``yprov merge`` (the same ``final_merge``, with parts, a join and progress)."""
    parser = argparse.ArgumentParser(prog="python -m yprov_hpc.finalize")
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--by", default="merge process")
    parser.add_argument("--if-stale", action="store_true")
    args = parser.parse_args(argv)
    from yprov_hpc.fold.series import arrow_without_pandas

    arrow_without_pandas()  # this process only merges: pyarrow's pandas check (0.3-0.5 s) is waste
    try:
        outcome = final_merge(args.run_dir, by=args.by, if_stale=args.if_stale)
    except (OSError, MergeLockTimeout) as exc:
        print(f"yprov: merge of {args.run_dir} failed: {exc}", file=sys.stderr)
        return 1
    if outcome.result is not None:
        for problem in outcome.result.problems:
            print(f"problem: {problem}", file=sys.stderr)
    return 0 if outcome.state is not None and outcome.state.ok else 1


if __name__ == "__main__":
    sys.exit(main())
