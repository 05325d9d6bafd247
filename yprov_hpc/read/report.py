"""``yprov report RUN_DIR``: per-node energy reports (Markdown and HTML, with plots), a job
summary, and the run page (``report/index.html``, built by ``read/pages.py``), from a run's
journals, documents and series. Needs matplotlib (``[report]`` extra), pandas and plotly."""

from __future__ import annotations

import base64
import html
import io
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from yprov_hpc.core.layout import RunLayout, safe_name
from yprov_hpc.fold.attribution import J_PER_KWH, NodeTelemetry

S = 1e9


@dataclass
class ReportResult:
    files: list[Path] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)


def _plt() -> Any:
    try:
        import matplotlib
    except ImportError:
        raise RuntimeError("yprov report needs matplotlib: pip install 'yprov-hpc[report]'") from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig: Any, path: Path) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    path.write_bytes(buf.getvalue())
    fig.clf()
    return base64.b64encode(buf.getvalue()).decode()


def _power(times: list[int], cumulative: list[float]) -> list[float]:
    return [0.0] + [
        (cumulative[k] - cumulative[k - 1]) / max(1e-9, (times[k] - times[k - 1]) / S)
        for k in range(1, len(times))
    ]


def node_plots(node: NodeTelemetry, out: Path) -> dict[str, str]:
    """PNG plots of one node: {title: base64}. Files are written next to the reports."""
    plt = _plt()
    e = node.energy
    t = [(x - e.times[0]) / S for x in e.times]
    plots: dict[str, str] = {}
    stem = safe_name(e.node)

    fig, ax = plt.subplots(figsize=(7, 3))
    ax.plot(t, _power(e.times, e.cpu_j), label="CPU+DRAM")
    for g, cum in e.gpu_j.items():
        ax.plot(t, _power(e.times, cum), label=f"GPU {g}")
    ax.set(xlabel="time (s)", ylabel="power (W)", title=f"{e.node}: power per device")
    ax.legend(fontsize=7)
    plots["Power per device"] = _save(fig, out / f"{stem}_power.png")

    fig, ax = plt.subplots(figsize=(7, 3))
    ax.plot(t, e.total_j, label="node total", linewidth=2)
    for r in sorted(e.rank_cpu_j):
        ax.plot(t, [c + g for c, g in zip(e.rank_cpu_j[r], e.rank_gpu_j[r], strict=True)], label=f"rank {r}")
    ax.plot(t, e.other_j, label="other", linestyle="--")
    ax.set(xlabel="time (s)", ylabel="energy (J)", title=f"{e.node}: cumulative energy and shares")
    ax.legend(fontsize=7)
    plots["Cumulative energy"] = _save(fig, out / f"{stem}_energy.png")

    fig, ax = plt.subplots(figsize=(7, 3))
    ax.plot(t, [s.get("cpu_percent", 0.0) for s in e.system], label="node CPU %")
    g_t = [(ts - e.times[0]) / S for ts, _ in e.gpu_samples]
    for g in e.gpu_j:
        ax.plot(
            g_t,
            [gpus.get(g, {}).get("util_percent", float("nan")) for _, gpus in e.gpu_samples],
            label=f"GPU {g} %",
        )
    ax.set(xlabel="time (s)", ylabel="utilisation (%)", ylim=(0, 105), title=f"{e.node}: utilisation")
    ax.legend(fontsize=7)
    plots["Utilisation"] = _save(fig, out / f"{stem}_utilisation.png")

    fig, ax = plt.subplots(figsize=(7, 3))
    labels = [f"rank {r}" for r in sorted(e.rank_cpu_j)] + ["other"]
    values = [e.rank_cpu_j[r][-1] + e.rank_gpu_j[r][-1] for r in sorted(e.rank_cpu_j)] + [e.other_j[-1]]
    ax.bar(labels, values)
    ax.set(ylabel="energy (J)", title=f"{e.node}: shares of the node's energy")
    plots["Per-rank shares"] = _save(fig, out / f"{stem}_shares.png")
    plt.close("all")
    return plots


