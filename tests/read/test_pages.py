"""The pages in a real headless browser: every page opens offline without console errors, the
charts render, and the links lead to files of the run."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

import pytest
from click.testing import CliRunner

from tests.read.browser import ARGS, headless_shell, open_page
from yprov_hpc.cli import main
from yprov_hpc.read.htmlkit import MAX_POINTS_PER_TRACE, Charts, thin


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    executable = headless_shell()
    if executable is None:
        pytest.skip("chromium-headless-shell is not installed (apt-get install chromium-headless-shell)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=executable, args=ARGS)
        yield b
        b.close()


@pytest.fixture(scope="module")
def site(runs_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the two runs with every page written: yprov report, ls --html, compare --html."""
    root = Path(shutil.copytree(runs_dir, tmp_path_factory.mktemp("site") / "runs",
                                ignore=shutil.ignore_patterns("*.sock")))  # fmt: skip
    runner = CliRunner()
    svg = ["graph", "--svg", str(root / "exp_r1"), "--out", str(root / "exp_r1" / "graph")]
    for args in (
        *([svg] if shutil.which("dot") else []),  # Graphviz draws the SVG; without it: DOT links
        ["report", str(root / "exp_r1")],
        ["ls", str(root), "--html", str(root / "index.html")],
        ["compare", str(root / "exp_r1"), str(root / "exp_r2"), "--html", str(root / "compare.html")],
    ):
        result = runner.invoke(main, args, catch_exceptions=False)
        assert result.exit_code == 0, result.output
    return root


def _local_links(opened: Any) -> list[Path]:
    hrefs = opened.page.eval_on_selector_all(
        "a[href]", "els => els.map(e => new URL(e.getAttribute('href'), document.baseURI).href)"
    )
    return [Path(unquote(urlparse(h).path)) for h in hrefs if h.startswith("file://")]


@pytest.mark.parametrize("page", ["exp_r1/report/index.html", "exp_r2/report/index.html", "compare.html"])
def test_every_chart_renders_offline_without_console_errors(browser: Any, site: Path, page: str) -> None:
    """Each page with charts opens with the network blocked, logs no error, draws every chart."""
    opened = open_page(browser, site / page)
    charts = opened.charts()
    assert opened.errors == [] and opened.blocked == []
    assert len(charts) == opened.page.locator(".chart").count() >= 3
    assert all(c["svgs"] >= 1 for c in charts)


def test_run_page_draws_each_metric_with_every_rank(browser: Any, site: Path) -> None:
    """The run page has a loss chart for the training context with a line per rank."""
    charts = {c["title"]: c for c in open_page(browser, site / "exp_r1" / "report" / "index.html").charts()}
    assert charts["loss (training)"]["traces"] == ["rank 0", "rank 1"]
    assert charts["accuracy (validation)"]["traces"] == ["rank 0", "rank 1"]


def test_run_page_shows_system_series_and_energy(browser: Any, site: Path) -> None:
    """The node's samples, the per-node and the per-rank energy are drawn."""
    titles = {c["title"] for c in open_page(browser, site / "exp_r1" / "report" / "index.html").charts()}
    assert "cpu_percent on vm" in titles or any(t.startswith("cpu_percent on ") for t in titles)
    assert {"energy per node", "energy per rank"} <= titles


def test_run_page_shows_status_params_and_problems(browser: Any, site: Path) -> None:
    """The failed run's page says failed, lists the params and its ranks' statuses."""
    text = open_page(browser, site / "exp_r2" / "report" / "index.html").page.inner_text("main")
    assert "failed" in text.split("\n")[0]
    assert "lr\t0.05" in text
    assert "Problems" in text


def test_run_page_links_lead_to_the_runs_files(browser: Any, site: Path) -> None:
    """Every link of the run page (documents, graphs, node energy pages) names an existing file."""
    links = _local_links(open_page(browser, site / "exp_r1" / "report" / "index.html"))
    names = {p.name for p in links}
    assert {"prov_exp_collection.json", "prov_exp_rank0.json", "vm.html"} <= names
    assert all(p.is_file() for p in links)


def test_provenance_summary_fits_the_screen_and_links_the_full_graph(browser: Any, site: Path) -> None:
    """The summary drawing is no wider than the window, and a rank's box opens its full graph."""
    opened = open_page(browser, site / "exp_r1" / "report" / "index.html")
    box = opened.page.locator("svg.summary").bounding_box()
    assert box is not None and box["width"] <= 1400
    hrefs = opened.page.eval_on_selector_all("svg.summary a", "els => els.map(e => e.getAttribute('href'))")
    base = site / "exp_r1" / "report"
    assert any(h.endswith(("prov_exp_rank1.dot", "graph_prov_exp_rank1.html")) for h in hrefs)
    assert all((base / h).resolve().is_file() for h in hrefs)


