"""One rank's PROV-JSON document, built as a pure function: a rank's fold in, a document dict out.

No file I/O here: the merge writes the series and environment files first and passes their
paths and hashes in (``RankFiles``), then writes the returned document.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from yprov_hpc.fold.markers import JobEnd
from yprov_hpc.fold.rankfold import RankDelivery, RankFold
from yprov_hpc.fold.series import Summary
from yprov_hpc.prov.contexts import context_activities
from yprov_hpc.prov.vocab import (
    DocumentBuilder,
    artifact_id,
    dataset_id,
    escape,
    model_id,
    model_version_id,
    param_id,
    prov_types,
    qname,
    record_id,
    summary_id,
    time_literal,
    typed,
)
from yprov_hpc.wire.records import INT64_MAX

__all__ = ["RankFiles", "build_rank_document", "rank_status"]

# environment fields recorded as they are (the full capture is in environment/rank<r>.json)
_ENV_EXTRA = (
    "torch_cuda",
    "nvidia_driver",
    "machine",
    "cpu_model",
    "cpu_count",
    "git_root",
    "git_diff_sha256",
    "git_untracked_count",
    "entry_script",
    "entry_script_size_bytes",
    "entry_script_sha256",
    "entry_script_copy",
    "torch_initial_seed",
    "python_random_state_sha256",
    "numpy_random_state_sha256",
)
_TYPES = {"metric": "yprov:Metric", "execution_time": "yprov:ExecutionTime", "mark": "yprov:Mark"}


@dataclass(frozen=True)
class RankFiles:
    """The files the merge wrote for one rank (paths relative to the run directory)."""

    series_path: str
    series_sha256: str
    series_rows: int
    environment_path: str
    environment_sha256: str


def rank_status(fold: RankFold, delivery: RankDelivery, job_end: JobEnd | None) -> str:
    """The rank's own end_run status; else its done or lost marker's; else the job's end cause."""
    if fold.status:
        return fold.status
    status = delivery.done.get("status")
    if isinstance(status, str) and status:
        return status
    if job_end is not None:
        return job_end.rank_status
    return "incomplete (no end_run recorded)"


def _text(value: Any) -> str | None:
    return None if value is None else str(value)


def _run_activity(
    b: DocumentBuilder, experiment: str, run_id: str, fold: RankFold, delivery: RankDelivery, status: str
) -> str:
    info, stats, r = fold.start, delivery.done.get("delivery", {}), fold.rank
    end_ns = fold.end_ns or delivery.done.get("ended_ts_ns") or fold.last_ns or None
    return b.activity(
        record_id(f"rank{r}"),
        fold.start_ns,
        end_ns,
        {
            "prov:type": qname("yprov:TrainingRun"),
            "prov:label": f"{experiment} run {run_id}, rank {r}",
            "yprov:run_id": run_id,
            "yprov:experiment": experiment,
            "yprov:rank": r,
            "yprov:local_rank": info.get("local_rank"),
            "yprov:world_size": info.get("world_size"),
            "yprov:node": _text(info.get("node")),
            "yprov:launcher": info.get("launcher"),
            "yprov:pid": info.get("pid"),
            "yprov:status": status,
            "yprov:parent_run": info.get("parent_run"),
            "yprov:events_received": delivery.events,
            "yprov:events_duplicate_dropped": delivery.duplicates,
            "yprov:events_missing": delivery.events_missing,
            "yprov:events_bad": delivery.bad_events or None,
            "yprov:events_spilled": stats.get("events_spilled"),
            "yprov:batches_resent": stats.get("batches_resent"),
            "yprov:sidecar": stats.get("sidecar"),
        },
    )


def _agents_and_environment(b: DocumentBuilder, me: str, fold: RankFold, files: RankFiles) -> None:
    env, info, r = fold.environment, fold.start, fold.rank
    user = str(env.get("user") or "unknown")
    person = b.agent(
        record_id("user", tail=user),
        {"prov:type": qname("prov:Person"), "prov:label": user, "yprov:user": user},
    )
    packages = env.get("key_packages")
    version = packages.get("yprov-hpc", "") if isinstance(packages, dict) else ""
    process = b.agent(
        record_id(f"rank{r}", "process"),
        {
            "prov:type": qname("prov:SoftwareAgent"),
            "prov:label": f"rank {r} process",
            "yprov:host": env.get("host") or info.get("node"),
            "yprov:pid": info.get("pid"),
            "yprov:software": f"yprov-hpc {version}",
        },
    )
    b.associated(me, process)
    b.on_behalf_of(process, person)
    command = env.get("command")
    env_id = b.entity(
        record_id(f"rank{r}", "environment"),
        {
            "prov:type": qname("yprov:Environment"),
            "prov:label": "environment",
            "yprov:command": " ".join(str(c) for c in command) if isinstance(command, list) else command,
            **{
                f"yprov:{k}": env.get(k)
                for k in ("cwd", "python_version", "platform", "host", "user", "git_commit", "git_branch")
            },
            "yprov:git_dirty": env.get("git_dirty"),
            "yprov:launcher": env.get("launcher"),
            "yprov:launcher_variables": env.get("launcher_variables") or None,
            "yprov:packages": packages or None,
            **{f"yprov:{k}": env.get(k) for k in _ENV_EXTRA},
            "yprov:runtime_variables": env.get("runtime_variables") or None,
            "yprov:gpu_models": env.get("gpu_models") or None,
            "yprov:path": files.environment_path,
            "yprov:sha256": files.environment_sha256,
        },
    )
    b.used(me, env_id, fold.start_ns)


