"""Node telemetry end to end: the embedded sidecar samples (psutil for real; RAPL and NVML
through fakes, as there is neither here), marks at every step become metrics, energy is
attributed and conserved, and the report command draws it."""

from __future__ import annotations

import hashlib
import math
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pyarrow.parquet as pq
import pytest

import yprov_hpc as prov4ml
from tests.conftest import ROOT, entity, literal, load, start
from tests.fakes.powercap import make_tree, set_uj


@pytest.fixture
def fake_hardware(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """A powercap tree whose counters advance (package 50 W, DRAM 5 W) and the fake NVML module,
    handed to the embedded sidecar through its environment variables."""
    files = make_tree(tmp_path / "powercap", start_uj=10**9)
    monkeypatch.setenv("YPROV_RAPL_ROOT", str(tmp_path / "powercap"))
    monkeypatch.setenv("YPROV_NVML_MODULE", "tests.fakes.fake_nvml")
    monkeypatch.setenv("FAKE_NVML_PIDS", str(os.getpid()))  # this test process is the rank on GPU 0
    monkeypatch.setenv("YPROV_SAMPLE_INTERVAL_S", "0.1")
    monkeypatch.setenv("PYTHONPATH", str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    stop = threading.Event()

    def advance() -> None:
        t0 = time.monotonic()
        while not stop.wait(0.02):
            dt = time.monotonic() - t0
            set_uj(files["package-0"], 10**9 + int(50e6 * dt))
            set_uj(files["package-0/dram"], 10**9 + int(5e6 * dt))

    thread = threading.Thread(target=advance, daemon=True)
    thread.start()
    yield
    stop.set()
    thread.join()


def test_marks_every_step_become_energy_and_system_metrics(save_dir: Path, fake_hardware: None) -> None:
    """Marks at every step: per-step energy (monotonic), GPU energy to the rank using the GPU,
    CPU+DRAM by CPU time, methods recorded, and the node's ranks + other = total."""
    run = start(save_dir, "telemetry")
    time.sleep(0.4)  # let the sidecar see this rank in a sample
    steps = 30
    for step in range(steps):
        sum(i * i for i in range(100_000))
        prov4ml.log_metric("loss", 1.0 / (step + 1), prov4ml.Context.TRAINING, step)
        prov4ml.log_system_metrics(prov4ml.Context.TRAINING, step)
        prov4ml.log_carbon_metrics(prov4ml.Context.TRAINING, step)
        time.sleep(0.03)
    report = prov4ml.end_run()
    doc = load(report.documents[0])
    names = {literal(e.get("prov:label")): k for k, e in doc["entity"].items()}
    energy_metric = entity(doc, names["carbon/energy_j"])
    assert energy_metric["yprov:count"] == steps and energy_metric["yprov:last"] > 0
    table = pq.read_table(run.run_dir / "metrics" / "rank0.parquet").to_pydict()
    per_step = [v for n, v in zip(table["name"], table["value"], strict=True) if n == "carbon/energy_j"]
    assert per_step == sorted(per_step), "energy since start never decreases"
    assert entity(doc, names["system/gpu_util_percent"])["yprov:last"] == 90.0
    mine = entity(doc, "run:rank0.energy")
    duration = (time.time_ns() - run.started_ns) / 1e9
    assert 0 < mine["yprov:gpu_energy_j"] <= 250 * duration  # GPU 0 runs this process: it is ours
    assert mine["yprov:cpu_method"].startswith("rapl_counters(package-0,package-0/dram)")
    assert mine["yprov:emissions_kg"] == pytest.approx(mine["yprov:energy_kwh"] * 475 / 1000)

    coll = load(report.collection)  # type: ignore[arg-type]
    node = next(
        {k: literal(v) for k, v in e.items()} for k, e in coll["entity"].items() if k.startswith("run:node.")
    )
    assert node["yprov:ranks_energy_j"] + node["yprov:other_energy_j"] == pytest.approx(
        node["yprov:energy_j"]
    )
    assert node["yprov:other_energy_j"] >= node["yprov:gpu_energy_j"] * 100 / 350 * 0.9  # GPU 1 is nobody's
    assert (
        "nvml_energy_counter" in node["yprov:gpu_methods"]
        and "nvml_power_integrated" in node["yprov:gpu_methods"]
    )
    series = run.run_dir / node["yprov:series_path"]
    assert hashlib.sha256(series.read_bytes()).hexdigest() == node["yprov:series_sha256"]
    samples = pq.read_table(series).to_pydict()
    assert {"system", "rapl", "nvml"} <= set(samples["source"])
    pkg = [
        v
        for d, m, v in zip(samples["device"], samples["metric"], samples["value"], strict=True)
        if d == "domain:package-0" and m == "energy_j"
    ]
    assert pkg and not math.isnan(pkg[-1]) and pkg == sorted(pkg)


def test_report_pages_match_the_collection(save_dir: Path, fake_hardware: None) -> None:
    """`yprov report` writes per-node Markdown/HTML with plots and a job index; its totals are the
    collection's, and the node's energy after the job ended is not counted."""
    import re
    import subprocess

    from tests.conftest import PYTHON, python_env

    start(save_dir, "report")
    time.sleep(0.4)
    for step in range(10):
        sum(i * i for i in range(100_000))
        prov4ml.log_metric("loss", 1.0 / (step + 1), prov4ml.Context.TRAINING, step)
        prov4ml.log_carbon_metrics(prov4ml.Context.TRAINING, step)
        time.sleep(0.02)
    report = prov4ml.end_run()
    time.sleep(1.5)  # the embedded sidecar samples on during its exit grace; the report must cut there
    out = subprocess.run(
        [PYTHON, "-m", "yprov_hpc.cli", "report", str(report.run_dir)],
        env=python_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    pages = report.run_dir / "report"
    (node_md,) = [p for p in pages.glob("*.md") if p.name != "index.md"]
    text = node_md.read_text()
    coll = load(report.collection)  # type: ignore[arg-type]
    node = next(
        {k: literal(v) for k, v in e.items()} for k, e in coll["entity"].items() if k.startswith("run:node.")
    )
    shown = float(re.search(r"\| energy \| ([0-9.]+) J", text).group(1))  # type: ignore[union-attr]
    assert shown == pytest.approx(node["yprov:energy_j"], abs=0.05)
    assert "| 0 |" in text and "rapl_counters" in text and "nvml_energy_counter" in text
    pngs = sorted(pages.glob("*.png"))
    assert len(pngs) >= 5 and all(p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for p in pngs)
    assert any("loss_vs_cpu" in p.name for p in pngs)
    assert "data:image/png;base64," in node_md.with_suffix(".html").read_text()
    assert "Job total" in (pages / "index.md").read_text()


def test_a_short_healthy_run_reports_no_telemetry_gap(save_dir: Path) -> None:
    """Readings taken on demand (at hello and at the last bye) do not shrink the interval the gap
    check uses: every system sample states the sidecar's schedule, and a one-second run with a
    healthy sidecar reports no gap."""
    from yprov_hpc.fold.index import index_journals, read_batch

    run = start(save_dir, "short")
    for i in range(1000):
        prov4ml.log_metric("loss", 1.0, step=i)
    time.sleep(1.0)
    report = prov4ml.end_run()
    index = index_journals(run.run_dir / "journal")
    system = [
        ev[3]
        for frames in index.nodes.values()
        for fr in frames
        for ev in read_batch(fr) or []
        if ev[2] == "system"
    ]
    assert len(system) >= 3 and all(values.get("interval_s") == 1.0 for values in system)
    merge_report = load(run.run_dir / "merge_report.json")
    assert merge_report["telemetry_gaps"] == [], merge_report["telemetry_gaps"]
    assert not any("telemetry gap" in p for p in report.problems)
