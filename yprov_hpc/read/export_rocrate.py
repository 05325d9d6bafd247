"""``yprov export rocrate RUN``: the run directory becomes an RO-Crate, in place, written with
the ``rocrate`` library: ``ro-crate-metadata.json`` beside the PROV documents.

The crate lists the PROV documents (``conformsTo`` PROV-JSON), the merge report, the series
files (Parquet), the environment files, the graphs, the artifacts and the stored model versions
(with size and sha256), and describes the run as a ``CreateAction`` (Process Run Crate
profile): the training command as its instrument, the user as agent, the params as
``PropertyValue`` objects, the documents and artifacts as results, start and end time, and an
action status from the run's status. The private ``journal/`` directory is never part of the
crate. ``end_run(crate_ro_crate=True)`` calls ``export_rocrate`` too.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from yprov_hpc.core.errors import YProvError
from yprov_hpc.read.documents import inside
from yprov_hpc.read.load import RunRecord, load_run

__all__ = ["METADATA_FILE", "RoCrateExportError", "export_rocrate"]

METADATA_FILE = "ro-crate-metadata.json"
PROCESS_RUN_PROFILE = "https://w3id.org/ro/wfrun/process/0.5"
PROV_JSON = "https://www.w3.org/submissions/prov-json/"
_FORMATS = {
    ".json": "application/json",
    ".parquet": "application/vnd.apache.parquet",
    ".dot": "text/vnd.graphviz",
    ".svg": "image/svg+xml",
    ".html": "text/html",
    ".md": "text/markdown",
    ".png": "image/png",
}
_STATUS = {
    "finished": "http://schema.org/CompletedActionStatus",
    "failed": "http://schema.org/FailedActionStatus",
    "killed": "http://schema.org/FailedActionStatus",
}


class RoCrateExportError(YProvError, RuntimeError):
    """The rocrate library is missing, or the crate could not be written."""

    def __init__(self, run_dir: Path, reason: str) -> None:
        self.run_dir = run_dir
        self.reason = reason
        super().__init__(f"RO-Crate of {run_dir}: {reason}")


def export_rocrate(run_dir: Path | str) -> Path:
    """Write ``<run_dir>/ro-crate-metadata.json`` and return its path."""
    try:
        from rocrate.rocrate import ROCrate  # type: ignore[import-untyped]
    except ImportError:
        raise RoCrateExportError(Path(run_dir), "needs rocrate: pip install 'yprov-hpc[rocrate]'") from None
    run = load_run(run_dir)
    crate = ROCrate()
    crate.name = f"{run.experiment} run {run.id}"
    crate.description = (
        f"Provenance of the {run.experiment} training run {run.id} ({len(run.ranks)} rank(s), "
        f"status {run.status}), recorded by yprov-hpc as W3C PROV-JSON."
    )
    if run.end is not None:
        crate.datePublished = run.end
    crate.root_dataset["conformsTo"] = {"@id": PROCESS_RUN_PROFILE}
    crate.root_dataset["keywords"] = ["provenance", "W3C PROV", "machine learning", run.experiment]
    results = _add_files(crate, run)
    _add_action(crate, run, results)
    try:
        crate.write(run.path)
    except OSError as exc:
        raise RoCrateExportError(run.path, f"cannot write ({exc.strerror or exc})") from None
    return run.path / METADATA_FILE


def _file(crate: Any, run: RunRecord, path: Path, properties: dict[str, Any]) -> Any:
    rel = path.relative_to(run.path).as_posix()
    props = {"name": path.name, "encodingFormat": _FORMATS.get(path.suffix, "application/octet-stream")}
    props.update(properties)
    props["contentSize"] = str(path.stat().st_size)
    return crate.add_file(path, dest_path=rel, properties=props)


def _add_files(crate: Any, run: RunRecord) -> list[Any]:
    """Every file of the run except the journals; returns the entities that the run produced."""
    results = []
    for doc in run.documents:
        kind = "collection of the ranks' documents" if doc == run.collection else "one rank's document"
        results.append(
            _file(
                crate, run, doc, {"conformsTo": {"@id": PROV_JSON}, "description": f"W3C PROV-JSON, {kind}"}
            )
        )
    report = run.path / "merge_report.json"
    if report.is_file():
        _file(crate, run, report, {"description": "what the merge read, dropped and found missing"})
    for rank, (path, sha256) in sorted(run.series.items()):
        if path.is_file():
            props = {"description": f"metric series of rank {rank}", "sha256": sha256}
            results.append(_file(crate, run, path, props))
    for node, path in sorted(run.node_series.items()):
        if path.is_file():
            results.append(_file(crate, run, path, {"description": f"system samples of node {node}"}))
    for rank in sorted(run.environment):
        env = run.path / "environment" / f"rank{rank}.json"
        if env.is_file():
            _file(crate, run, env, {"description": f"environment of rank {rank}: packages, host, git"})
    for graph in run.graphs:
        _file(crate, run, graph, {"description": f"drawing of {graph.stem}"})
    for kind, items in (("artifact", run.artifacts), ("model version", run.model_versions)):
        for item in items:
            stored = inside(run.path, item.get("path"))
            if stored is not None and stored.is_file():
                what = f"{kind} {item.get('prov:label')} of rank {item['rank']}"
                props = {"description": what, "sha256": str(item.get("sha256") or "")}
                results.append(_file(crate, run, stored, props))
    return results


def _add_action(crate: Any, run: RunRecord, results: list[Any]) -> None:
    """The run as a CreateAction (Process Run Crate): instrument, agent, params, results."""
    from rocrate.model.contextentity import ContextEntity  # type: ignore[import-untyped]

    env = run.environment.get(min(run.environment), {}) if run.environment else {}
    command = env.get("command")
    program = crate.add(
        ContextEntity(
            crate,
            "#training-program",
            properties={
                "@type": "SoftwareApplication",
                "name": " ".join(command)
                if isinstance(command, list)
                else str(command or "training program"),
            },
        )
    )
    params = [
        crate.add(
            ContextEntity(
                crate,
                f"#param-{i}",
                properties={"@type": "PropertyValue", "name": str(key), "value": str(value)},
            )
        )
        for i, (key, value) in enumerate(sorted(run.common_params().items()))
    ]
    props: dict[str, Any] = {
        "@type": "CreateAction",
        "name": f"{run.experiment} run {run.id}",
        "actionStatus": {"@id": _STATUS.get(run.status, "http://schema.org/FailedActionStatus")},
    }
    if run.start is not None:
        props["startTime"] = run.start.isoformat()
    if run.end is not None:
        props["endTime"] = run.end.isoformat()
    if run.status != "finished":
        props["error"] = f"status {run.status}" + (f": {run.problems[0]}" if run.problems else "")
    action = crate.add_action(
        program, identifier=f"#run-{run.id}", object=params or None, result=results, properties=props
    )
    user = env.get("user")
    if isinstance(user, str) and user:
        person = crate.add(
            ContextEntity(crate, f"#user-{user}", properties={"@type": "Person", "name": user})
        )
        action["agent"] = person
    crate.root_dataset["mentions"] = [action]
