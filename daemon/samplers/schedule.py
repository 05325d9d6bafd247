"""A fixed-interval, drift-free schedule for one sampler, on its own thread.

Tick k is due at ``t0 + k * interval_s`` on the monotonic clock, whatever the previous ticks
took; a tick that comes too late for its slot is skipped (counted), never queued, so a slow
sampler lags itself and nothing else. ``request_sample`` asks for one reading now, off the
schedule (the sidecar does when a rank says hello and when the last rank says bye, so even a
run shorter than one interval has a measured window); the schedule is unchanged by it.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from .base import Sampler

log = logging.getLogger("yprov_daemon")

Emit = Callable[[int, str, dict[str, Any]], None]


class SamplerThread:
    """Runs one sampler every ``interval_s`` and hands each reading to ``emit``."""

    def __init__(
        self,
        sampler: Sampler,
        interval_s: float,
        emit: Emit,
        clock: Callable[[], float] = time.monotonic,
        wall_ns: Callable[[], int] = time.time_ns,
    ) -> None:
        self.sampler = sampler
        self.interval_s = interval_s
        self._emit = emit
        self._clock = clock
        self._wall_ns = wall_ns
        self._stop = threading.Event()
        self._wake = threading.Event()  # set by stop() and by request_sample()
        self._sample_requested = False
        self.ticks = 0
        self.extra = 0  # readings taken on request, off the schedule
        self.skipped = 0
        self.failures = 0
        self._thread = threading.Thread(target=self.run, name=f"sampler-{sampler.name}", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def request_sample(self) -> None:
        """Take one reading as soon as the sampler thread can (thread-safe, never blocks)."""
        self._sample_requested = True
        self._wake.set()

    def stop(self, timeout_s: float = 2.0) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread.is_alive():
            self._thread.join(timeout_s)

    def next_deadline(self, t0: float, now: float) -> tuple[float, int]:
        """The next slot after ``now`` and how many slots were missed before it."""
        k = int((now - t0) / self.interval_s) + 1
        missed = max(0, k - 1 - self.ticks)
        return t0 + k * self.interval_s, missed

    def run(self, max_ticks: int | None = None) -> None:
        t0 = self._clock()
        self._tick()
        while not self._stop.is_set() and (max_ticks is None or self.ticks < max_ticks):
            deadline, missed = self.next_deadline(t0, self._clock())
            self.skipped += missed
            self.ticks += missed
            if self._wait_until(deadline):
                break
            self._tick()

    def _wait_until(self, deadline: float) -> bool:
        """Sleep until ``deadline``, taking requested readings meanwhile; True when stopped."""
        while True:
            self._wake.wait(max(0.0, deadline - self._clock()))
            if self._stop.is_set():
                return True
            if not self._wake.is_set():
                return False  # the deadline came
            self._wake.clear()
            if self._sample_requested:
                self._sample_requested = False
                self.extra += 1
                self._read()

    def _tick(self) -> None:
        self.ticks += 1
        self._read()

    def _read(self) -> None:
        try:
            values = self.sampler.sample()
        except Exception as exc:  # a failing sampler degrades alone: warn once, keep the others
            self.failures += 1
            if self.failures == 1:
                log.warning(
                    "sampler %s failed (%s); it keeps trying, warnings stop here", self.sampler.name, exc
                )
            return
        self._emit(self._wall_ns(), self.sampler.name, values)