def _info_attrs(info: dict[str, Any]) -> dict[str, Any]:
    """An info map's items as ``yprov:`` attributes (keys escaped: they must be QNames)."""
    return {f"yprov:{escape(str(k))}": v for k, v in info.items()}


def _summaries(
    b: DocumentBuilder,
    r: int,
    me: str,
    ctx_ids: dict[str, str],
    summaries: list[Summary],
    files: RankFiles,
    end_ns: int | None,
) -> None:
    series_id = b.entity(
        record_id(f"rank{r}", "series"),
        {
            "prov:type": qname("yprov:SeriesFile"),
            "prov:label": "metric series",
            "yprov:path": files.series_path,
            "yprov:sha256": files.series_sha256,
            "yprov:format": "parquet",
            "yprov:rows": files.series_rows,
        },
    )
    b.generated(series_id, me, end_ns)
    for s in summaries:
        attrs: dict[str, Any] = {
            "prov:type": prov_types(_TYPES[s.kind]),
            "prov:label": s.name,
            "yprov:context": s.context,
            "yprov:series_path": files.series_path,
            "yprov:series_sha256": files.series_sha256,
            "yprov:first_time": time_literal(s.first_ns),
            "yprov:last_time": time_literal(s.last_ns),
            "yprov:count": s.count,
            "yprov:first_step": s.first_step,
            "yprov:last_step": s.last_step,
        }
        if s.kind == "mark":
            attrs["yprov:samples"] = "system and carbon metrics at these steps come from the node's samples"
        else:
            attrs.update(
                {
                    "yprov:nan_count": s.nan_count,
                    "yprov:min": s.min,
                    "yprov:max": s.max,
                    "yprov:mean": s.mean,
                    "yprov:last": s.last,
                    "yprov:unit": "s" if s.kind == "execution_time" else None,
                }
            )
        ent = b.entity(summary_id(r, s.kind, s.name, s.context), attrs)
        b.generated(ent, ctx_ids.get(s.context or "", me), s.last_ns)
        b.derived(ent, series_id)


def _revision(info: dict[str, Any]) -> int | None:
    rev = info.get("revision")
    return rev if type(rev) is int and 2 <= rev <= INT64_MAX else None


def _artifacts(
    b: DocumentBuilder, fold: RankFold, me: str, ctx_ids: dict[str, str], problems: list[str]
) -> None:
    """One entity per (path, revision), generated once; a re-logged path is a revision of the last."""
    r = fold.rank
    latest: dict[str, tuple[int, str]] = {}  # path -> (revision, identifier)
    for art in fold.artifacts:
        prev = latest.get(art.key)
        revision = _revision(art.info) or (prev[0] + 1 if prev else 1)
        ident = artifact_id(r, art.key, revision)
        if ident in b.doc.get("entity", {}):
            problems.append(
                f"rank {r}: artifact {art.key!r:.80} revision {revision} logged twice; kept the first"
            )
            continue
        info = art.info
        b.entity(
            ident,
            {
                "prov:type": qname("yprov:Artifact"),
                "prov:label": art.key,
                "yprov:source_path": info.get("source"),
                "yprov:path": info.get("stored"),
                "yprov:size_bytes": info.get("size_bytes"),
                "yprov:sha256": info.get("sha256"),
                "yprov:is_dir": info.get("is_dir"),
                "yprov:revision": revision if revision > 1 else None,
                "yprov:context": art.context,
                "yprov:step": art.step,
                "yprov:user_timestamp": info.get("user_timestamp"),
            },
        )
        b.generated(ident, ctx_ids.get(art.context or "", me), art.ts_ns)
        if prev is not None:
            b.revision_of(ident, prev[1])
        if prev is None or revision > prev[0]:
            latest[art.key] = (revision, ident)


def _datasets(b: DocumentBuilder, fold: RankFold, me: str, ctx_ids: dict[str, str]) -> None:
    """One entity per (label, context), used by its context each time it was logged."""
    for ds in fold.datasets:
        ident = dataset_id(fold.rank, ds.label, ds.context)
        if ident not in b.doc.get("entity", {}):
            b.entity(
                ident,
                {
                    "prov:type": prov_types("yprov:Dataset"),
                    "prov:label": ds.label,
                    "yprov:context": ds.context,
                    **_info_attrs(ds.info),
                },
            )
        b.used(ctx_ids.get(ds.context or "", me), ident, ds.ts_ns)


