"""Flow control: which sent batches are still unacknowledged, and what to do about them.

The sidecar answers the batches of one connection in the order it received them, and ZeroMQ
loses nothing on a live connection. So, with no fixed timeout:

- while replies (acks or refusals) keep arriving, nothing is resent however late they are:
  the sidecar is alive and making progress;
- a batch that a *later* batch overtook (the later one was acked first) was lost on the way
  (the sidecar could not journal it): it is resent once after the timeout, then spilled;
- when no reply of any kind arrived for the timeout, the sender asks whether the sidecar's
  process is still alive (``Verdict.SUSPECT``): dead, everything in flight is spilled; alive,
  and it has answered this connection before, the oldest batch is resent once as a probe
  (a sidecar restarted on the same endpoint answers it); still silent for
  ``UNREACHABLE_FACTOR x ack_timeout_s`` (or two adapted timeouts, if longer), the sidecar
  counts as unreachable and everything in flight is spilled.

The timeout adapts to the observed ack latency: ``max(ack_timeout_s, LATENCY_FACTOR x
latency)``, capped at ``MAX_TIMEOUT_S``.
"""

from __future__ import annotations

import enum
import math
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

LATENCY_FACTOR = 8.0
MAX_TIMEOUT_S = 30.0
UNREACHABLE_FACTOR = 10.0
MAX_ATTEMPTS = 2  # the first send and one resend
MAX_INFLIGHT_BYTES = 64 << 20  # packed bytes kept for resending, beside the buffer's own bound
_LATENCY_WEIGHT = 0.2


class Verdict(enum.Enum):
    """What the oldest unacknowledged batch asks of the sender now."""

    WAIT = "wait"
    RESEND_OLDEST = "resend the oldest batch"
    SPILL_OLDEST = "spill the oldest batch"
    SUSPECT = "silent: check whether the sidecar lives"
    SPILL_ALL = "unreachable: spill everything in flight"


@dataclass
class InFlight:
    """A sent batch waiting for its reply."""

    header: bytes
    body: bytes
    n_events: int
    sent_at: float
    order: int
    attempts: int = 1


class Window:
    """The unacknowledged batches of one stream, in send order, and the timing of replies."""

    def __init__(
        self, ack_timeout_s: float, max_batches: int, now: float, max_bytes: int = MAX_INFLIGHT_BYTES
    ) -> None:
        self.items: OrderedDict[int, InFlight] = OrderedDict()
        self.ack_timeout_s = ack_timeout_s
        self.max_batches = max_batches
        self.max_bytes = max_bytes
        self.bytes = 0  # packed bytes of the batches in flight
        self.last_reply_at = now
        self.latency_s: float | None = None
        self.last_probe_at = -math.inf
        self.replied = False  # any reply on this connection yet
        self._order = 0
        self._acked_order = -1

    def __len__(self) -> int:
        return len(self.items)

    def full(self) -> bool:
        """True when no more batches may be in flight (by count or by bytes)."""
        return len(self.items) >= self.max_batches or self.bytes >= self.max_bytes

    def add(self, seq_start: int, header: bytes, body: bytes, n_events: int, now: float) -> None:
        """Track a batch that was just sent."""
        self._order += 1
        self.items[seq_start] = InFlight(header, body, n_events, now, self._order)
        self.bytes += len(body)

    def resent(self, seq_start: int, now: float) -> None:
        """Record that a tracked batch was sent again (it becomes the newest)."""
        item = self.items[seq_start]
        self._order += 1
        item.attempts += 1
        item.sent_at = now
        item.order = self._order
        self.items.move_to_end(seq_start)

    def reply(self, seq_start: int, now: float) -> InFlight | None:
        """A reply arrived for ``seq_start``: untrack that batch; None if it was not tracked."""
        self.last_reply_at = now
        self.replied = True
        item = self.items.pop(seq_start, None)
        if item is None:
            return None  # a late duplicate, or a batch already spilled
        self.bytes -= len(item.body)
        self._acked_order = max(self._acked_order, item.order)
        if item.attempts == 1:
            sample = now - item.sent_at
            lat = self.latency_s
            self.latency_s = sample if lat is None else lat + (sample - lat) * _LATENCY_WEIGHT
        return item

    def timeout_s(self) -> float:
        """The current ack timeout: the configured one, or more when acks are slow."""
        lat = self.latency_s or 0.0
        return min(max(self.ack_timeout_s, LATENCY_FACTOR * lat), max(MAX_TIMEOUT_S, self.ack_timeout_s))

    def check(self, now: float) -> Verdict:
        """What the oldest batch in flight needs now (see the module docstring)."""
        if not self.items:
            return Verdict.WAIT
        oldest = next(iter(self.items.values()))
        timeout = self.timeout_s()
        if oldest.order < self._acked_order:  # overtaken: lost on the way
            if now - oldest.sent_at < timeout:
                return Verdict.WAIT
            return Verdict.RESEND_OLDEST if oldest.attempts < MAX_ATTEMPTS else Verdict.SPILL_OLDEST
        silent_s = now - max(self.last_reply_at, oldest.sent_at)
        if silent_s < timeout:
            return Verdict.WAIT
        if silent_s >= max(UNREACHABLE_FACTOR * self.ack_timeout_s, 2 * timeout):
            return Verdict.SPILL_ALL
        return Verdict.SUSPECT

    def may_probe(self, now: float) -> bool:
        """True when the oldest batch may be resent as a probe: after a first reply, once per
        timeout and once per batch."""
        if not self.replied or not self.items or now - self.last_probe_at < self.timeout_s():
            return False
        return next(iter(self.items.values())).attempts < MAX_ATTEMPTS

    def take_oldest(self) -> tuple[int, InFlight]:
        """Untrack and return the oldest batch."""
        seq_start, item = self.items.popitem(last=False)
        self.bytes -= len(item.body)
        return seq_start, item

    def take_all(self) -> list[InFlight]:
        """Untrack and return every batch in flight, oldest first."""
        items = list(self.items.values())
        self.items.clear()
        self.bytes = 0
        return items


class Peer:
    """Whether the sidecar behind an endpoint still lives, from its ready file (pid + start time).

    ``alive()`` is None when nothing is known (an endpoint given by hand, no ready file)."""

    def __init__(self, ready_file: Path | None, endpoint: str) -> None:
        self._ready_file = ready_file
        self._endpoint = endpoint
        self.known = self._read() is not None

    def _read(self) -> dict[str, object] | None:
        if self._ready_file is None:
            return None
        from yprov_hpc.rank.sidecar_client import read_ready_file

        info = read_ready_file(self._ready_file)
        if info is None or info.get("endpoint") != self._endpoint:
            return None
        return info

    def alive(self) -> bool | None:
        """True: a live sidecar serves the endpoint; False: the one we knew is gone; None: unknown."""
        if self._read() is not None:
            self.known = True
            return True
        return False if self.known else None
