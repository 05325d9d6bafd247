"""A running job, as its sidecars describe it: ``yprov top RUN_DIR``.

Each sidecar rewrites ``journal/status-<node>.json`` every sample interval (``daemon/status.py``);
this module reads them (untrusted, size-capped, type-checked) and draws one table per refresh.
It works from any machine that sees the run directory, a login node included.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from yprov_hpc.core.errors import YProvError
from yprov_hpc.core.layout import RunLayout
from yprov_hpc.core.untrusted import read_small_json

__all__ = ["NodeStatus", "read_status", "status_table"]

_MAX_STATUS_BYTES = 4 << 20


@dataclass
class NodeStatus:
    """One node's live status, checked; ``stale`` when it was not rewritten for 3 intervals."""

    node: str
    sidecar_pid: int | None
    age_s: float
    stale: bool
    events_per_s: float
    events: int
    not_acked_batches: int
    spool_bytes: int
    power_w: float | None
    ranks: dict[int, dict[str, Any]] = field(default_factory=dict)


def _num(value: Any, default: float = 0.0) -> float:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    return float(value) if ok else default


def _node_status(path: Path, now: float) -> NodeStatus | None:
    data = read_small_json(path, _MAX_STATUS_BYTES)
    if not isinstance(data, dict) or data.get("version") != 1:
        return None
    age = max(0.0, now - _num(data.get("written")))
    ranks: dict[int, dict[str, Any]] = {}
    claimed = data.get("ranks")
    for key, rank in (claimed if isinstance(claimed, dict) else {}).items():
        if (
            isinstance(key, str)
            and key.isascii()
            and key.isdecimal()
            and len(key) <= 7
            and isinstance(rank, dict)
        ):
            raw_metrics = rank.get("metrics")
            metrics: dict[str, Any] = raw_metrics if isinstance(raw_metrics, dict) else {}
            kept = {str(k)[:200]: v for k, v in list(metrics.items())[:64] if isinstance(v, (int, float))}
            ranks[int(key)] = {
                "pid": rank.get("pid") if isinstance(rank.get("pid"), int) else None,
                "alive": rank.get("alive") is True,
                "last_step": rank.get("last_step") if isinstance(rank.get("last_step"), int) else None,
                "metrics": kept,
            }
    pid, power = data.get("sidecar_pid"), _num(data.get("power_w"), math.nan)
    return NodeStatus(
        node=str(data.get("node") or path.stem[len("status-") :])[:200],
        sidecar_pid=pid if isinstance(pid, int) else None,
        age_s=age,
        stale=age > 3 * max(_num(data.get("interval_s"), 1.0), 0.1),
        events_per_s=_num(data.get("events_per_s")),
        events=int(_num(data.get("events"))),
        not_acked_batches=int(_num(data.get("not_acked_batches"))),
        spool_bytes=int(_num(data.get("spool_bytes"))),
        power_w=power if math.isfinite(power) else None,
        ranks=ranks,
    )


def read_status(run_dir: Path) -> list[NodeStatus]:
    """Every node's live status in a run directory (a broken file is left out)."""
    layout = RunLayout.open(run_dir)
    if not layout.journal_dir.is_dir():
        raise YProvError(f"{run_dir} is not a run directory (no journal/)")
    now = time.time()
    found = (_node_status(p, now) for p in sorted(layout.journal_dir.glob("status-*.json")))
    return [s for s in found if s is not None]


def status_table(nodes: list[NodeStatus], metrics: tuple[str, ...]) -> Any:
    """A rich renderable: a table of nodes, then a table of ranks with the chosen metrics."""
    from rich.console import Group
    from rich.table import Table

    node_table = Table(title="nodes")
    for column in ("node", "sidecar", "events/s", "events", "not acked", "spool", "power W"):
        node_table.add_column(column)
    rank_table = Table(title="ranks")
    for column in ("rank", "node", "alive", "last step", *metrics):
        rank_table.add_column(column)
    for n in nodes:
        alive = "stale" if n.stale else f"pid {n.sidecar_pid}"
        power = "" if n.power_w is None else f"{n.power_w:.1f}"
        node_table.add_row(
            n.node,
            alive,
            f"{n.events_per_s:.0f}",
            str(n.events),
            str(n.not_acked_batches),
            f"{n.spool_bytes}",
            power,
        )
        for rank, r in sorted(n.ranks.items()):
            values = [_fmt(r["metrics"].get(m)) for m in metrics]
            step = "" if r["last_step"] is None else str(r["last_step"])
            rank_table.add_row(str(rank), n.node, "yes" if r["alive"] else "no", step, *values)
    return Group(node_table, rank_table)


def _fmt(value: Any) -> str:
    return "" if value is None else f"{value:.6g}" if isinstance(value, float) else str(value)