def metric_vs_system_plot(layout: RunLayout, node: NodeTelemetry, out: Path) -> tuple[str, str] | None:
    """Like the yProv4ML paper's Figure 2: the first training metric of the node's lowest rank
    against the node's CPU usage, on one wall-clock axis."""
    import pyarrow.parquet as pq

    e = node.energy
    ranks = sorted(e.rank_cpu_j)
    if not ranks or not e.times or not layout.series_file(ranks[0]).exists():
        return None
    table = pq.read_table(layout.series_file(ranks[0])).to_pydict()
    rows = [
        (ts, n, v)
        for k, n, v, ts in zip(table["kind"], table["name"], table["value"], table["ts_ns"], strict=True)
        if k == "metric" and "/" not in n
    ]
    if not rows:
        return None
    name = rows[0][1]
    points = [(ts, v) for ts, n, v in rows if n == name]
    plt = _plt()
    fig, ax = plt.subplots(figsize=(7, 3))
    ax.plot([(ts - e.times[0]) / S for ts, _ in points], [v for _, v in points], color="tab:blue", label=name)
    ax.set(xlabel="time (s)", ylabel=name)
    twin = ax.twinx()
    twin.plot(
        [(x - e.times[0]) / S for x in e.times],
        [s.get("cpu_percent", 0.0) for s in e.system],
        color="tab:red",
        alpha=0.6,
        label="node CPU %",
    )
    twin.set_ylabel("node CPU (%)")
    ax.set_title(f"rank {ranks[0]}: {name} and CPU usage")
    data = _save(fig, out / f"{safe_name(e.node)}_{safe_name(name)}_vs_cpu.png")
    plt.close("all")
    return f"{name} vs CPU usage", data


def _rows(node: NodeTelemetry, intensity: float) -> list[tuple[str, str]]:
    t = node.totals
    rows = [
        ("energy", f"{t['energy_j']:.1f} J ({t['energy_kwh']:.6f} kWh)"),
        ("CPU+DRAM", f"{t['cpu_dram_energy_j']:.1f} J - {t['cpu_method']}"),
        ("GPUs", f"{t['gpu_energy_j']:.1f} J - {t.get('gpu_methods') or 'no GPU sampled'}"),
        ("ranks' shares", f"{t['ranks_energy_j']:.1f} J"),
        ("other (not attributed to a rank)", f"{t['other_energy_j']:.1f} J"),
        ("emissions", f"{t['emissions_kg'] * 1000:.3f} gCO2eq at {intensity:g} gCO2eq/kWh"),
        ("duration sampled", f"{t['duration_s']:.1f} s, {node.samples} samples"),
    ]
    if node.tdp_source:
        rows.append(("CPU TDP source", node.tdp_source))
    return rows


def _rank_rows(node: NodeTelemetry) -> list[tuple[int, float, float, float]]:
    e = node.energy
    return [
        (r, e.rank_cpu_j[r][-1], e.rank_gpu_j[r][-1], e.rank_cpu_j[r][-1] + e.rank_gpu_j[r][-1])
        for r in sorted(e.rank_cpu_j)
    ]


def _run_page(layout: RunLayout, nodes: dict[str, NodeTelemetry], result: ReportResult) -> Path:
    """report/index.html: the run page (read/pages.py), linking to the node pages written here."""
    from yprov_hpc.read.load import load_run
    from yprov_hpc.read.pages import write_run_page

    run = load_run(layout.root)
    node_pages = {n: f"{safe_name(n)}.html" for n, t in nodes.items() if t.totals}
    path = write_run_page(run, layout.root / "report" / "index.html", node_pages)
    result.problems += [p for p in run.problems if p not in result.problems]
    return path


