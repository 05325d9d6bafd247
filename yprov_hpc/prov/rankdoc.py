"""Folding one rank's events into its PROV-JSON document, series file and environment file."""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from yprov_hpc.wire.records import Kind
from yprov_hpc.core.hashing import sha256_file
from yprov_hpc.core.layout import RunLayout
from yprov_hpc.prov.vocab import DocumentBuilder, qname, run_id_of, time_literal
from yprov_hpc.fold.series import SeriesColumns, build_table, context_spans, summarize, write_series

_METRIC = int(Kind.METRIC)
_EXEC = int(Kind.EXEC_TIME)
_MARK = int(Kind.MARK)


@dataclass
class RankFold:
    """Everything the merge learns about one rank from its events."""

    rank: int
    start: dict[str, Any] = field(default_factory=dict)
    start_ns: int | None = None
    end_ns: int | None = None
    last_ns: int = 0
    status: str = ""
    end_flags: dict[str, Any] = field(default_factory=dict)
    params: dict[str, tuple[Any, str, int]] = field(default_factory=dict)
    columns: SeriesColumns = field(default_factory=SeriesColumns)
    contexts: dict[str, list[int]] = field(default_factory=dict)
    artifacts: list[tuple[str, str | None, int | None, int, dict[str, Any]]] = field(default_factory=list)
    environment: dict[str, Any] = field(default_factory=dict)
    models: list[tuple[str, str | None, int | None, int, dict[str, Any]]] = field(default_factory=list)
    versions: list[tuple[str, str | None, int | None, int, dict[str, Any]]] = field(default_factory=list)
    datasets: list[tuple[str, str | None, int, dict[str, Any]]] = field(default_factory=list)
    marks: list[tuple[str, str | None, int | None, int]] = field(default_factory=list)
    hellos: int = 0
    byes: int = 0
    unknown_kinds: dict[int, int] = field(default_factory=dict)  # kind -> count (a newer writer's)
    events: int = 0

    def _touch_context(self, ctx: str | None, ts: int) -> None:
        if ctx is None:
            return
        span = self.contexts.get(ctx)
        if span is None:
            self.contexts[ctx] = [ts, ts]
        else:
            span[0] = min(span[0], ts)
            span[1] = max(span[1], ts)

    def add_metric(self, name: str, ctx: str | None, step: int | None, value: float, ts: int) -> None:
        """A metric the merge derives (system and carbon metrics at marks)."""
        self._series("metric", name, ctx, step, value, ts)

    def _series(self, kind: str, name: str, ctx: str | None, step: int | None, value: float, ts: int) -> None:
        self.columns.add(kind, name, ctx, step, value, ts)

    def add(self, ev: list[Any]) -> None:
        """Fold one event; kinds this version does not know are counted and reported."""
        self.events += 1
        kind = ev[0]
        ts = ev[1] if len(ev) > 1 and isinstance(ev[1], int) else 0
        if ts > self.last_ns:
            self.last_ns = ts
        if kind == _METRIC:
            self._series("metric", ev[2], ev[4], ev[5], float(ev[3]), ts)
        elif kind == _EXEC:
            self._series("execution_time", ev[2], ev[4], ev[5], float(ev[3]), ts)
        elif kind == _MARK:
            self._series("mark", ev[2], ev[3], ev[4], math.nan, ts)
            self.marks.append((ev[2], ev[3], ev[4], ts))
        elif kind == Kind.PARAM:
            self.params.setdefault(ev[2], (ev[3], ev[4], ts))
        elif kind == Kind.RUN_START:
            self.start = ev[2]
            self.start_ns = ts
        elif kind == Kind.RUN_END:
            self.status = ev[2]
            self.end_ns = ts
            self.end_flags = ev[3] if len(ev) > 3 and isinstance(ev[3], dict) else {}
        elif kind == Kind.ARTIFACT:
            self.artifacts.append((ev[2], ev[3], ev[4], ts, ev[5]))
            self._touch_context(ev[3], ts)
        elif kind == Kind.ENVIRONMENT:
            self.environment = ev[2]
        elif kind == Kind.MODEL:
            self.models.append((ev[2], ev[3], ev[4], ts, ev[5]))
            self._touch_context(ev[3], ts)
        elif kind == Kind.MODEL_VERSION:
            self.versions.append((ev[2], ev[3], ev[4], ts, ev[5]))
            self._touch_context(ev[3], ts)
        elif kind == Kind.DATASET:
            self.datasets.append((ev[2], ev[3], ts, ev[4]))
            self._touch_context(ev[3], ts)
        elif kind == Kind.HELLO:
            self.hellos += 1
        elif kind == Kind.BYE:
            self.byes += 1
        else:
            self.unknown_kinds[kind] = self.unknown_kinds.get(kind, 0) + 1


