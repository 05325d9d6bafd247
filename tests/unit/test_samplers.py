"""Samplers: RAPL (fake powercap tree, wrap-around), NVML (fake module), psutil (real), schedule."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from tests.fakes import fake_nvml
from tests.fakes.powercap import MAX_RANGE_UJ, make_tree, set_uj
from yprov_daemon.samplers import NvmlSampler, RaplSampler, SamplerThread, SamplerUnavailable, SystemSampler


def test_rapl_energy_is_cumulative_across_a_wrap(tmp_path: Path) -> None:
    """A counter that wraps at max_energy_range_uj still gives monotonic joules."""
    files = make_tree(tmp_path, start_uj=MAX_RANGE_UJ - 1_000_000)
    sampler = RaplSampler(tmp_path)
    sampler.open()
    set_uj(files["package-0"], MAX_RANGE_UJ - 1_000_000 + 3_000_000)  # +3 J, wrapping
    set_uj(files["package-0/dram"], MAX_RANGE_UJ - 1_000_000 + 500_000)  # +0.5 J, no wrap
    first = sampler.sample()["domains"]
    assert first["package-0"]["energy_j"] == pytest.approx(3.0, abs=1e-5)
    assert first["package-0/dram"]["energy_j"] == pytest.approx(0.5)
    set_uj(files["package-0"], MAX_RANGE_UJ - 1_000_000 + 5_000_000)
    assert sampler.sample()["domains"]["package-0"]["energy_j"] == pytest.approx(5.0, abs=1e-5)
    assert set(first) == {"package-0", "package-0/core", "package-0/dram"}


def test_rapl_root_only_counters_give_one_clear_reason(tmp_path: Path) -> None:
    """energy_uj readable by root only (the kernel default since 2020): unavailable, saying how to fix it."""
    make_tree(tmp_path)

    def read(path: Path) -> str:
        if path.name == "energy_uj":
            raise PermissionError(13, "Permission denied", str(path))
        return path.read_text()

    with pytest.raises(SamplerUnavailable, match="root only"):
        RaplSampler(tmp_path, read=read).open()
    with pytest.raises(SamplerUnavailable, match="does not exist"):
        RaplSampler(tmp_path / "absent").open()


def test_nvml_counter_and_unsupported_counter(monkeypatch: pytest.MonkeyPatch) -> None:
    """GPU 0 reports its energy counter (since open) and processes; GPU 1 lacks the counter (noted)."""
    monkeypatch.setenv("FAKE_NVML_PIDS", "4242")
    sampler = NvmlSampler(fake_nvml)
    sampler.open()
    gpus = sampler.sample()["gpus"]
    assert gpus["0"]["power_w"] == 250.0 and gpus["0"]["pids"] == [4242]
    assert 0 <= gpus["0"]["energy_j"] < 5  # relative to open, not the 5 kJ the counter started at
    assert "energy_j" not in gpus["1"] and gpus["1"]["power_w"] == 100.0
    assert (1, "energy") in sampler.unsupported
    assert gpus["0"]["util_percent"] == 90.0 and gpus["0"]["mem_total_bytes"] == 80 << 30
    assert gpus["0"]["name"] == gpus["1"]["name"] == "Fake GPU 80GB"  # the model, for the estimate


def test_nvml_missing_library_is_unavailable() -> None:
    """Without nvidia-ml-py (or a driver), the sampler is off with the reason."""
    with pytest.raises(SamplerUnavailable):
        NvmlSampler().open()


def test_system_sampler_reads_this_process_as_a_rank() -> None:
    """Real psutil: node load, and a rank process's CPU time, RSS and local rank."""
    sampler = SystemSampler(lambda: {3: {"pid": os.getpid(), "local_rank": 1}})
    sampler.open()
    sum(i * i for i in range(300_000))
    values = sampler.sample()
    assert values["mem_total_bytes"] > values["mem_used_bytes"] > 0 and values["cpu_busy_s"] > 0
    me = values["ranks"]["3"]
    assert me["pid"] == os.getpid() and me["local_rank"] == 1 and me["cpu_s"] > 0 and me["rss_bytes"] > 0
    assert SystemSampler(lambda: {0: {"pid": 2**22 + 12345}}).sample()["ranks"] == {}  # a gone process


class _Clock:
    def __init__(self) -> None:
        self.now = 100.0


class _SlowSampler:
    name = "slow"

    def __init__(self, clock: _Clock, cost_s: float) -> None:
        self.clock = clock
        self.cost_s = cost_s

    def open(self) -> None: ...

    def sample(self) -> dict[str, float]:
        self.clock.now += self.cost_s  # the reading takes this long
        return {"t": self.clock.now}

    def close(self) -> None: ...


def test_schedule_has_no_drift_and_a_slow_sampler_skips_ticks() -> None:
    """Slots are t0 + k*interval whatever a reading costs; a reading longer than the interval skips slots."""
    clock = _Clock()
    emitted: list[float] = []
    thread = SamplerThread(
        _SlowSampler(clock, 0.3),
        1.0,
        lambda ts, src, v: emitted.append(v["t"]),
        clock=lambda: clock.now,
        wall_ns=lambda: 0,
    )
    t0 = clock.now
    deadline, missed = thread.next_deadline(t0, t0 + 0.3)
    assert (deadline, missed) == (t0 + 1.0, 0)
    thread.ticks = 1
    deadline, missed = thread.next_deadline(t0, t0 + 3.4)  # a reading that overran two slots
    assert (deadline, missed) == (t0 + 4.0, 2)


def test_the_first_system_sample_measures_a_real_window() -> None:
    """Right after open, the node's CPU % comes from a window of at least MIN_WINDOW_S, and a rank
    seen for the first time gets its CPU % since it started: busy work shows, not a false 0 %."""
    from yprov_daemon.samplers.system import MIN_WINDOW_S

    sampler = SystemSampler(lambda: {0: {"pid": os.getpid(), "local_rank": 0}})
    sum(i * i for i in range(2_000_000))  # this process has used CPU since it started
    sampler.open()
    began = time.monotonic()
    values = sampler.sample()
    assert time.monotonic() - began >= MIN_WINDOW_S * 0.9
    assert values["ranks"]["0"]["cpu_percent"] > 0
    assert values["cpu_model"] == sampler._cpu_model


def test_a_requested_sample_is_taken_off_the_schedule() -> None:
    """request_sample() makes the thread read at once, between scheduled ticks, and counts it."""
    readings: list[int] = []

    class _Counter:
        name = "count"

        def open(self) -> None: ...

        def sample(self) -> dict[str, int]:
            readings.append(len(readings))
            return {"n": len(readings)}

        def close(self) -> None: ...

    thread = SamplerThread(_Counter(), 3600.0, lambda ts, src, v: None)
    thread.start()
    try:
        deadline = time.monotonic() + 10
        while not readings and time.monotonic() < deadline:  # the first, scheduled reading
            time.sleep(0.01)
        thread.request_sample()
        while len(readings) < 2 and time.monotonic() < deadline:
            time.sleep(0.01)
    finally:
        thread.stop()
    assert len(readings) == 2 and thread.extra == 1 and thread.ticks == 1
