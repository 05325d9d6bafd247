"""Node energy from the sidecar's samples, and its attribution to ranks.

Method per source, best first: cumulative hardware counters (RAPL ``energy_uj``, NVML total
energy), else integrated power (trapezoid over the samples), else a TDP estimate (CPU only:
TDP x utilisation). Every figure carries its method.

Attribution, per interval between two system samples: a GPU's energy goes to the rank(s)
whose process is on it (NVML's process list; else the GPU with the rank's local rank index),
split evenly; CPU+DRAM energy is split by the ranks' CPU time over the node's busy CPU time;
what is left is the node's "other". For every interval, the ranks' shares plus "other" equal
the node's total - the invariant the tests check.
"""

from __future__ import annotations

import bisect
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cached_property
from itertools import islice
from operator import itemgetter, le
from typing import Any

DEFAULT_CPU_TDP_W = 85.0  # codecarbon's fallback when a CPU model is not in its table
MAX_RANKS_PER_NODE = 1024  # ranks one node's samples may name (a node has fewer cores than this)


def _num(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and value == value


def _maps(value: Any) -> bool:
    return isinstance(value, dict) and all(isinstance(v, dict) for v in value.values())


def check_sample(source: str, values: dict[str, Any]) -> str | None:
    """Why one sample's values cannot be used for energy (None when they can): the merge reads
    journals, and a journal is untrusted, so every field the energy fold reads is checked here."""
    if source == "system":
        for key in ("cpu_percent", "cpu_busy_s"):
            if key in values and not _num(values[key]):
                return f"system {key} is not a number"
        ranks = values.get("ranks", {})
        if not _maps(ranks) or len(ranks) > MAX_RANKS_PER_NODE:
            return "system ranks is not a map of rank -> map (or names too many ranks)"
        for r, info in ranks.items():
            if not (r.isdigit() and len(r) <= 7 and type(info.get("pid")) is int and _num(info.get("cpu_s"))):
                return f"system rank {r!r:.20} lacks an int pid or a numeric cpu_s"
    elif source == "rapl":
        domains = values.get("domains", {})
        if not _maps(domains) or not all(_num(d.get("energy_j", 0.0)) for d in domains.values()):
            return "rapl domains is not a map of domain -> {energy_j: number}"
    elif source == "nvml":
        gpus = values.get("gpus", {})
        if not _maps(gpus):
            return "nvml gpus is not a map of GPU -> map"
        for gpu in gpus.values():
            if not all(_num(gpu[k]) for k in ("energy_j", "power_w") if k in gpu):
                return "nvml GPU energy_j or power_w is not a number"
            if "pids" in gpu and not (
                isinstance(gpu["pids"], list) and all(type(p) is int for p in gpu["pids"])
            ):
                return "nvml GPU pids is not a list of ints"
    return None


def interpolate(times: list[int], values: list[float], t: int) -> float:
    """Piecewise-linear value at ``t`` (clamped to the ends)."""
    if not times:
        return 0.0
    if t <= times[0]:
        return values[0]
    if t >= times[-1]:
        return values[-1]
    i = bisect.bisect_right(times, t)
    t0, t1 = times[i - 1], times[i]
    v0, v1 = values[i - 1], values[i]
    return v0 + (v1 - v0) * (t - t0) / (t1 - t0) if t1 > t0 else v1


def interpolate_many(times: list[int], values: list[float], ts: Sequence[int]) -> list[float]:
    """``interpolate`` at each of ``ts``, with the same arithmetic. Times in order (marks are)
    are taken a sample interval at a time: two binary searches per interval, one expression per
    time; otherwise one ``interpolate`` per time."""
    if not times:
        return [0.0] * len(ts)
    if not all(map(le, ts, islice(ts, 1, None))):
        return [interpolate(times, values, t) for t in ts]
    first, last = times[0], times[-1]
    start, end = bisect.bisect_right(ts, first), bisect.bisect_left(ts, last)  # inside: start..end
    out = [values[0]] * start
    for i in range(1, len(times)):
        if start >= end:
            break
        stop = bisect.bisect_left(ts, times[i], start, end)
        if stop > start:  # first < times[i - 1] <= t < times[i] < last, for these
            t0, t1, v0 = times[i - 1], times[i], values[i - 1]
            dv, dt = values[i] - v0, t1 - t0
            out.extend([v0 + dv * (t - t0) / dt for t in ts[start:stop]])
            start = stop
    out.extend([values[-1]] * (len(ts) - len(out)))
    return out


def cumulative_from_power(times: list[int], power_w: list[float]) -> list[float]:
    """Energy (J) since the first sample, by the trapezoid rule."""
    out = [0.0]
    for k in range(1, len(times)):
        dt = (times[k] - times[k - 1]) / 1e9
        out.append(out[-1] + 0.5 * (power_w[k] + power_w[k - 1]) * dt)
    return out


def split_interval(
    energy_j: float, rank_cpu_s: dict[int, float], node_busy_s: float
) -> tuple[dict[int, float], float]:
    """Split one interval's CPU+DRAM energy by CPU time: (rank shares, other)."""
    used = {r: max(0.0, s) for r, s in rank_cpu_s.items()}
    denominator = max(node_busy_s, sum(used.values()))
    if energy_j <= 0 or denominator <= 0:
        return {r: 0.0 for r in used}, energy_j
    shares = {r: energy_j * (s / denominator) for r, s in used.items()}  # fraction first: never > 1
    return shares, energy_j - sum(shares.values())


@dataclass
class NodeEnergy:
    """One node's energy timeline on its system-sample times, and each rank's share of it."""

    node: str
    times: list[int] = field(default_factory=list)
    cpu_j: list[float] = field(default_factory=list)  # CPU+DRAM, cumulative
    gpu_j: dict[str, list[float]] = field(default_factory=dict)  # per GPU, cumulative
    rank_cpu_j: dict[int, list[float]] = field(default_factory=dict)
    rank_gpu_j: dict[int, list[float]] = field(default_factory=dict)
    other_j: list[float] = field(default_factory=list)
    cpu_method: str = "none"
    gpu_methods: dict[str, str] = field(default_factory=dict)
    gpu_users: dict[str, list[int]] = field(default_factory=dict)
    system: list[dict[str, Any]] = field(default_factory=list)  # the system samples, in time order
    gpu_samples: list[tuple[int, dict[str, Any]]] = field(default_factory=list)

    @cached_property
    def total_j(self) -> list[float]:
        """Node total (CPU+DRAM and GPUs), cumulative; computed once, when first asked (after the build)."""
        return [self.cpu_j[k] + sum(g[k] for g in self.gpu_j.values()) for k in range(len(self.times))]

    @cached_property
    def _system_times(self) -> list[int]:
        return [s["ts_ns"] for s in self.system]

    @cached_property
    def _gpu_times(self) -> list[int]:
        return [ts for ts, _ in self.gpu_samples]

    def rank_total_at(self, rank: int, t: int) -> float:
        """A rank's cumulative energy (CPU+DRAM share + GPU) at wall time ``t`` (ns)."""
        cpu = self.rank_cpu_j.get(rank)
        gpu = self.rank_gpu_j.get(rank)
        value = interpolate(self.times, cpu, t) if cpu else 0.0
        return value + (interpolate(self.times, gpu, t) if gpu else 0.0)

    def rank_totals_at(self, rank: int, ts: Sequence[int]) -> list[float]:
        """``rank_total_at`` at each of ``ts`` (the same sums)."""
        cpu, gpu = self.rank_cpu_j.get(rank), self.rank_gpu_j.get(rank)
        values = interpolate_many(self.times, cpu, ts) if cpu else [0.0] * len(ts)
        more = interpolate_many(self.times, gpu, ts) if gpu else [0.0] * len(ts)
        return [a + b for a, b in zip(values, more, strict=True)]

    def node_totals_at(self, ts: Sequence[int]) -> list[float]:
        return interpolate_many(self.times, self.total_j, ts) if self.times else [0.0] * len(ts)

    def system_indices(self, ts: Sequence[int]) -> list[int]:
        """For each of ``ts``, the index of ``system_at``'s sample (there is at least one)."""
        return [i - 1 if i else 0 for i in map(bisect.bisect_right, [self._system_times] * len(ts), ts)]

    def gpu_indices(self, ts: Sequence[int]) -> list[int]:
        """For each of ``ts``, the index of ``gpus_at``'s sample (-1: none)."""
        if not self.gpu_samples:
            return [-1] * len(ts)
        return [i - 1 if i else 0 for i in map(bisect.bisect_right, [self._gpu_times] * len(ts), ts)]

    def node_total_at(self, t: int) -> float:
        return interpolate(self.times, self.total_j, t) if self.times else 0.0

    def system_at(self, t: int) -> dict[str, Any] | None:
        """The last system sample at or before ``t`` (else the first)."""
        if not self.system:
            return None
        i = bisect.bisect_right(self._system_times, t)
        return self.system[max(0, i - 1)]

    def gpus_at(self, t: int) -> dict[str, Any]:
        if not self.gpu_samples:
            return {}
        i = bisect.bisect_right(self._gpu_times, t)
        return self.gpu_samples[max(0, i - 1)][1]


def gpu_of_rank(info: dict[str, Any]) -> str:
    """The NVML index of a rank's GPU from its hints: torch's current device, else its local
    rank, taken through CUDA_VISIBLE_DEVICES when that lists indices (NVML counts all GPUs)."""
    device = info.get("cuda_device", info.get("local_rank", 0))
    visible = [v.strip() for v in str(info.get("cuda_visible_devices", "")).split(",") if v.strip()]
    if visible and all(v.isdigit() for v in visible) and type(device) is int:
        return visible[device % len(visible)]
    return str(device)


def _cpu_domains(domains: dict[str, Any]) -> list[str]:
    """Top-level packages and DRAM: core/uncore are parts of a package, psys overlaps all."""
    return [n for n in domains if (n.startswith("package") and "/" not in n) or n.endswith("dram")]


def build_node_energy(
    node: str,
    samples: list[tuple[int, str, dict[str, Any]]],
    rank_local: dict[int, int],
    cpu_tdp_w: float = DEFAULT_CPU_TDP_W,
) -> NodeEnergy:
    """The energy timeline of one node from its (ts_ns, source, values) samples."""
    ne = NodeEnergy(node)
    by_time = itemgetter(0)  # never the values: two samples of one time keep their order
    system = sorted(((ts, v) for ts, src, v in samples if src == "system"), key=by_time)
    rapl = sorted(((ts, v) for ts, src, v in samples if src == "rapl"), key=by_time)
    nvml = sorted(((ts, v) for ts, src, v in samples if src == "nvml"), key=by_time)
    ne.system = [{"ts_ns": ts, **v} for ts, v in system]
    ne.gpu_samples = [(ts, v.get("gpus", {})) for ts, v in nvml]
    ne.times = [ts for ts, _ in system]
    if not ne.times:
        return ne

    # CPU + DRAM, cumulative on the system-sample times
    if rapl:
        names = _cpu_domains(rapl[-1][1].get("domains", {}))
        r_times = [ts for ts, _ in rapl]
        r_total = [sum(v["domains"].get(d, {}).get("energy_j", 0.0) for d in names) for _, v in rapl]
        ne.cpu_j = [
            interpolate(r_times, r_total, t) - interpolate(r_times, r_total, ne.times[0]) for t in ne.times
        ]
        ne.cpu_method = "rapl_counters(" + ",".join(sorted(names)) + ")"
    else:
        power = [cpu_tdp_w * float(v.get("cpu_percent", 0.0)) / 100.0 for _, v in system]
        ne.cpu_j = cumulative_from_power(ne.times, power)
        ne.cpu_method = f"tdp_estimate({cpu_tdp_w:g} W x cpu utilisation)"

    # GPUs, cumulative on the system-sample times
    gpu_ids = sorted(
        {g for _, v in nvml for g in v.get("gpus", {})},
        key=lambda g: (0, int(g), "") if g.isdigit() else (1, 0, g),
    )
    g_times = [ts for ts, _ in nvml]
    for g in gpu_ids:
        rows = [v["gpus"].get(g, {}) for _, v in nvml]
        if all("energy_j" in row for row in rows):
            cum = [float(row["energy_j"]) for row in rows]
            ne.gpu_methods[g] = "nvml_energy_counter"
        elif all("power_w" in row for row in rows):
            cum = cumulative_from_power(g_times, [float(row["power_w"]) for row in rows])
            ne.gpu_methods[g] = "nvml_power_integrated"
        else:
            ne.gpu_methods[g] = "unavailable"
            continue
        base = interpolate(g_times, cum, ne.times[0])
        ne.gpu_j[g] = [interpolate(g_times, cum, t) - base for t in ne.times]

    ranks = _gpu_users(ne, system, nvml, rank_local)
    _attribute(ne, system, ranks)
    return ne


Timed = list[tuple[int, dict[str, Any]]]


def _gpu_users(ne: NodeEnergy, system: Timed, nvml: Timed, rank_local: dict[int, int]) -> list[int]:
    """Fill ``ne.gpu_users`` (NVML's process lists, else each rank's hints); return the ranks."""
    pid_rank: dict[int, int] = {}
    rank_gpu = {r: str(local) for r, local in rank_local.items()}
    for _, v in system:
        for r, info in v.get("ranks", {}).items():
            pid_rank[int(info["pid"])] = int(r)
            rank_gpu.setdefault(int(r), gpu_of_rank(info))
    ranks = sorted({int(r) for _, v in system for r in v.get("ranks", {})} | set(rank_local))
    ranks = ranks[:MAX_RANKS_PER_NODE]  # bounded memory whatever the samples claim
    known = set(ranks)
    for g in ne.gpu_j:
        if any("pids" in v["gpus"].get(g, {}) for _, v in nvml):  # NVML lists its processes
            pids = {p for _, v in nvml for p in v["gpus"].get(g, {}).get("pids", [])}
            users = sorted({pid_rank[p] for p in pids if p in pid_rank})
        else:  # no process lists (MIG, no permission): the rank's own hints
            users = sorted(r for r, gpu in rank_gpu.items() if gpu == g)
        ne.gpu_users[g] = [u for u in users if u in known]
    return ranks


def _attribute(ne: NodeEnergy, system: Timed, ranks: list[int]) -> None:
    """Split every interval between two system samples: CPU+DRAM by CPU time, each GPU to its
    users, the rest to "other" (cumulative series on the system-sample times)."""
    n = len(ne.times)
    ne.rank_cpu_j = {r: [0.0] * n for r in ranks}
    ne.rank_gpu_j = {r: [0.0] * n for r in ranks}
    ne.other_j = [0.0] * n
    for k in range(1, n):
        prev, cur = system[k - 1][1], system[k][1]
        d_busy = float(cur.get("cpu_busy_s", 0.0)) - float(prev.get("cpu_busy_s", 0.0))
        d_rank = {}
        for r in ranks:
            a, b = prev.get("ranks", {}).get(str(r)), cur.get("ranks", {}).get(str(r))
            d_rank[r] = float(b["cpu_s"]) - float(a["cpu_s"]) if a and b and a["pid"] == b["pid"] else 0.0
        shares, other = split_interval(ne.cpu_j[k] - ne.cpu_j[k - 1], d_rank, d_busy)
        for r in ranks:
            ne.rank_cpu_j[r][k] = ne.rank_cpu_j[r][k - 1] + shares[r]
            ne.rank_gpu_j[r][k] = ne.rank_gpu_j[r][k - 1]
        for g, cum in ne.gpu_j.items():
            d_gpu = cum[k] - cum[k - 1]
            users = ne.gpu_users.get(g, [])
            if users:
                for r in users:
                    ne.rank_gpu_j[r][k] += d_gpu / len(users)
            else:
                other += d_gpu
        ne.other_j[k] = ne.other_j[k - 1] + other