@dataclass
class RankDelivery:
    """What the merge found about one rank's delivery."""

    events: int = 0
    duplicates: int = 0
    gaps: list[tuple[int, int, int]] = field(default_factory=list)  # (stream, first, last)
    missing_at_end: int = 0
    done: dict[str, Any] = field(default_factory=dict)  # the rank's done marker, if any


def _rel(layout: RunLayout, path: Path) -> str:
    return path.relative_to(layout.root).as_posix()


def write_rank(
    layout: RunLayout, fold: RankFold, delivery: RankDelivery, energy: dict[str, Any] | None = None
) -> Path:
    """Write the rank's series, environment and PROV-JSON files; return the document path."""
    r = fold.rank
    info = fold.start
    namespace = str(info.get("namespace") or "http://example.org/")
    run_id = str(info.get("run_id") or layout.root.name)
    local = f"rank{r}"
    me = run_id_of(local)
    b = DocumentBuilder(namespace, layout.experiment, run_id)

    series_path = layout.series_file(r)
    table = build_table(fold.columns)
    series_sha = write_series(table, series_path)
    for ctx_name, (first, last) in context_spans(table).items():
        span = fold.contexts.setdefault(ctx_name, [first, last])
        span[0], span[1] = min(span[0], first), max(span[1], last)
    if len(fold.columns):
        fold.last_ns = max(fold.last_ns, max(fold.columns.ts_ns))
    env_path = layout.environment_file(r)
    env_path.parent.mkdir(parents=True, exist_ok=True)
    env_path.write_bytes(orjson.dumps(fold.environment, option=orjson.OPT_INDENT_2))
    env_sha = sha256_file(env_path)

    done = delivery.done
    status = fold.status or str(done.get("status") or "incomplete (no end_run recorded)")
    start_ns = fold.start_ns
    end_ns = fold.end_ns or done.get("ended_ts_ns") or fold.last_ns or None
    stats = done.get("delivery", {})
    env = fold.environment
    b.activity(
        me,
        start_ns,
        end_ns,
        {
            "prov:type": qname("yprov:TrainingRun"),
            "prov:label": f"{layout.experiment} run {run_id}, rank {r}",
            "yprov:run_id": run_id,
            "yprov:experiment": layout.experiment,
            "yprov:rank": r,
            "yprov:local_rank": info.get("local_rank"),
            "yprov:world_size": info.get("world_size"),
            "yprov:node": info.get("node"),
            "yprov:launcher": info.get("launcher"),
            "yprov:pid": info.get("pid"),
            "yprov:status": status,
            "yprov:parent_run": info.get("parent_run"),
            "yprov:events_received": delivery.events,
            "yprov:events_duplicate_dropped": delivery.duplicates,
            "yprov:events_missing": sum(last - first + 1 for _, first, last in delivery.gaps)
            + delivery.missing_at_end,
            "yprov:events_spilled": stats.get("events_spilled"),
            "yprov:batches_resent": stats.get("batches_resent"),
            "yprov:sidecar": stats.get("sidecar"),
        },
    )
    user = env.get("user") or "unknown"
    person = b.agent(
        run_id_of(f"user.{user}"),
        {
            "prov:type": qname("prov:Person"),
            "prov:label": user,
            "yprov:user": user,
        },
    )
    process = b.agent(
        run_id_of(f"{local}.process"),
        {
            "prov:type": qname("prov:SoftwareAgent"),
            "prov:label": f"rank {r} process",
            "yprov:host": env.get("host") or info.get("node"),
            "yprov:pid": info.get("pid"),
            "yprov:software": "yprov-hpc " + str(env.get("key_packages", {}).get("yprov-hpc", "")),
        },
    )
    b.associated(me, process)
    b.on_behalf_of(process, person)

    ctx_ids: dict[str, str] = {}
    for ctx_name, (first, last) in sorted(fold.contexts.items()):
        ctx_ids[ctx_name] = b.activity(
            run_id_of(f"{local}.context.{ctx_name}"),
            first,
            last,
            {
                "prov:type": qname("yprov:Context"),
                "prov:label": ctx_name,
                "yprov:context": ctx_name,
            },
        )
        b.informed(ctx_ids[ctx_name], me)

    env_id = b.entity(
        run_id_of(f"{local}.environment"),
        {
            "prov:type": qname("yprov:Environment"),
            "prov:label": "environment",
            "yprov:command": " ".join(str(c) for c in env.get("command", [])),
            "yprov:cwd": env.get("cwd"),
            "yprov:python_version": env.get("python_version"),
            "yprov:platform": env.get("platform"),
            "yprov:host": env.get("host"),
            "yprov:user": env.get("user"),
            "yprov:git_commit": env.get("git_commit"),
            "yprov:git_branch": env.get("git_branch"),
            "yprov:git_dirty": env.get("git_dirty"),
            "yprov:launcher": env.get("launcher"),
            "yprov:launcher_variables": env.get("launcher_variables") or None,
            "yprov:packages": env.get("key_packages") or None,
            "yprov:torch_cuda": env.get("torch_cuda"),
            "yprov:nvidia_driver": env.get("nvidia_driver"),
            "yprov:path": _rel(layout, env_path),
            "yprov:sha256": env_sha,
        },
    )
    b.used(me, env_id, start_ns)

    for key, (value, type_name, ts) in fold.params.items():
        pid = b.entity(
            run_id_of(f"{local}.param.{key}"),
            {
                "prov:type": qname("yprov:Parameter"),
                "prov:label": key,
                "prov:value": value,
                "yprov:python_type": type_name,
            },
        )
        b.used(me, pid, ts)

    series_id = b.entity(
        run_id_of(f"{local}.series"),
        {
            "prov:type": qname("yprov:SeriesFile"),
            "prov:label": "metric series",
            "yprov:path": _rel(layout, series_path),
            "yprov:sha256": series_sha,
            "yprov:format": "parquet",
            "yprov:rows": len(fold.columns),
        },
    )
    b.generated(series_id, me, end_ns)
    types = {"metric": "yprov:Metric", "execution_time": "yprov:ExecutionTime", "mark": "yprov:Mark"}
    for summary in summarize(table):
        ctx = summary.context
        ident = run_id_of(f"{local}.{summary.kind}.{summary.name}.{ctx or 'run'}")
        attrs: dict[str, Any] = {
            "prov:type": qname(types[summary.kind]),
            "prov:label": summary.name,
            "yprov:context": ctx,
            "yprov:series_path": _rel(layout, series_path),
            "yprov:series_sha256": series_sha,
            "yprov:first_time": time_literal(summary.first_ns),
            "yprov:last_time": time_literal(summary.last_ns),
            "yprov:count": summary.count,
            "yprov:first_step": summary.first_step,
            "yprov:last_step": summary.last_step,
        }
        if summary.kind == "mark":
            attrs["yprov:samples"] = "system and carbon metrics at these steps come from the node's samples"
        else:
            attrs.update(
                {
                    "yprov:nan_count": summary.nan_count,
                    "yprov:min": summary.min,
                    "yprov:max": summary.max,
                    "yprov:mean": summary.mean,
                    "yprov:last": summary.last,
                }
            )
            if summary.kind == "execution_time":
                attrs["yprov:unit"] = "s"
        ent = b.entity(ident, attrs)
        b.generated(ent, ctx_ids.get(ctx or "", me), summary.last_ns)
        b.derived(ent, series_id)

    seen_names: dict[str, int] = {}
    for key, ctx, step, ts, art in fold.artifacts:
        n = seen_names.get(key, 0)
        seen_names[key] = n + 1
        ident = run_id_of(f"{local}.artifact.{Path(key).name}" + (f".v{n}" if n else ""))
        ent = b.entity(
            ident,
            {
                "prov:type": qname("yprov:Artifact"),
                "prov:label": key,
                "yprov:source_path": art.get("source"),
                "yprov:path": art.get("stored"),
                "yprov:size_bytes": art.get("size_bytes"),
                "yprov:sha256": art.get("sha256"),
                "yprov:is_dir": art.get("is_dir"),
                "yprov:context": ctx,
                "yprov:step": step,
                "yprov:user_timestamp": art.get("user_timestamp"),
            },
        )
        b.generated(ent, ctx_ids.get(ctx or "", me), ts)

    _write_torch_records(b, local, me, ctx_ids, fold)
    if energy:
        ent = b.entity(
            run_id_of(f"{local}.energy"),
            {
                "prov:type": qname("yprov:EnergyReport"),
                "prov:label": f"energy of rank {r}",
                **{f"yprov:{k}": v for k, v in energy.items()},
            },
        )
        b.generated(ent, me, end_ns)

    path = layout.rank_document(r)
    tmp = path.with_suffix(".tmp")
    tmp.write_bytes(b.to_bytes())
    os.replace(tmp, path)
    return path


