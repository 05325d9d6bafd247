"""A real headless browser for the page tests: Debian's chromium-headless-shell driven by
Playwright's Python API, offline (network requests other than file:// are aborted)."""

from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
CANDIDATES = ["/usr/lib/chromium/chromium-headless-shell", "chromium-headless-shell", "chrome-headless-shell"]


def headless_shell() -> str | None:
    """The browser's executable, or None when it is not installed."""
    for name in CANDIDATES:
        found = name if Path(name).is_file() else shutil.which(name)
        if found:
            return found
    return None


@dataclass
class Opened:
    """A page as the browser rendered it, with what went wrong while loading it."""

    page: Any
    errors: list[str] = field(default_factory=list)
    blocked: list[str] = field(default_factory=list)

    def charts(self) -> list[dict[str, Any]]:
        """Every Plotly chart: its title, trace names and how many SVG layers it drew."""
        result: list[dict[str, Any]] = self.page.evaluate(
            """() => [...document.querySelectorAll('.js-plotly-plot')].map(el => ({
                title: (el.layout && el.layout.title && el.layout.title.text) || '',
                traces: (el.data || []).map(t => t.name),
                svgs: el.querySelectorAll('svg.main-svg').length,
                points: el.querySelectorAll('path.js-line, g.point').length,
            }))"""
        )
        return result


def open_page(browser: Any, path: Path) -> Opened:
    """Open ``path`` in a fresh page; console errors and page errors are collected."""
    page = browser.new_page(viewport={"width": 1400, "height": 900})
    opened = Opened(page)
    page.on("console", lambda msg: opened.errors.append(msg.text) if msg.type == "error" else None)
    page.on("pageerror", lambda exc: opened.errors.append(str(exc)))

    def route(r: Any) -> None:
        if r.request.url.startswith("file://"):
            r.continue_()
        else:
            opened.blocked.append(r.request.url)
            r.abort()

    page.route("**/*", route)
    page.goto(path.as_uri(), wait_until="load")
    page.wait_for_function(
        "() => window.Plotly === undefined || document.querySelectorAll('.chart').length === "
        "document.querySelectorAll('.js-plotly-plot').length",
        timeout=30_000,
    )
    return opened
