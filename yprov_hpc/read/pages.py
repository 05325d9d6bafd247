"""The pages: a run page (``yprov report``), an index page with the table of runs
(``yprov ls --html``) and a comparison page (``yprov compare --html``).

Each page is one self-contained HTML file that works offline: CSS inline, charts drawn by
Plotly with ``plotly.min.js`` inlined from the installed package (about 4.8 MB per page with
charts; the index page has none). Series longer than 5000 points are thinned by a fixed stride.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from yprov_hpc.core.atomic import write_bytes_atomic
from yprov_hpc.read.compare import Comparison
from yprov_hpc.read.documents import inside
from yprov_hpc.read.htmlkit import MAX_POINTS_PER_TRACE, Charts, esc, fmt, page, status_badge, table, thin
from yprov_hpc.read.load import RunRecord, run_row
from yprov_hpc.read.summary_graph import full_graph, graph_targets, summary_svg

__all__ = ["write_compare_page", "write_index_page", "write_run_page"]

MAX_RANK_TRACES = 64  # beyond this, a chart shows rank min..max as a band, the mean and the lowest rank
_MARK_PREFIXES = ("system/", "carbon/")  # values joined at marks: shown with the system series
_SYSTEM_SKIP = frozenset({"cpu_count", "pid", "local_rank", "mem_total_bytes", "cpu_busy_s", "cpu_s"})


def _write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    write_bytes_atomic(path, text.encode("utf-8"))
    return path


def _xy(frame: Any) -> tuple[list[Any], list[Any], str]:
    """x (step, or time when the series has no steps) and y of one series, in order."""
    if frame["step"].notna().all():
        frame = frame.sort_values(["step", "time"], kind="stable")
        xs, label = [int(s) for s in frame["step"]], "step"
    else:
        frame = frame.sort_values("time", kind="stable")
        xs, label = [t.isoformat() for t in frame["time"]], "time"
    xs, ys = thin(xs, [float(v) for v in frame["value"]])
    return xs, ys, label


def _rank_traces(frame: Any) -> tuple[list[dict[str, Any]], str]:
    """One trace per rank; with more than MAX_RANK_TRACES ranks, a min..max band, the mean over
    ranks per step and the lowest rank."""
    ranks = sorted(frame["rank"].unique())
    label = "step"
    if len(ranks) <= MAX_RANK_TRACES:
        traces = []
        for rank in ranks:
            xs, ys, label = _xy(frame[frame["rank"] == rank])
            traces.append({"type": "scatter", "mode": "lines", "name": f"rank {rank}", "x": xs, "y": ys})
        return traces, label
    by_step = frame.groupby("step")["value"].agg(["min", "max", "mean"]).reset_index()
    xs = [int(s) for s in by_step["step"]]
    band = {"type": "scatter", "mode": "lines", "line": {"width": 0}, "showlegend": False}
    lowest_x, lowest_y, label = _xy(frame[frame["rank"] == ranks[0]])
    return [
        {**band, "x": xs, "y": list(by_step["min"]), "name": "min"},
        {
            **band,
            "x": xs,
            "y": list(by_step["max"]),
            "name": f"{len(ranks)} ranks: min..max",
            "fill": "tonexty",
            "showlegend": True,
        },
        {"type": "scatter", "mode": "lines", "name": "mean over ranks", "x": xs, "y": list(by_step["mean"])},
        {"type": "scatter", "mode": "lines", "name": f"rank {ranks[0]}", "x": lowest_x, "y": lowest_y},
    ], label


def _metric_charts(metrics: Any, charts: Charts, marks: bool) -> str:
    """A chart per (context, metric) with every rank; ``marks`` selects the system/carbon ones."""
    if metrics.empty:
        return "<p class='note'>no metric series recorded</p>"
    is_mark = metrics["name"].str.startswith(_MARK_PREFIXES)
    metrics = metrics[is_mark if marks else ~is_mark]
    out = []
    contexts = sorted(metrics["context"].fillna("(no context)").unique())
    for context in contexts:
        in_ctx = metrics[metrics["context"].fillna("(no context)") == context]
        divs = []
        for name in sorted(in_ctx["name"].unique()):
            traces, x_label = _rank_traces(in_ctx[in_ctx["name"] == name])
            divs.append(charts.add(f"{name} ({context})", traces, x_label, name))
        out.append(f"<h3>{esc(context)}</h3><div class='charts'>{''.join(divs)}</div>")
    return "".join(out)


def _system_charts(run: RunRecord, charts: Charts) -> str:
    """The nodes' sampled series over time: a chart per node and metric, a trace per device."""
    system = run.system()
    if system.empty:
        return (
            "<p class='note'>no system samples (the sidecar samples at its interval; "
            "a very short run may have none)</p>"
        )
    divs = []
    for (node, metric), group in system.groupby(["node", "metric"], sort=True):
        if metric in _SYSTEM_SKIP:
            continue
        traces = []
        for device, series in group.groupby("device", sort=True):
            series = series.sort_values("time")
            xs, ys = thin([t.isoformat() for t in series["time"]], [float(v) for v in series["value"]])
            traces.append({"type": "scatter", "mode": "lines", "name": str(device), "x": xs, "y": ys})
        divs.append(charts.add(f"{metric} on {node}", traces, "time", str(metric)))
    return f"<div class='charts'>{''.join(divs)}</div>"