def write_report(run_dir: Path) -> ReportResult:
    """Write report/<node>.md and .html for each node (energy, matplotlib plots), report/index.md
    (the job's energy table) and report/index.html (the run page, see read/pages.py).

    Longer than most functions here because it is the one place that lays the report folder out,
    in the order a reader sees it; each page's content is built by the helpers above."""
    from yprov_hpc.merge import load_nodes

    layout = RunLayout.open(run_dir)
    nodes, carbon = load_nodes(run_dir)
    out = layout.root / "report"
    out.mkdir(exist_ok=True)
    result = ReportResult()
    index_md = [
        f"# Energy report: {layout.root.name}",
        "",
        f"Carbon intensity: {carbon.g_per_kwh:g} gCO2eq/kWh ({carbon.region}; {carbon.source})",
        "",
        "| node | energy (J) | kWh | CPU+DRAM (J) | GPU (J) | other (J) | gCO2eq |",
        "|---|---|---|---|---|---|---|",
    ]
    job_j = 0.0
    for name, node in nodes.items():
        if not node.totals:
            result.problems.append(f"node {name}: {node.status}, no report")
            continue
        t = node.totals
        job_j += t["energy_j"]
        index_md.append(
            f"| [{name}]({safe_name(name)}.md) | {t['energy_j']:.1f} | {t['energy_kwh']:.6f} | "
            f"{t['cpu_dram_energy_j']:.1f} | {t['gpu_energy_j']:.1f} | {t['other_energy_j']:.1f} | "
            f"{t['emissions_kg'] * 1000:.3f} |"
        )
        plots = node_plots(node, out)
        extra = metric_vs_system_plot(layout, node, out)
        if extra:
            plots[extra[0]] = extra[1]
        md = [f"# Node {name}", "", "| | |", "|---|---|"]
        md += [f"| {k} | {v} |" for k, v in _rows(node, carbon.g_per_kwh)]
        md += [
            "",
            "## Ranks",
            "",
            "| rank | CPU+DRAM share (J) | GPU (J) | total (J) | % of node |",
            "|---|---|---|---|---|",
        ]
        md += [
            f"| {r} | {c:.1f} | {g:.1f} | {tot:.1f} | {100 * tot / max(t['energy_j'], 1e-9):.1f} |"
            for r, c, g, tot in _rank_rows(node)
        ]
        md += ["", "## Plots", ""]
        files = sorted(p.name for p in out.glob(f"{safe_name(name)}_*.png"))
        md += [f"![{f}]({f})" for f in files]
        md_path = out / f"{safe_name(name)}.md"
        md_path.write_text("\n".join(md) + "\n")
        body = "".join(
            f"<tr><th>{html.escape(k)}</th><td>{html.escape(v)}</td></tr>"
            for k, v in _rows(node, carbon.g_per_kwh)
        )
        ranks = "".join(
            f"<tr><td>{r}</td><td>{c:.1f}</td><td>{g:.1f}</td><td>{tot:.1f}</td></tr>"
            for r, c, g, tot in _rank_rows(node)
        )
        imgs = "".join(
            f"<h3>{html.escape(title)}</h3><img src='data:image/png;base64,{data}'>"
            for title, data in plots.items()
        )
        page = (
            f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(name)}</title></head>"
            "<body>"
            f"<h1>Node {html.escape(name)}</h1><table>{body}</table><h2>Ranks</h2><table><tr><th>rank</th>"
            f"<th>CPU+DRAM (J)</th><th>GPU (J)</th><th>total (J)</th></tr>{ranks}</table>{imgs}</body></html>"
        )
        html_path = out / f"{safe_name(name)}.html"
        html_path.write_text(page)
        result.files += [md_path, html_path, *(out / f for f in files)]
    index_md += [
        "",
        f"Job total: {job_j:.1f} J ({job_j / J_PER_KWH:.6f} kWh), "
        f"{job_j / J_PER_KWH * carbon.g_per_kwh:.3f} gCO2eq",
    ]
    (out / "index.md").write_text("\n".join(index_md) + "\n")
    result.files += [out / "index.md", _run_page(layout, nodes, result)]
    if not nodes:
        result.problems.append("no node samples in this run (was the sidecar sampling?)")
    return result