def _write_torch_records(
    b: DocumentBuilder, local: str, me: str, ctx_ids: dict[str, str], fold: RankFold
) -> None:
    """Datasets (used), model versions (a revision chain per name) and models."""
    for label, ctx, ts, info in fold.datasets:
        ent = b.entity(
            run_id_of(f"{local}.dataset.{label}"),
            {
                "prov:type": qname("yprov:Dataset"),
                "prov:label": label,
                "yprov:context": ctx,
                **{f"yprov:{k}": v for k, v in info.items()},
            },
        )
        b.used(ctx_ids.get(ctx or "", me), ent, ts)

    by_weights: dict[str, str] = {}
    previous: dict[str, str] = {}
    for name, ctx, step, ts, info in sorted(fold.versions, key=lambda v: (v[0], v[4].get("version", 0))):
        ent = b.entity(
            run_id_of(f"{local}.model.{name}.v{info.get('version')}"),
            {
                "prov:type": qname("yprov:ModelVersion"),
                "prov:label": f"{name} v{info.get('version')}",
                "yprov:model_name": name,
                "yprov:context": ctx,
                "yprov:step": step,
                **{f"yprov:{k}": v for k, v in info.items()},
            },
        )
        b.generated(ent, ctx_ids.get(ctx or "", me), ts)
        if name in previous:
            b.revision_of(ent, previous[name])
        previous[name] = ent
        if info.get("state_sha256"):
            by_weights[info["state_sha256"]] = ent  # the latest version with these weights

    for label, ctx, step, ts, info in fold.models:
        attrs = {k: v for k, v in info.items() if k != "is_input"}
        ent = b.entity(
            run_id_of(f"{local}.model.{label}"),
            {
                "prov:type": qname("yprov:Model"),
                "prov:label": label,
                "yprov:context": ctx,
                "yprov:step": step,
                **{f"yprov:{k}": v for k, v in attrs.items()},
            },
        )
        activity = ctx_ids.get(ctx or "", me)
        if info.get("is_input"):
            b.used(activity, ent, ts)
        else:
            b.generated(ent, activity, ts)
        same = by_weights.get(info.get("state_sha256", ""))
        if same is not None:
            b.alternate(ent, same)  # the same weights as that saved version
