"""The Run's side of delivery: what it uses of the Sender, and the wiring to the node's sidecar.

The Run appends events to ``Delivery.buffer`` and, past ``Delivery.limit`` events, calls
``relieve()`` (which never blocks: the sender thread does the work). Finding the sidecar
(``sidecar_client``) happens on the sender thread, so ``start_run`` does not wait for it.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Protocol, cast

from yprov_hpc.core.config import Config
from yprov_hpc.core.layout import RunLayout
from yprov_hpc.rank.discovery import Placement
from yprov_hpc.rank.sender import Sender, SenderStats
from yprov_hpc.wire.records import Event

if TYPE_CHECKING:
    from yprov_hpc.rank.sidecar_client import SidecarInfo

__all__ = ["Delivery", "new_delivery"]


class Delivery(Protocol):
    """What the Run uses of its Sender (``rank.sender``)."""

    buffer: deque[Event]
    limit: int
    stats: SenderStats

    def relieve(self) -> None: ...
    def start(self) -> None: ...
    def close(self, timeout_s: float) -> SenderStats: ...


def new_delivery(
    config: Config,
    layout: RunLayout,
    placement: Placement,
    run_id: str,
    stream: int,
    on_connected: Callable[[], None],
    on_sidecar: Callable[[SidecarInfo | None], None],
) -> Delivery:
    """A Sender for one stream of this rank (not started). ``on_sidecar`` learns, on the sender
    thread, which sidecar was found or started (None: none), as ``sidecar="auto"`` finds it."""
    node, sidecar = placement.node, config.sidecar

    def locate() -> str | None:
        if sidecar == "off":
            return None
        if sidecar != "auto":
            return sidecar
        from yprov_hpc.rank.sidecar_client import locate_or_start

        info = locate_or_start(layout, node)
        on_sidecar(info)
        return info.endpoint if info is not None else None

    sender = Sender(
        layout=layout,
        run_id=run_id,
        rank=placement.rank,
        node=node,
        stream=stream,
        batch_events=config.batch_events,
        flush_interval_s=config.flush_interval_s,
        ack_timeout_s=config.ack_timeout_s,
        max_inflight_batches=config.max_inflight_batches,
        locate=locate,
        on_connected=on_connected,
        max_buffer_bytes=config.max_buffer_bytes,
        max_buffer_events=config.max_buffer_events,
    )
    return cast(Delivery, sender)