def _energy(run: RunRecord, charts: Charts, node_pages: dict[str, str]) -> str:
    node_rows = []
    for node, e in sorted(run.energy_nodes.items()):
        name = f"<a href='{esc(node_pages[node])}'>{esc(node)}</a>" if node in node_pages else esc(node)
        values = [
            e.get(k)
            for k in (
                "energy_j",
                "cpu_dram_energy_j",
                "gpu_energy_j",
                "ranks_energy_j",
                "other_energy_j",
                "emissions_kg",
                "samples",
            )
        ]
        node_rows.append([name, *(esc(fmt(v)) for v in values), esc(e.get("cpu_method"))])
    headers = [
        "node",
        "energy (J)",
        "CPU+DRAM (J)",
        "GPU (J)",
        "ranks' shares (J)",
        "other (J)",
        "kg CO2eq",
        "samples",
        "method",
    ]
    parts = [f"<p>Job total: <b>{esc(fmt(run.energy_j))} J</b></p>", table(headers, node_rows, raw=True)]
    rank_rows = [
        [
            r,
            e.get("node"),
            e.get("energy_j"),
            e.get("cpu_dram_energy_j"),
            e.get("gpu_energy_j"),
            e.get("emissions_kg"),
            e.get("cpu_method"),
        ]
        for r, e in sorted(run.energy_ranks.items())
    ]
    parts.append("<h3>per rank</h3>")
    parts.append(
        table(["rank", "node", "energy (J)", "CPU+DRAM (J)", "GPU (J)", "kg CO2eq", "method"], rank_rows)
    )
    if run.energy_nodes:
        nodes = sorted(run.energy_nodes)
        shares = [float(run.energy_nodes[n].get("ranks_energy_j") or 0.0) for n in nodes]
        other = [float(run.energy_nodes[n].get("other_energy_j") or 0.0) for n in nodes]
        bars = [
            {"type": "bar", "name": "ranks' shares", "x": nodes, "y": shares},
            {"type": "bar", "name": "other (not attributed)", "x": nodes, "y": other},
        ]
        divs = [charts.add("energy per node", bars, "node", "J", barmode="stack")]
        if run.energy_ranks:
            ranks = sorted(run.energy_ranks)
            y = [float(run.energy_ranks[r].get("energy_j") or 0.0) for r in ranks]
            divs.append(
                charts.add(
                    "energy per rank",
                    [{"type": "bar", "x": [f"rank {r}" for r in ranks], "y": y, "name": "energy"}],
                    "rank",
                    "J",
                )
            )
        parts.append(f"<div class='charts'>{''.join(divs)}</div>")
    return "".join(parts)


def _params(run: RunRecord) -> str:
    common = run.common_params()
    parts = [table(["param", "value"], [[k, v] for k, v in common.items()]) if common else "<p>no params</p>"]
    for rank, params in sorted(run.params.items()):
        if params != common:
            parts.append(
                f"<h3>rank {rank} differs</h3>"
                + table(["param", "value"], [[k, v] for k, v in params.items()])
            )
    return "".join(parts)


