"""A summary drawing of a run's provenance that fits a screen: the job, its nodes and its ranks
(each with its status and what it recorded), as inline SVG. Each rank's box links to the full
graph of its document, one click away: a viewer page that fits the SVG to the window (with a
button for its actual size), or the DOT file when no SVG was rendered.
"""

from __future__ import annotations

import os
from collections import Counter
from pathlib import Path

from yprov_hpc.core.atomic import write_bytes_atomic
from yprov_hpc.read.htmlkit import esc
from yprov_hpc.read.load import RunRecord

MAX_RANK_BOXES = 24  # more ranks are summed up in one "+N more" box
_BOX_W, _BOX_H, _GAP = 150, 74, 14
_COLORS = {"finished": "#d7f5dd", "failed": "#fde0e0", "killed": "#fde0e0"}


def full_graph(run: RunRecord, document: Path) -> Path | None:
    """The drawing of ``document`` in graph/: its SVG if rendered, else its DOT file, else None."""
    for suffix in (".svg", ".dot"):
        path = run.path / "graph" / f"{document.stem}{suffix}"
        if path.is_file():
            return path
    return None


_VIEWER = """<!doctype html><html lang='en'><head><meta charset='utf-8'><title>{title}</title><style>
body{{margin:0;font:14px system-ui,sans-serif}}header{{padding:8px 16px;background:#1d2b45;color:#fff}}
header a,header button{{color:#fff;margin-left:12px}}header button{{background:none;border:1px solid #fff}}
#box{{overflow:auto;height:calc(100vh - 42px)}}
#box img.fit{{width:100%;height:100%;object-fit:contain}}</style></head><body>
<header>{title}<button id='zoom'>actual size</button><a href='{svg}'>SVG file</a></header>
<div id='box'><img class='fit' id='graph' src='{svg}' alt='{title}'></div>
<script>const g=document.getElementById('graph'),b=document.getElementById('zoom');
b.onclick=()=>{{const fit=g.classList.toggle('fit');
b.textContent=fit?'actual size':'fit to window';}};</script>
</body></html>"""


def graph_targets(run: RunRecord, page_dir: Path) -> dict[Path, Path]:
    """What a click on a document's graph opens: for an SVG drawing, a viewer page written to
    ``page_dir`` that fits the whole graph to the window (a button toggles its actual size);
    else the DOT file. Documents without a drawing are left out."""
    targets: dict[Path, Path] = {}
    for doc in run.documents:
        drawing = full_graph(run, doc)
        if drawing is None:
            continue
        if drawing.suffix == ".svg":
            viewer = page_dir / f"graph_{doc.stem}.html"
            text = _VIEWER.format(
                title=esc(f"graph of {doc.name}"), svg=esc(os.path.relpath(drawing, page_dir))
            )
            write_bytes_atomic(viewer, text.encode())
            drawing = viewer
        targets[doc] = drawing
    return targets


def _link(target: Path | None, page_dir: Path) -> str:
    return os.path.relpath(target, page_dir) if target is not None else ""


def _line(x1: int, y1: int, x2: int, y2: int, color: str) -> str:
    return f"<line x1='{x1}' y1='{y1}' x2='{x2}' y2='{y2}' stroke='{color}'/>"


def _box(x: int, y: int, lines: list[str], fill: str, href: str) -> str:
    bold = " font-weight='600'"
    text = "".join(
        f"<text x='{x + 8}' y='{y + 18 + 15 * i}' font-size='{12 if i == 0 else 11}'"
        f"{bold if i == 0 else ''}>{esc(line)}</text>"
        for i, line in enumerate(lines)
    )
    rect = f"<rect x='{x}' y='{y}' width='{_BOX_W}' height='{_BOX_H}' rx='6' fill='{fill}' stroke='#5a6272'/>"
    inner = f"{rect}{text}"
    return f"<a href='{esc(href)}'>{inner}</a>" if href else inner