def test_index_page_has_a_row_per_run_linked_to_its_page(browser: Any, site: Path) -> None:
    """The index page's table has both runs, each linking to an existing run page."""
    opened = open_page(browser, site / "index.html")
    assert opened.errors == []
    assert opened.page.locator("tbody tr").count() == 2
    links = _local_links(opened)
    assert [p.parent.parent.name for p in links] == ["exp_r1", "exp_r2"]
    assert all(p.is_file() for p in links)


def test_compare_page_overlays_the_runs(browser: Any, site: Path) -> None:
    """The comparison's loss chart has one line per run, and lr is marked as differing."""
    opened = open_page(browser, site / "compare.html")
    charts = {c["title"]: c for c in opened.charts()}
    assert charts["loss (training)"]["traces"] == ["r1", "r2"]
    marked = opened.page.eval_on_selector_all("tr.diff td:first-child", "els => els.map(e => e.textContent)")
    assert marked == ["lr"]


def test_node_energy_page_opens_without_errors(browser: Any, site: Path) -> None:
    """The per-node energy page (matplotlib images) loads its images without errors."""
    opened = open_page(browser, site / "exp_r1" / "report" / "vm.html")
    sizes = opened.page.eval_on_selector_all("img", "els => els.map(e => e.naturalWidth)")
    assert opened.errors == [] and len(sizes) >= 4 and all(w > 0 for w in sizes)


def test_long_series_are_thinned_keeping_the_last_point() -> None:
    """A series longer than the limit is cut to at most the limit, its last point kept."""
    xs = list(range(3 * MAX_POINTS_PER_TRACE + 7))
    tx, ty = thin(xs, xs)
    assert len(tx) <= MAX_POINTS_PER_TRACE + 1 and tx[-1] == xs[-1] and ty == tx


def test_chart_data_cannot_close_the_script_element() -> None:
    """A metric name with </script> in it is escaped inside the page's chart data."""
    charts = Charts()
    charts.add("</script><script>alert(1)</script>", [], "step")
    script = charts.script()
    assert script.count("</script>") == 2  # the library's and the drawing code's own


def test_run_page_lists_model_versions_with_links(browser: Any, site: Path) -> None:
    """The run page's table of artifacts and model versions links to each stored copy."""
    opened = open_page(browser, site / "exp_r1" / "report" / "index.html")
    names = {p.name for p in _local_links(opened)}
    assert {"weights_r1_rank0.json"} <= names
    assert opened.page.get_by_text("weights v2").count() == 2  # ranks 0 and 1


def test_many_ranks_are_drawn_as_a_band_the_mean_and_the_lowest_rank() -> None:
    """Beyond MAX_RANK_TRACES ranks a chart has four lines: min, max (filled), mean, lowest rank."""
    import pandas as pd

    from yprov_hpc.read.pages import MAX_RANK_TRACES, _rank_traces

    ranks = MAX_RANK_TRACES + 6
    frame = pd.DataFrame(
        {
            "rank": [r for r in range(ranks) for _ in range(3)],
            "step": [s for _ in range(ranks) for s in (1, 2, 3)],
            "value": [float(r + s) for r in range(ranks) for s in (1, 2, 3)],
            "time": pd.to_datetime([0] * (3 * ranks), unit="ns", utc=True),
        }
    )
    traces, label = _rank_traces(frame)
    assert label == "step" and [t["name"] for t in traces][1:] == [
        f"{ranks} ranks: min..max",
        "mean over ranks",
        "rank 0",
    ]
    assert traces[0]["y"] == [1.0, 2.0, 3.0] and traces[1]["y"] == [
        float(ranks + 0),
        float(ranks + 1),
        float(ranks + 2),
    ]


@pytest.mark.skipif(shutil.which("dot") is None, reason="needs Graphviz's dot for SVG drawings")
def test_full_graph_viewer_fits_the_window_and_toggles_actual_size(browser: Any, site: Path) -> None:
    """A rank's box opens a viewer whose SVG fits the window; the button shows its actual size."""
    run_page = open_page(browser, site / "exp_r1" / "report" / "index.html")
    hrefs = run_page.page.eval_on_selector_all("svg.summary a", "els => els.map(e => e.getAttribute('href'))")
    viewer = next(h for h in hrefs if "rank1" in h)
    opened = open_page(browser, (site / "exp_r1" / "report" / viewer).resolve())
    img = opened.page.locator("#graph")
    fitted = img.bounding_box()
    assert opened.errors == [] and img.evaluate("e => e.naturalWidth") > 0
    assert fitted is not None and fitted["width"] <= 1400 and fitted["height"] <= 900
    opened.page.click("#zoom")
    actual = img.bounding_box()
    assert actual is not None and abs(actual["width"] - img.evaluate("e => e.naturalWidth")) < 1