def _files(run: RunRecord, page_dir: Path) -> str:
    """Artifacts, model versions and datasets, with a link to each stored copy."""
    rows = []
    for kind, items in (
        ("artifact", run.artifacts),
        ("model version", run.model_versions),
        ("dataset", run.datasets),
    ):
        for item in items:
            stored = inside(run.path, item.get("path"))
            label = esc(item.get("prov:label"))
            if stored is not None and stored.exists():
                label = f"<a href='{esc(os.path.relpath(stored, page_dir))}'>{label}</a>"
            digest = item.get("sha256") or item.get("fingerprint_sha256") or ""
            rows.append(
                [
                    esc(item["rank"]),
                    kind,
                    label,
                    esc(fmt(item.get("context"))),
                    esc(fmt(item.get("step"))),
                    esc(fmt(item.get("size_bytes") or item.get("samples"))),
                    esc(str(digest)[:16]),
                ]
            )
    if not rows:
        return "<p class='note'>none recorded</p>"
    headers = ["rank", "kind", "name", "context", "step", "bytes (samples)", "sha256"]
    return table(headers, rows, raw=True)


def _links(run: RunRecord, page_dir: Path, targets: dict[Path, Path]) -> str:
    def link(path: Path, text: str) -> str:
        return f"<li><a href='{esc(os.path.relpath(path, page_dir))}'>{esc(text)}</a></li>"

    items = [link(p, p.name) for p in run.documents]
    report = run.path / "merge_report.json"
    if report.is_file():
        items.append(link(report, "merge_report.json (what the merge read and found)"))
    for doc, target in targets.items():
        drawing = full_graph(run, doc)
        kind = drawing.suffix[1:].upper() if drawing else ""
        items.append(link(target, f"graph of {doc.name} ({kind})"))
    return f"<ul>{''.join(items)}</ul>"


def write_run_page(run: RunRecord, path: Path, node_pages: dict[str, str] | None = None) -> Path:
    """The run page at ``path``: status, params, metric charts per context with every rank,
    system series, energy per node and rank, problems, the provenance summary and links."""
    charts = Charts()
    page_dir = path.parent.resolve()
    page_dir.mkdir(parents=True, exist_ok=True)
    targets = graph_targets(run, page_dir)
    metrics = run.thinned_metrics(MAX_POINTS_PER_TRACE)
    ranks = [[r.rank, r.node, r.status, r.start, r.end] for r in (run.ranks[k] for k in sorted(run.ranks))]
    problems = "".join(f"<li>{esc(p)}</li>" for p in run.problems) or "<li>none recorded</li>"
    no_svg = (
        ""
        if any((run.path / "graph").glob("*.svg"))
        else ("<p class='note'>no SVG drawings: <code>yprov graph --svg RUN</code> renders them</p>")
    )
    body = (
        f"<p>{status_badge(run.status)} {esc(fmt(run.start))} .. {esc(fmt(run.end))} "
        f"({esc(fmt(run.duration_s))} s), {len(run.ranks)} rank(s) of world size {esc(fmt(run.world_size))}, "
        f"nodes: {esc(', '.join(run.nodes) or '-')}"
        f"{', ended by: ' + esc(run.end_cause) if run.end_cause else ''}</p>"
        f"<h2>Problems</h2><ul class='problems'>{problems}</ul>"
        f"<h2>Ranks</h2>{table(['rank', 'node', 'status', 'start', 'end'], ranks)}"
        f"<h2>Params</h2>{_params(run)}"
        f"<h2>Metrics</h2>{_metric_charts(metrics, charts, marks=False)}"
        f"<h2>System</h2><h3>node samples</h3>{_system_charts(run, charts)}"
        "<h3>at the marks (log_system_metrics, log_carbon_metrics)</h3>"
        f"{_metric_charts(metrics, charts, marks=True)}"
        f"<h2>Energy</h2>{_energy(run, charts, node_pages or {})}"
        f"<h2>Artifacts, model versions and datasets</h2>{_files(run, page_dir)}"
        f"<h2>Provenance</h2><p class='note'>Summary of the documents; click the job or a rank for "
        f"its full graph.</p>{summary_svg(run, page_dir, targets)}{no_svg}"
        f"<h2>Documents and graphs</h2>{_links(run, page_dir, targets)}"
    )
    subtitle = f"{esc(run.path)}"
    return _write(path, page(f"{run.experiment} run {run.id}", subtitle, body, charts))


