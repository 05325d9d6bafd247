"""Building blocks of the self-contained HTML pages: the page shell (inline CSS), tables,
escaping, and Plotly charts with the library inlined from the installed ``plotly`` package, so
that a page works offline and from a copied directory.
"""

from __future__ import annotations

import html
import math
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import orjson

from yprov_hpc.core.errors import YProvError

MAX_POINTS_PER_TRACE = 5000  # longer series are thinned by a fixed stride (the last point kept)

CSS = """
body{font:14px/1.45 system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:0;color:#1d2330;
background:#f6f7f9}
header{background:#1d2b45;color:#fff;padding:14px 24px}header h1{margin:0;font-size:20px}
header .sub{opacity:.8;font-size:13px}main{padding:8px 24px 40px;max-width:1400px}
h2{margin:28px 0 8px;font-size:17px;border-bottom:1px solid #d8dce3;padding-bottom:4px}
h3{margin:18px 0 6px;font-size:15px}
table{border-collapse:collapse;background:#fff;margin:6px 0;font-size:13px}
th,td{border:1px solid #d8dce3;padding:4px 8px;text-align:left;vertical-align:top}
th{background:#eef1f5}td{white-space:nowrap}
td.num{text-align:right;font-variant-numeric:tabular-nums}tr.diff td{background:#fff6da}
.status{display:inline-block;padding:1px 8px;border-radius:10px;font-weight:600}
.status.finished{background:#d7f5dd;color:#14632b}
.status.failed,.status.killed{background:#fde0e0;color:#8a1c1c}
.status.other{background:#fff1c9;color:#6b4f00}.problems li{color:#8a1c1c}
.charts{display:flex;flex-wrap:wrap;gap:12px}
.chart{background:#fff;border:1px solid #d8dce3;width:640px;height:340px}
.note{color:#5a6272;font-size:12px}a{color:#1f5fbf}
svg.summary{background:#fff;border:1px solid #d8dce3;max-width:100%}
"""


class PageError(YProvError, RuntimeError):
    """A page cannot be written (the chart library is missing)."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(f"cannot write the page: {reason}")


def esc(value: Any) -> str:
    return html.escape("" if value is None else str(value), quote=True)


def fmt(value: Any) -> str:
    """A cell's text: floats to 6 significant digits, times to the second, None as a dash."""
    if value is None:
        return "-"
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, float):
        return "nan" if math.isnan(value) else f"{value:.6g}"
    if hasattr(value, "strftime"):
        return str(value.strftime("%Y-%m-%d %H:%M:%S"))
    return str(value)


def status_badge(status: str) -> str:
    kind = status if status in ("finished", "failed", "killed") else "other"
    return f"<span class='status {kind}'>{esc(status)}</span>"


def table(
    headers: list[str], rows: list[list[Any]], *, raw: bool = False, diff_rows: set[int] | None = None
) -> str:
    """An HTML table; cells are escaped unless ``raw`` (then they are trusted HTML)."""
    head = "".join(f"<th>{esc(h)}</th>" for h in headers)
    body = []
    for i, row in enumerate(rows):
        cells = []
        for cell in row:
            numeric = isinstance(cell, (int, float)) and not isinstance(cell, bool)
            text = str(cell) if raw and isinstance(cell, str) else esc(fmt(cell))
            cells.append(f"<td class='num'>{text}</td>" if numeric else f"<td>{text}</td>")
        cls = " class='diff'" if diff_rows and i in diff_rows else ""
        body.append(f"<tr{cls}>{''.join(cells)}</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


@lru_cache(maxsize=1)
def plotly_js() -> str:
    """The installed plotly package's ``plotly.min.js`` (about 4.8 MB), inlined in every page with
    charts so that the page needs no network."""
    try:
        import plotly  # type: ignore[import-untyped]
    except ImportError:
        raise PageError("the charts need plotly: pip install 'yprov-hpc[read]'") from None
    path = Path(plotly.__file__).parent / "package_data" / "plotly.min.js"
    if not path.is_file():
        raise PageError(f"plotly.min.js not found in the plotly package ({path})")
    return path.read_text(encoding="utf-8")


def thin(xs: list[Any], ys: list[Any]) -> tuple[list[Any], list[Any]]:
    """At most MAX_POINTS_PER_TRACE points, by a fixed stride, keeping the last point."""
    n = len(xs)
    if n <= MAX_POINTS_PER_TRACE:
        return xs, ys
    stride = math.ceil(n / MAX_POINTS_PER_TRACE)
    idx = list(range(0, n, stride))
    if idx[-1] != n - 1:
        idx.append(n - 1)
    return [xs[i] for i in idx], [ys[i] for i in idx]


@dataclass
class Charts:
    """The charts of one page: each is a div and a Plotly figure spec, drawn by one script."""

    specs: list[dict[str, Any]] = field(default_factory=list)

    def add(
        self, title: str, traces: list[dict[str, Any]], x_title: str, y_title: str = "", **layout: Any
    ) -> str:
        """The div of a new chart (put it in the page where the chart goes)."""
        div = f"chart{len(self.specs)}"
        spec_layout = {
            "title": {"text": title, "font": {"size": 14}},
            "margin": {"l": 60, "r": 20, "t": 40, "b": 45},
            "xaxis": {"title": {"text": x_title}},
            "yaxis": {"title": {"text": y_title}},
            "legend": {"font": {"size": 10}},
            **layout,
        }
        self.specs.append({"id": div, "data": traces, "layout": spec_layout})
        return f"<div class='chart' id='{div}'></div>"

    def script(self) -> str:
        """The inlined chart library and the drawing code ('' without charts)."""
        if not self.specs:
            return ""
        data = orjson.dumps(
            self.specs, default=str, option=orjson.OPT_NON_STR_KEYS | orjson.OPT_SERIALIZE_NUMPY
        )
        payload = data.decode().replace("</", "<\\/")
        return (
            f"<script>{plotly_js()}</script>"
            f"<script>const CHARTS={payload};"
            "for(const c of CHARTS){Plotly.newPlot(c.id,c.data,c.layout,"
            "{responsive:true,displaylogo:false});}</script>"
        )


def page(title: str, subtitle: str, body: str, charts: Charts | None = None) -> str:
    """A whole HTML document: header, body, then the charts' script."""
    return (
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>"
        "<meta name='viewport' content='width=device-width,initial-scale=1'>"
        f"<title>{esc(title)}</title><style>{CSS}</style></head><body>"
        f"<header><h1>{esc(title)}</h1><div class='sub'>{subtitle}</div></header>"
        f"<main>{body}</main>{charts.script() if charts else ''}</body></html>"
    )