def _models(
    b: DocumentBuilder, fold: RankFold, me: str, ctx_ids: dict[str, str], problems: list[str]
) -> None:
    """Model versions (a revision chain per name), then models (saved: generated; loaded: used)."""
    r = fold.rank
    by_weights: dict[str, str] = {}
    previous: dict[str, str] = {}
    for mv in sorted(fold.versions, key=lambda v: (v.name, str(v.info.get("version", "")), v.ts_ns)):
        version = mv.info.get("version")
        ident = model_version_id(r, mv.name, version)
        if ident in b.doc.get("entity", {}):
            problems.append(
                f"rank {r}: model {mv.name!r:.80} version {version!r:.20} logged twice; kept the first"
            )
            continue
        b.entity(
            ident,
            {
                "prov:type": prov_types("yprov:ModelVersion"),
                "prov:label": f"{mv.name} v{version}",
                "yprov:model_name": mv.name,
                "yprov:context": mv.context,
                "yprov:step": mv.step,
                **_info_attrs(mv.info),
            },
        )
        b.generated(ident, ctx_ids.get(mv.context or "", me), mv.ts_ns)
        if mv.name in previous:
            b.revision_of(ident, previous[mv.name])
        previous[mv.name] = ident
        if isinstance(mv.info.get("state_sha256"), str):
            by_weights[mv.info["state_sha256"]] = ident  # the latest version with these weights
    saves: dict[str, tuple[int, str]] = {}
    for m in fold.models:
        activity = ctx_ids.get(m.context or "", me)
        prev = saves.get(m.label)
        revision = prev[0] + 1 if prev else 1
        ident = model_id(r, m.label) + (f"-rev{revision}" if revision > 1 else "")
        attrs = {k: v for k, v in m.info.items() if k != "is_input"}
        b.entity(
            ident,
            {
                "prov:type": prov_types("yprov:Model"),
                "prov:label": m.label,
                "yprov:context": m.context,
                "yprov:step": m.step,
                **_info_attrs(attrs),
            },
        )
        if m.info.get("is_input"):
            b.used(activity, ident, m.ts_ns)
        else:
            b.generated(ident, activity, m.ts_ns)
        if prev is not None:
            b.revision_of(ident, prev[1])
        saves[m.label] = (revision, ident)
        same = by_weights.get(str(m.info.get("state_sha256", "")))
        if same is not None:
            b.alternate(ident, same)  # the same weights as that saved version


def build_rank_document(
    *,
    namespace: str,
    experiment: str,
    run_id: str,
    fold: RankFold,
    delivery: RankDelivery,
    summaries: list[Summary],
    files: RankFiles,
    energy: dict[str, Any] | None = None,
    job_end: JobEnd | None = None,
    problems: list[str] | None = None,
) -> tuple[dict[str, Any], list[str]]:
    """(the rank's PROV-JSON document, the rank's problems: ``problems`` and those found here).

    The problems are also on the rank's activity (``yprov:problems``)."""
    r = fold.rank
    problems = list(problems or [])
    b = DocumentBuilder(namespace, experiment, run_id)
    end_ns = fold.end_ns or delivery.done.get("ended_ts_ns") or fold.last_ns or None
    me = _run_activity(b, experiment, run_id, fold, delivery, rank_status(fold, delivery, job_end))
    _agents_and_environment(b, me, fold, files)
    ctx_ids = context_activities(b, r, me, fold.contexts)
    for key, param in fold.params.items():
        previous = ""
        for revision, rec in enumerate([param, *fold.param_revisions.get(key, [])], start=1):
            ident = b.entity(
                param_id(r, key, revision),
                {
                    "prov:type": prov_types("yprov:Parameter"),
                    "prov:label": key,
                    "prov:value": rec.value,
                    "yprov:python_type": rec.type_name,
                    "yprov:revision": revision if revision > 1 else None,
                },
            )
            b.used(me, ident, rec.ts_ns)
            if previous:
                b.revision_of(ident, previous)
            previous = ident
    _summaries(b, r, me, ctx_ids, summaries, files, end_ns)
    _artifacts(b, fold, me, ctx_ids, problems)
    _models(b, fold, me, ctx_ids, problems)
    _datasets(b, fold, me, ctx_ids)
    if energy:
        ent = b.entity(
            record_id(f"rank{r}", "energy"),
            {
                "prov:type": qname("yprov:EnergyReport"),
                "prov:label": f"energy of rank {r}",
                **{f"yprov:{k}": v for k, v in energy.items()},
            },
        )
        b.generated(ent, me, end_ns)
    if problems:
        b.doc["activity"][me]["yprov:problems"] = typed(problems)
    return b.doc, problems