def write_index_page(runs: list[RunRecord], path: Path, run_pages: dict[Path, Path] | None = None) -> Path:
    """The table of runs at ``path``: one row per run, linked to its run page when there is one."""
    page_dir = path.parent.resolve()
    rows = [run_row(r) for r in runs]
    metric_cols = sorted(
        {k for row in rows for k in row if k.startswith("metrics.") and not k[8:].startswith(_MARK_PREFIXES)}
    )
    param_cols = sorted({k for row in rows for k in row if k.startswith("params.")})
    varying = [c for c in param_cols if len({repr(row.get(c)) for row in rows}) > 1]
    headers = [
        "run",
        "experiment",
        "status",
        "start",
        "duration (s)",
        "ranks",
        "energy (J)",
        "problems",
        *(c.removeprefix("params.") for c in varying),
        *(c.removeprefix("metrics.") for c in metric_cols),
    ]
    body_rows = []
    for run, row in zip(runs, rows, strict=True):
        target = (run_pages or {}).get(run.path) or run.collection
        name = esc(run.id)
        if target is not None:
            name = f"<a href='{esc(os.path.relpath(target, page_dir))}'>{name}</a>"
        cells = [name, esc(run.experiment), status_badge(run.status)]
        cells += [esc(fmt(row[k])) for k in ("start", "duration_s", "ranks", "energy_j", "problems")]
        cells += [esc(fmt(row.get(c))) for c in [*varying, *metric_cols]]
        body_rows.append(cells)
    body = (
        f"<p>{len(runs)} run(s). Params shown: those that differ between runs. Metrics: the final "
        f"value of the lowest rank (system and carbon values at marks are on each run's page).</p>"
        f"{table(headers, body_rows, raw=True)}"
    )
    return _write(path, page("runs", esc(page_dir), body))


def write_compare_page(comparison: Comparison, path: Path) -> Path:
    """The comparison page: runs, params (differing ones marked), final metrics, and each
    metric's curves overlaid, one trace per run (its lowest rank)."""
    charts = Charts()
    labels, runs = comparison.labels, comparison.runs
    run_rows = [
        [
            label,
            r.experiment,
            status_badge(r.status),
            fmt(r.start),
            fmt(r.duration_s),
            len(r.ranks),
            fmt(r.energy_j),
        ]
        for label, r in zip(labels, runs, strict=True)
    ]
    run_rows = [[esc(c) if i != 2 else c for i, c in enumerate(row)] for row in run_rows]
    keys = list(comparison.params)
    diff = {i for i, k in enumerate(keys) if k in comparison.differing}
    params = table(["param", *labels], [[k, *comparison.params[k]] for k in keys], diff_rows=diff)
    finals = table(["metric", "context", *labels], [[n, c, *v] for (n, c), v in comparison.metrics.items()])
    divs = []
    thinned = [r.thinned_metrics(MAX_POINTS_PER_TRACE) for r in runs]
    for name, context in sorted(
        comparison.metrics, key=lambda k: (k[0].startswith(_MARK_PREFIXES), k[1] or "", k[0])
    ):
        traces = []
        x_label = "step"
        for label, m in zip(labels, thinned, strict=True):
            series = m[(m["name"] == name) & (m["context"].fillna("") == (context or ""))]
            if series.empty:
                continue
            xs, ys, x_label = _xy(series[series["rank"] == series["rank"].min()])
            traces.append({"type": "scatter", "mode": "lines", "name": label, "x": xs, "y": ys})
        divs.append(charts.add(f"{name} ({context or 'no context'})", traces, x_label, name))
    energy = [{"type": "bar", "x": labels, "y": [r.energy_j or 0.0 for r in runs], "name": "energy"}]
    divs.append(charts.add("energy per run", energy, "run", "J"))
    run_headers = ["run", "experiment", "status", "start", "duration (s)", "ranks", "energy (J)"]
    differ = f"{len(comparison.differing)} of {len(keys)} differ (marked)"
    body = (
        f"<h2>Runs</h2>{table(run_headers, run_rows, raw=True)}"
        f"<h2>Params</h2><p class='note'>{differ}</p>{params}"
        f"<h2>Final metrics</h2>{finals}<h2>Curves</h2><div class='charts'>{''.join(divs)}</div>"
    )
    return _write(path, page("comparison of " + ", ".join(labels), f"{len(runs)} runs", body, charts))
