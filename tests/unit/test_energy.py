"""Energy: integration, interpolation, the attribution invariant (shares + other = total) over the
run's window, values not measured, the CPU model from the samples, and telemetry gaps."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from yprov_hpc.fold.attribution import NodeTelemetry, node_telemetry, node_totals, rank_energy
from yprov_hpc.fold.carbon import CarbonIntensity
from yprov_hpc.fold.energy import build_node_energy, cumulative_from_power, interpolate, split_interval
from yprov_hpc.fold.gaps import sample_interval_ns, telemetry_gaps

S = 1_000_000_000


def test_trapezoid_and_interpolation() -> None:
    """Constant 100 W for 3 s is 300 J; values between samples are linear, clamped at the ends."""
    times = [0, S, 2 * S, 3 * S]
    assert cumulative_from_power(times, [100.0] * 4) == [0.0, 100.0, 200.0, 300.0]
    assert interpolate(times, [0.0, 100.0, 200.0, 300.0], S // 2) == 50.0
    assert interpolate(times, [0.0, 100.0, 200.0, 300.0], 10 * S) == 300.0


@given(
    energy=st.floats(0, 1e6),
    ranks=st.dictionaries(st.integers(0, 63), st.floats(0, 1e3), max_size=16),
    busy=st.floats(0, 1e4),
)
def test_split_conserves_energy(energy: float, ranks: dict[int, float], busy: float) -> None:
    """For any interval, the ranks' shares plus other equal the interval's energy, none negative."""
    shares, other = split_interval(energy, ranks, busy)
    assert sum(shares.values()) + other == pytest.approx(energy, rel=1e-9, abs=1e-6)
    assert all(v >= 0 for v in shares.values()) and other >= -1e-6 * max(1.0, energy)


def _samples(n: int, seed: int) -> list[tuple[int, str, dict]]:  # type: ignore[type-arg]
    import random

    rng = random.Random(seed)
    out = []
    busy = rank0 = rank1 = pkg = dram = gpu = 0.0
    for k in range(n):
        t = k * S
        d_r0, d_r1 = rng.uniform(0, 1), rng.uniform(0, 1)
        rank0 += d_r0
        rank1 += d_r1
        busy += d_r0 + d_r1 + rng.uniform(0, 0.5)
        pkg += rng.uniform(20, 120)
        dram += rng.uniform(1, 10)
        gpu += rng.uniform(100, 300)
        ranks = {
            "0": {"pid": 100, "cpu_s": rank0, "local_rank": 0},
            "1": {"pid": 101, "cpu_s": rank1, "local_rank": 1},
        }
        out.append((t, "system", {"cpu_busy_s": busy, "cpu_percent": 50.0, "ranks": ranks}))
        out.append(
            (
                t + 1000,
                "rapl",
                {
                    "domains": {
                        "package-0": {"energy_j": pkg},
                        "package-0/core": {"energy_j": pkg / 2},
                        "package-0/dram": {"energy_j": dram},
                    }
                },
            )
        )
        gpus = {"0": {"energy_j": gpu, "power_w": 250.0, "pids": [101]}, "1": {"power_w": 80.0, "pids": []}}
        out.append((t + 2000, "nvml", {"gpus": gpus}))
    return out


@given(n=st.integers(2, 30), seed=st.integers(0, 10_000))
def test_node_attribution_conserves_at_every_sample(n: int, seed: int) -> None:
    """At every sample time, sum over ranks of (CPU share + GPU) plus other equals the node total."""
    ne = build_node_energy("n", _samples(n, seed), {})
    total = ne.total_j
    for k in range(n):
        ranks = sum(ne.rank_cpu_j[r][k] + ne.rank_gpu_j[r][k] for r in ne.rank_cpu_j)
        assert ranks + ne.other_j[k] == pytest.approx(total[k], rel=1e-9, abs=1e-6)


def test_gpu_goes_to_its_process_and_methods_are_recorded() -> None:
    """GPU 0 (counter) goes to rank 1, whose pid NVML lists; GPU 1 (power only, no process) is 'other'."""
    ne = build_node_energy("n", _samples(5, 1), {})
    assert ne.gpu_users == {"0": [1], "1": []}
    assert ne.gpu_methods == {"0": "nvml_energy_counter", "1": "nvml_power_integrated"}
    assert ne.cpu_method.startswith("rapl_counters(package-0,package-0/dram)")  # core is inside the package
    assert ne.rank_gpu_j[0][-1] == 0 and ne.rank_gpu_j[1][-1] == pytest.approx(ne.gpu_j["0"][-1])
    assert ne.other_j[-1] >= ne.gpu_j["1"][-1] == pytest.approx(80.0 * 4)


def test_without_rapl_the_cpu_estimate_says_so() -> None:
    """No RAPL samples: CPU energy is TDP x utilisation, and the method says it is an estimate."""
    samples = [
        (k * S, "system", {"cpu_busy_s": float(k), "cpu_percent": 50.0, "ranks": {}}) for k in range(3)
    ]
    ne = build_node_energy("n", samples, {}, cpu_tdp_w=100.0)
    assert ne.cpu_j == [0.0, 50.0, 100.0] and ne.cpu_method.startswith("tdp_estimate(100 W")


def test_gpu_of_rank_follows_the_rank_hints() -> None:
    """torch's current device wins over the local rank; CUDA_VISIBLE_DEVICES maps to NVML's numbering."""
    from yprov_hpc.fold.energy import gpu_of_rank

    assert gpu_of_rank({"local_rank": 2}) == "2"
    assert gpu_of_rank({"local_rank": 1, "cuda_visible_devices": "4,5,6,7"}) == "5"
    assert gpu_of_rank({"local_rank": 0, "cuda_device": 3, "cuda_visible_devices": "0,1,2,6"}) == "6"
    assert gpu_of_rank({"local_rank": 1, "cuda_visible_devices": "GPU-ab12,GPU-cd34"}) == "1"  # UUIDs: no map


def test_without_process_lists_gpus_follow_the_hints() -> None:
    """With no NVML process list (MIG), the GPU goes to the rank whose hints name it."""
    samples = _samples(4, 2)
    for _, src, v in samples:
        if src == "nvml":
            for gpu in v["gpus"].values():
                gpu.pop("pids", None)
        if src == "system":
            for rank in v["ranks"].values():  # the job reversed the GPU order
                rank["cuda_visible_devices"] = "1,0"
    ne = build_node_energy("n", samples, {})
    assert ne.gpu_users == {"0": [1], "1": [0]}  # local rank 0 -> NVML GPU 1, local rank 1 -> GPU 0


def _telemetry(n: int, seed: int) -> NodeTelemetry:
    return node_telemetry("n", _samples(n, seed), tdp=(100.0, "test"))


@given(
    n=st.integers(3, 30),
    seed=st.integers(0, 10_000),
    cuts=st.lists(st.floats(0, 1), min_size=4, max_size=4),
)
def test_ranks_plus_other_equal_the_node_over_the_window_when_ranks_end_apart(
    n: int, seed: int, cuts: list[float]
) -> None:
    """Ranks with their own start and end inside the run's window: each rank's share over its own
    window, plus "other", equal the node's energy over the run's window, and "other" is never negative."""
    tele = _telemetry(n, seed)
    span = (n - 1) * S
    a0, a1, b0, b1 = (int(c * span) for c in cuts)
    windows = {0: (min(a0, a1), max(a0, a1)), 1: (min(b0, b1), max(b0, b1))}
    window = (min(w[0] for w in windows.values()), max(w[1] for w in windows.values()))
    carbon = CarbonIntensity(400.0, "test", "test")
    node_totals(tele, window, windows, carbon)
    if window[0] == window[1]:  # an empty window: nothing measured, and no figure
        assert tele.totals == {} and tele.status.startswith("not measured")
        return
    t = tele.totals
    e = tele.energy
    assert t["energy_j"] == pytest.approx(e.node_total_at(window[1]) - e.node_total_at(window[0]), rel=1e-9)
    ranks = sum(rank_energy(r, w, tele, carbon).get("energy_j", 0.0) for r, w in windows.items())
    assert t["ranks_energy_j"] == pytest.approx(ranks, rel=1e-9, abs=1e-9)
    assert t["ranks_energy_j"] + t["other_energy_j"] == pytest.approx(t["energy_j"], rel=1e-9)
    assert t["other_energy_j"] >= -1e-6 * max(1.0, t["energy_j"])


def test_a_node_without_an_interval_is_not_measured_never_zero() -> None:
    """One sample, or no node at all: the rank's energy has no figure and a status saying why."""
    one = node_telemetry("n", _samples(1, 0), tdp=(100.0, "test"))
    carbon = CarbonIntensity(400.0, "test", "test")
    energy = rank_energy(0, (0, 5 * S), one, carbon)
    assert "energy_j" not in energy and energy["energy_status"].startswith("not measured: one sample")
    assert rank_energy(0, (0, S), None, carbon) == {
        "energy_status": "not measured: no samples from the rank's node"
    }
    node_totals(one, (0, 5 * S), {0: (0, 5 * S)}, carbon)
    assert one.totals == {} and one.status.startswith("not measured")


def test_the_cpu_model_for_the_tdp_estimate_comes_from_the_nodes_samples() -> None:
    """A system sample that names its CPU model: the estimate's TDP source says it came from there."""
    samples = [
        (
            k * S,
            "system",
            {"cpu_busy_s": float(k), "cpu_percent": 50.0, "ranks": {}, "cpu_model": "Sampled CPU X"},
        )
        for k in range(3)
    ]
    tele = node_telemetry("some-other-node", samples)
    assert tele.cpu_model == "Sampled CPU X"
    assert "CPU model from the node's samples" in tele.tdp_source


def test_holes_and_an_early_stop_are_telemetry_gaps() -> None:
    """Samples every second with a 6 s hole, stopping 10 s before the job's end: two gaps, with times."""
    times = [k * S for k in (0, 1, 2, 3, 9, 10)]
    gaps = telemetry_gaps("n0", times, (0, 20 * S), sample_interval_ns(times, []))
    assert [(g["from_ts_ns"], g["to_ts_ns"]) for g in gaps] == [(3 * S, 9 * S), (10 * S, 20 * S)]
    assert "stopped before the job's end" in gaps[1]["reason"]
    assert telemetry_gaps("n0", [k * S for k in range(21)], (0, 20 * S), S) == []
