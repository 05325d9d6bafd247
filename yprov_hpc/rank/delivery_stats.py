"""What one rank's sender did with its events: the counters end_run reports and the done
marker records (the merge copies some of them into the rank's PROV document)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

MAX_REFUSALS_KEPT = 10  # reasons kept in SenderStats.refusals (the count has them all)


@dataclass
class SenderStats:
    """Delivery counters, reported at end_run and written into the done marker."""

    events: int = 0
    batches: int = 0
    batches_acked: int = 0
    batches_resent: int = 0
    batches_spilled: int = 0
    events_spilled: int = 0
    batches_refused: int = 0
    events_refused: int = 0
    refusals: list[str] = field(default_factory=list)  # the first reasons the sidecar gave
    events_lost: int = 0  # written nowhere: dropped at the hard cap, or the spool failed
    send_failures: int = 0
    bad_acks: int = 0
    buffer_overflows: int = 0  # times the buffer reached its bound
    sidecar_lost: bool = False  # the sidecar's process died, or it stayed silent too long
    sender_cpu_s: float = 0.0  # CPU time of the sender thread (time.thread_time)
    sender_startup_cpu_s: float = 0.0  # of which: finding the sidecar, connecting, on_connected
    pack_s: float = 0.0  # wall time popping and packing events: the GIL is held throughout
    ack_latency_s: float = 0.0  # running mean of first-attempt ack latency
    bytes_per_event: float = 0.0  # the estimate behind the buffer's limit
    buffer_limit: int = 0  # events
    sidecar: str = ""

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)