def _rank_lines(run: RunRecord, rank: int) -> list[str]:
    info = run.ranks[rank]
    metrics = sum(1 for r in run.summary_rows if r["rank"] == rank and r["kind"] == "metric")
    artifacts = sum(1 for a in run.artifacts if a["rank"] == rank)
    versions = sum(1 for v in run.model_versions if v["rank"] == rank)
    return [
        f"rank {rank} ({info.node or '?'})",
        info.status,
        f"{len(run.params.get(rank, {}))} params, {metrics} metrics",
        f"{artifacts} artifacts, {versions} versions",
    ]


def summary_svg(run: RunRecord, page_dir: Path, targets: dict[Path, Path]) -> str:
    """The summary drawing; a box links to its document's ``targets`` entry, relative to
    ``page_dir`` (where the page is written)."""
    ranks = sorted(run.ranks)
    shown = ranks[:MAX_RANK_BOXES]
    per_row = 6
    rows = (len(shown) + (1 if len(ranks) > len(shown) else 0) + per_row - 1) // per_row or 1
    width = per_row * (_BOX_W + _GAP) + _GAP
    height = 2 * (_BOX_H + 40) + rows * (_BOX_H + _GAP) + 20
    parts: list[str] = []
    job_x = (width - _BOX_W) // 2
    job_href = _link(targets.get(run.collection), page_dir) if run.collection else ""
    job_lines = [f"job {run.id}", run.status, f"{len(ranks)} rank(s), {len(run.nodes)} node(s)"]
    if run.energy_j is not None:
        job_lines.append(f"{run.energy_j:.1f} J")
    parts.append(_box(job_x, 10, job_lines, _COLORS.get(run.status, "#fff1c9"), job_href))
    nodes = run.nodes or ["?"]
    node_y = 10 + _BOX_H + 40
    node_x = {n: _GAP + i * (_BOX_W + _GAP) for i, n in enumerate(nodes[:per_row])}
    counts = Counter(run.ranks[r].node for r in ranks)
    for node, x in node_x.items():
        parts.append(_line(job_x + _BOX_W // 2, 10 + _BOX_H, x + _BOX_W // 2, node_y, "#8a93a3"))
        energy = run.energy_nodes.get(node, {}).get("energy_j")
        lines = [f"node {node}", f"{counts.get(node, 0)} rank(s)"]
        if isinstance(energy, (int, float)):
            lines.append(f"{energy:.1f} J")
        parts.append(_box(x, node_y, lines, "#eef1f5", ""))
    rank_y0 = node_y + _BOX_H + 40
    for i, rank in enumerate(shown):
        x, y = _GAP + (i % per_row) * (_BOX_W + _GAP), rank_y0 + (i // per_row) * (_BOX_H + _GAP)
        rank_node = run.ranks[rank].node
        parent_x = node_x.get(rank_node, job_x) if rank_node is not None else job_x
        parts.append(_line(parent_x + _BOX_W // 2, node_y + _BOX_H, x + _BOX_W // 2, y, "#c3c9d3"))
        href = _link(targets.get(run.ranks[rank].document), page_dir)
        parts.append(_box(x, y, _rank_lines(run, rank), _COLORS.get(run.ranks[rank].status, "#fff1c9"), href))
    if len(ranks) > len(shown):
        i = len(shown)
        x, y = _GAP + (i % per_row) * (_BOX_W + _GAP), rank_y0 + (i // per_row) * (_BOX_H + _GAP)
        parts.append(
            _box(x, y, [f"+{len(ranks) - len(shown)} more ranks", "see the ranks table"], "#fff", "")
        )
    return (
        f"<svg class='summary' xmlns='http://www.w3.org/2000/svg' viewBox='0 0 {width} {height}' "
        f"width='{width}' height='{height}' font-family='system-ui,sans-serif'>{''.join(parts)}</svg>"
    )
