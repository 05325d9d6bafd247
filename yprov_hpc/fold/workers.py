"""Worker processes for the merge's per-rank stage, and when they are worth starting."""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from pathlib import Path
from typing import Any, Generic, Protocol, TypeVar

from yprov_hpc.fold.index import Frame
from yprov_hpc.fold.parts import RankOutcome
from yprov_hpc.fold.result import progress_bar
from yprov_hpc.fold.series import arrow_without_pandas

__all__ = ["BYTES_PER_EVENT", "POOL_MIN_EVENTS", "Workers"]

# a worker per this many events at most: starting one (a spawned interpreter importing pyarrow)
# costs about what folding 200k events does; with fewer than 2 workers, ranks are merged in the
# calling process
POOL_MIN_EVENTS = 200_000
BYTES_PER_EVENT = 40  # in a journal, about (a metric event: 42 bytes in bench_merge_scale)


class _HasFrames(Protocol):
    frames: list[Frame]


Job = TypeVar("Job", bound=_HasFrames)


def _warm(module: str) -> None:
    """A worker's imports (the module of the function it will run, pyarrow), done while the
    parent indexes the journals."""
    import importlib

    arrow_without_pandas()  # a worker only folds: pyarrow's pandas check (0.3-0.5 s) is waste
    import pyarrow.compute
    import pyarrow.parquet  # noqa: F401

    importlib.import_module(module)


def _journal_bytes(paths: list[Path]) -> int:
    total = 0
    for path in paths:
        with contextlib.suppress(OSError):
            total += path.stat().st_size
    return total


class Workers(Generic[Job]):
    """Worker processes for the per-rank stage (spawned, not forked: the caller may be a training
    process with threads), started only when worth it, and early when the journals' size says
    so, so that their imports overlap the index pass."""

    def __init__(self, fn: Callable[[Job], RankOutcome], workers: int) -> None:
        self.fn = fn  # a module-level function: the workers import it by name
        self.workers = workers
        self._pool: Any = None

    def _start(self, events: int, ranks: int | None = None) -> None:
        """Start min(workers, ranks, events / POOL_MIN_EVENTS) workers, if that is 2 or more."""
        by_events = events // POOL_MIN_EVENTS if POOL_MIN_EVENTS > 0 else self.workers
        n = min(self.workers, by_events, self.workers if ranks is None else ranks)
        if self._pool is None and n > 1:
            import multiprocessing
            from concurrent.futures import ProcessPoolExecutor

            ctx = multiprocessing.get_context("spawn")
            self._pool = ProcessPoolExecutor(max_workers=n, mp_context=ctx)
            for _ in range(n):
                self._pool.submit(_warm, self.fn.__module__)

    def start_for(self, paths: list[Path]) -> None:
        """Start now, as many as the journals' size says (about BYTES_PER_EVENT an event)."""
        self._start(_journal_bytes(paths) // BYTES_PER_EVENT)

    def run(
        self, jobs: list[Job], progress: bool, meanwhile: Callable[[], None] | None = None
    ) -> list[RankOutcome]:
        """Merge every rank: in the workers when there are enough events (or they are up).
        ``meanwhile`` runs in this process once the jobs are handed out (before them, without
        workers)."""
        bar = progress_bar(progress, len(jobs))
        outcomes: list[RankOutcome] = []
        self._start(sum(fr.n_events for job in jobs for fr in job.frames), len(jobs))
        results = self._pool.map(self.fn, jobs) if self._pool is not None and len(jobs) > 1 else None
        if meanwhile is not None:
            meanwhile()
        for outcome in results if results is not None else map(self.fn, jobs):
            outcomes.append(outcome)
            bar.update(1) if bar is not None else None
        if bar is not None:
            bar.close()
        return outcomes

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(cancel_futures=True)
            self._pool = None
