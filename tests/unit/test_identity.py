"""Identifiers are injective by construction, valid NCNames, and the same on every rank; a
re-logged artifact path is a new revision, generated once."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from lxml import etree

from yprov_hpc.merge import merge_run
from yprov_hpc.prov.vocab import (
    artifact_id,
    context_id,
    dataset_id,
    model_id,
    model_version_id,
    ncname,
    param_id,
    record_id,
    summary_id,
)
from yprov_hpc.wire.codec import encode_batch
from yprov_hpc.wire.journal import JournalWriter
from yprov_hpc.wire.records import Kind

_NCNAME = re.compile(r"[A-Za-z_][A-Za-z0-9_.\-]*")
T0 = 1_780_000_000_000_000_000

# names rich in the characters that used to collide: separators, "/", "-", "run", non-ASCII
_text = st.text(alphabet=st.sampled_from(list("ab.-/_ éR0run\n")), min_size=1, max_size=8)
_ctx = st.none() | _text


def _identify(item: tuple[Any, ...]) -> str:
    kind, rank, *args = item
    if kind == "summary":
        return summary_id(rank, args[0], args[1], args[2])
    if kind == "context":
        return context_id(rank, args[0])
    if kind == "param":
        return param_id(rank, args[0])
    if kind == "artifact":
        return artifact_id(rank, args[0], args[1])
    if kind == "dataset":
        return dataset_id(rank, args[0], args[1])
    if kind == "model":
        return model_id(rank, args[0])
    if kind == "version":
        return model_version_id(rank, args[0], args[1])
    return record_id(kind, tail=args[0])  # user, node


_items = st.one_of(
    st.tuples(st.just("summary"), st.integers(0, 2), st.sampled_from(["metric", "mark"]), _text, _ctx),
    st.tuples(st.just("context"), st.integers(0, 2), _text),
    st.tuples(st.just("param"), st.integers(0, 2), _text),
    st.tuples(st.just("artifact"), st.integers(0, 2), _text, st.integers(1, 3)),
    st.tuples(st.just("dataset"), st.integers(0, 2), _text, _ctx),
    st.tuples(st.just("model"), st.integers(0, 2), _text),
    st.tuples(st.just("version"), st.integers(0, 2), _text, st.integers(1, 3)),
    st.tuples(st.sampled_from(["user", "node"]), st.just(0), _text),
)


@settings(max_examples=300)
@given(st.lists(_items, min_size=2, max_size=40, unique=True))
def test_distinct_records_get_distinct_identifiers(items: list[tuple[Any, ...]]) -> None:
    """Any distinct (kind, rank, names, context, path, revision) inputs map to distinct identifiers."""
    ids = [_identify(item) for item in items]
    assert len(set(ids)) == len(ids), sorted(zip(ids, items, strict=True))


@given(_items)
def test_every_identifier_is_a_valid_ncname(item: tuple[Any, ...]) -> None:
    """The local part of every identifier is an XML NCName (PROV-XML must validate)."""
    local = _identify(item).removeprefix("run:")
    assert _NCNAME.fullmatch(local), local
    etree.QName("http://x/", local)


@given(st.text(min_size=1, max_size=30), st.text(min_size=1, max_size=30))
def test_ncname_is_injective(a: str, b: str) -> None:
    """Two different texts never share an NCName."""
    if a != b:
        assert ncname(a) != ncname(b)


def test_the_reported_collisions_are_gone() -> None:
    """The collisions issue 9 measured: paths with one file name, dotted names against dotted
    contexts, a run-level metric against a context named "run", one dataset label in two contexts."""
    assert artifact_id(0, "a/config.yaml") != artifact_id(0, "b/config.yaml")
    assert summary_id(0, "metric", "a.b", "c") != summary_id(0, "metric", "a", "b.c")
    assert summary_id(0, "metric", "loss", None) != summary_id(0, "metric", "loss", "run")
    assert dataset_id(0, "train", "training") != dataset_id(0, "train", "validation")


def test_a_name_has_the_same_identifier_on_every_rank() -> None:
    """Escaping depends on the name alone: ranks 0 and 1 differ only in the rank component."""
    a, b = (
        summary_id(0, "metric", "system/cpu %", "my ctx/é"),
        summary_id(1, "metric", "system/cpu %", "my ctx/é"),
    )
    assert a.removeprefix("run:rank0") == b.removeprefix("run:rank1")


def test_common_names_stay_readable() -> None:
    """Plain names, file names and contexts read as they are written."""
    assert summary_id(0, "metric", "MSE_train", "training") == "run:rank0.metric.MSE_train.training"
    assert summary_id(0, "metric", "loss", None) == "run:rank0.metric.loss.run"
    assert artifact_id(0, "weights.bin") == "run:rank0.artifact.weights.bin"
    assert artifact_id(0, "ckpt/model.pt", 2) == "run:rank0.artifact.ckpt--model.pt-rev2"
    assert model_version_id(0, "mnist", 2) == "run:rank0.model.mnist.v2"


def _artifact(ts: int, path: str, stored: str, revision: int | None = None) -> tuple[Any, ...]:
    info: dict[str, Any] = {"source": path, "stored": stored, "size_bytes": 1, "sha256": stored}
    if revision is not None:
        info["revision"] = revision
    return (int(Kind.ARTIFACT), ts, path, None, None, info)


def test_artifacts_are_keyed_by_path_and_relogged_paths_are_revisions(tmp_path: Path) -> None:
    """Two files named config.yaml and one path logged twice: three entities, each generated once,
    the second revision wasRevisionOf the first, and every stored copy is referenced."""
    events = [
        (int(Kind.RUN_START), T0, {"run_id": "r1", "experiment": "e", "world_size": 1, "node": "n0"}),
        _artifact(T0 + 1, "a/config.yaml", "artifacts/rank0/a"),
        _artifact(T0 + 2, "b/config.yaml", "artifacts/rank0/b"),
        _artifact(T0 + 3, "a/config.yaml", "artifacts/rank0/a2", revision=2),
        (int(Kind.RUN_END), T0 + 4, "finished", {}),
    ]
    root = tmp_path / "e_r1"
    (root / "journal").mkdir(parents=True)
    writer = JournalWriter(root / "journal" / "node-n0.journal")
    writer.append(*encode_batch("r1", 0, "n0", 1, 0, events, T0))
    writer.close()
    merge_run(root, create_svg=False)
    doc = json.loads((root / "prov_e_rank0.json").read_text())
    arts = {k: v for k, v in doc["entity"].items() if ".artifact." in k}
    assert set(arts) == {
        "run:rank0.artifact.a--config.yaml",
        "run:rank0.artifact.b--config.yaml",
        "run:rank0.artifact.a--config.yaml-rev2",
    }
    generated = [r["prov:entity"] for r in doc["wasGeneratedBy"].values() if r["prov:entity"] in arts]
    assert sorted(generated) == sorted(arts)
    revisions = [
        (r["prov:generatedEntity"], r["prov:usedEntity"])
        for r in doc["wasDerivedFrom"].values()
        if r.get("prov:type", {}).get("$") == "prov:Revision"
    ]
    assert revisions == [("run:rank0.artifact.a--config.yaml-rev2", "run:rank0.artifact.a--config.yaml")]
    assert {a["yprov:path"] for a in arts.values()} == {
        "artifacts/rank0/a",
        "artifacts/rank0/b",
        "artifacts/rank0/a2",
    }


def _merge_events(root: Path, events: list[tuple[Any, ...]]) -> dict[str, Any]:
    start = (int(Kind.RUN_START), T0, {"run_id": "r1", "experiment": "e", "world_size": 1, "node": "n0"})
    (root / "journal").mkdir(parents=True)
    writer = JournalWriter(root / "journal" / "node-n0.journal")
    writer.append(*encode_batch("r1", 0, "n0", 1, 0, [start, *events], T0))
    writer.close()
    merge_run(root, create_svg=False)
    doc: dict[str, Any] = json.loads((root / "prov_e_rank0.json").read_text())
    return doc


@settings(max_examples=10, deadline=None)
@given(
    st.lists(st.sampled_from(["a/config.yaml", "b/config.yaml", "config.yaml", "a/b c/é.bin"]), max_size=8)
)
def test_every_stored_artifact_is_referenced_once(tmp_path_factory: Any, paths: list[str]) -> None:
    """Any sequence of logged paths, re-logs included: one entity per event, generated once, and
    every stored copy referenced by exactly one entity."""
    root = tmp_path_factory.mktemp("run") / "e_r1"
    events = [_artifact(T0 + 1 + i, path, f"artifacts/rank0/{i}") for i, path in enumerate(paths)]
    doc = _merge_events(root, events)
    arts = {k: v for k, v in doc.get("entity", {}).items() if ".artifact." in k}
    assert sorted(a["yprov:path"] for a in arts.values()) == sorted(
        f"artifacts/rank0/{i}" for i in range(len(paths))
    )
    generated = [r["prov:entity"] for r in doc.get("wasGeneratedBy", {}).values() if r["prov:entity"] in arts]
    assert sorted(generated) == sorted(arts)


def test_odd_names_make_valid_documents_with_computable_identifiers(tmp_path: Path) -> None:
    """Spaces, slashes, dots, dashes and non-ASCII in names, contexts, paths and info keys, and a
    uint64 value: the
    document validates (the suite validates every document it makes) and each record is where
    the identifier functions say."""
    ctx = "my ctx/é"
    events = [
        (int(Kind.PARAM), T0 + 1, "learning rate.init", 0.1, "float"),
        (int(Kind.PARAM), T0 + 1, "seed", 2**64 - 1, "int"),  # beyond xsd:long: still valid
        (int(Kind.METRIC), T0 + 2, "val loss.top-1", 0.5, ctx, 0),
        _artifact(T0 + 3, "/tmp/x y/ü.bin", "artifacts/rank0/u"),
        (int(Kind.DATASET), T0 + 4, "train set", ctx, {"num samples": 10, "ok": True}),
        (int(Kind.RUN_END), T0 + 5, "finished", {}),
    ]
    doc = _merge_events(tmp_path / "e_r1", events)
    assert param_id(0, "learning rate.init") in doc["entity"]
    assert summary_id(0, "metric", "val loss.top-1", ctx) in doc["entity"]
    assert artifact_id(0, "/tmp/x y/ü.bin") in doc["entity"]
    dataset = doc["entity"][dataset_id(0, "train set", ctx)]
    assert dataset["yprov:num-20-samples"] == {"$": "10", "type": "xsd:long"}
    assert context_id(0, ctx) in doc["activity"]
