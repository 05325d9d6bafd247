"""A merge split across nodes: what one node's part folded, written down so the join can use it.

A node part folds the ranks whose journals its node's sidecar wrote and records each rank's
outcome (what the collection and the merge report need; its documents and series are already on
disk) under a *key*: a digest of every input of that rank's fold (its frames and the files they
are in, its marker, its node's checked samples, the carbon and job-end settings, the experiment).
The join computes the same keys from its own index; an outcome is used only when its key is equal,
so a part that read other journals, other markers or other settings (stale, or a node that
crashed half-way) is never used: the join folds that rank itself.

A part file (``journal/part-<node>.json``) is untrusted when read back: size-capped, parsed by
``core.untrusted.read_small_json``, every field type-checked, and a rank document is used only if
its sha256 is still the one recorded.
"""

from __future__ import annotations

import hashlib
import os
import re
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import orjson

from yprov_hpc.core.atomic import write_bytes_atomic
from yprov_hpc.core.hashing import sha256_file
from yprov_hpc.core.layout import RunLayout, safe_name
from yprov_hpc.core.untrusted import read_small_json
from yprov_hpc.fold.carbon import CarbonIntensity
from yprov_hpc.fold.index import Frame
from yprov_hpc.fold.markers import JobEnd, RankMarker
from yprov_hpc.fold.rankfold import RankDelivery, RankFold
from yprov_hpc.wire.records import INT64_MAX, MAX_RANK, EventError, Kind, RunStart, decode_event

__all__ = [
    "PART_FORMAT",
    "RankOutcome",
    "node_key",
    "part_path",
    "rank_key",
    "read_parts",
    "write_part",
]

PART_FORMAT = "yprov-merge-part/1"
MAX_PART_BYTES = 64 << 20  # a node's part file; a bigger one is not read (its ranks are refolded)
_HEX64 = re.compile(r"^[0-9a-f]{64}$")
Window = tuple[int, int]


@dataclass
class RankOutcome:
    """What the merge keeps of one rank once its files are written (bounded: no series)."""

    rank: int
    document: Path
    document_sha256: str
    delivery: RankDelivery
    fold: RankFold  # slim
    status: str
    window: Window
    problems: list[str]


def _digest(obj: Any) -> str:
    return hashlib.sha256(orjson.dumps(obj, option=orjson.OPT_NON_STR_KEYS, default=repr)).hexdigest()


def node_key(node: str, samples: list[Any], tdp: tuple[float, str] | None, cpu: tuple[str, str]) -> str:
    """A digest of what a node's energy timeline is made of: its checked samples (after the
    job-end cut), the TDP setting and the CPU model it found (and where)."""
    return _digest([node, samples, tdp, cpu])


def rank_key(
    experiment: str,
    rank: int,
    frames: list[Frame],
    marker: RankMarker | None,
    node: str,
    node_digest: str | None,
    carbon: CarbonIntensity,
    job_end: JobEnd | None,
) -> str:
    """A digest of every input of one rank's fold (see the module docstring)."""
    files: dict[str, tuple[int, int]] = {}
    for fr in frames:
        if fr.path.name not in files:
            try:
                st = os.stat(fr.path)
                files[fr.path.name] = (st.st_size, st.st_mtime_ns)
            except OSError:
                files[fr.path.name] = (-1, -1)
    return _digest(
        [
            PART_FORMAT,
            experiment,
            rank,
            sorted((f.path.name, f.offset, f.node, f.stream, f.seq_start, f.n_events) for f in frames),
            sorted(files.items()),
            asdict(marker) if marker is not None else None,
            node,
            node_digest,
            [carbon.g_per_kwh, carbon.region, carbon.source],
            [job_end.cause, job_end.ts_ns] if job_end is not None else None,
        ]
    )


def part_path(layout: RunLayout, node: str) -> Path:
    """Where a node's part file goes."""
    return layout.journal_dir / f"part-{safe_name(node)}.json"


def _entry(key: str, o: RankOutcome) -> dict[str, Any]:
    f, d = o.fold, o.delivery
    return {
        "key": key,
        "rank": o.rank,
        "document": o.document.name,
        "document_sha256": o.document_sha256,
        "status": o.status,
        "window": list(o.window),
        "problems": o.problems,
        "delivery": asdict(d),
        "fold": {
            "start": f.start,
            "start_ns": f.start_ns,
            "end_ns": f.end_ns,
            "last_ns": f.last_ns,
            "status": f.status,
            "end_flags": f.end_flags,
            "environment": f.environment,
        },
    }


def write_part(layout: RunLayout, node: str, experiment: str, entries: list[tuple[str, RankOutcome]]) -> Path:
    """Write one node's part file (atomically); a rank whose outcome cannot be written as JSON is
    left out (the join folds it)."""
    ranks = []
    for key, outcome in entries:
        entry = _entry(key, outcome)
        try:
            orjson.dumps(entry, option=orjson.OPT_NON_STR_KEYS)
        except TypeError:
            continue
        ranks.append(entry)
    doc = {"format": PART_FORMAT, "node": node, "experiment": experiment, "ranks": ranks}
    path = part_path(layout, node)
    write_bytes_atomic(path, orjson.dumps(doc, option=orjson.OPT_NON_STR_KEYS))
    return path


class _Bad(ValueError):
    pass


def _get(obj: dict[str, Any], key: str, kind: type | tuple[type, ...]) -> Any:
    value = obj.get(key)
    if not isinstance(value, kind):
        raise _Bad(f"{key}: {type(value).__name__}")
    return value


def _int(obj: dict[str, Any], key: str, optional: bool = False) -> Any:
    value = obj.get(key)
    if value is None and optional:
        return None
    if type(value) is not int or not -INT64_MAX <= value <= INT64_MAX:
        raise _Bad(f"{key}: not an int")
    return value


def _str_list(value: Any, key: str) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise _Bad(f"{key}: not a list of strings")
    return value


def _delivery(d: dict[str, Any]) -> RankDelivery:
    gaps = _get(d, "gaps", list)
    if not all(isinstance(g, list) and len(g) == 3 and all(type(x) is int for x in g) for g in gaps):
        raise _Bad("gaps")
    return RankDelivery(
        events=_int(d, "events"),
        duplicates=_int(d, "duplicates"),
        gaps=[(g[0], g[1], g[2]) for g in gaps],
        missing_at_end=_int(d, "missing_at_end"),
        malformed_batches=_int(d, "malformed_batches"),
        bad_events=_int(d, "bad_events"),
        bad_reasons=_str_list(d.get("bad_reasons"), "bad_reasons"),
        done=_get(d, "done", dict),
    )


def _fold(rank: int, f: dict[str, Any]) -> RankFold:
    try:  # the same checks as a RUN_START and a RUN_END event from a journal
        started = decode_event([int(Kind.RUN_START), 0, _get(f, "start", dict)])
        decode_event([int(Kind.RUN_END), 0, "finished", _get(f, "end_flags", dict)])
    except EventError as exc:
        raise _Bad(exc.reason) from None
    start = started.info if isinstance(started, RunStart) else {}
    fold = RankFold(
        rank,
        start=start,
        start_ns=_int(f, "start_ns", optional=True),
        end_ns=_int(f, "end_ns", optional=True),
        last_ns=_int(f, "last_ns"),
        status=_get(f, "status", str),
        end_flags=_get(f, "end_flags", dict),
    )
    fold.environment = _get(f, "environment", dict)
    return fold


def _outcome(layout: RunLayout, e: dict[str, Any]) -> tuple[str, RankOutcome]:
    rank = _int(e, "rank")
    key, sha = _get(e, "key", str), _get(e, "document_sha256", str)
    if not 0 <= rank <= MAX_RANK or not _HEX64.match(key) or not _HEX64.match(sha):
        raise _Bad("rank, key or sha256")
    document = layout.rank_document(rank)
    if _get(e, "document", str) != document.name:
        raise _Bad("document")
    window = _get(e, "window", list)
    if len(window) != 2 or not all(type(w) is int for w in window):
        raise _Bad("window")
    outcome = RankOutcome(
        rank,
        document,
        sha,
        _delivery(_get(e, "delivery", dict)),
        _fold(rank, _get(e, "fold", dict)),
        _get(e, "status", str),
        (window[0], window[1]),
        _str_list(e.get("problems"), "problems"),
    )
    return key, outcome


def _document_intact(layout: RunLayout, outcome: RankOutcome) -> bool:
    """The rank document is the one the part wrote (its sha256), and so are the series and
    environment files it names (their sha256 as the document states them)."""
    try:
        data = outcome.document.read_bytes()
        if hashlib.sha256(data).hexdigest() != outcome.document_sha256:
            return False
        stated = {
            attrs.get("yprov:path"): attrs.get("yprov:sha256")
            for attrs in (orjson.loads(data).get("entity") or {}).values()
            if isinstance(attrs, dict)
        }
        for path in (layout.series_file(outcome.rank), layout.environment_file(outcome.rank)):
            sha = stated.get(path.relative_to(layout.root).as_posix())
            if not isinstance(sha, str) or sha256_file(path) != sha:
                return False
    except (OSError, orjson.JSONDecodeError, AttributeError):
        return False
    return True


def read_parts(layout: RunLayout, keys: dict[int, str]) -> tuple[dict[int, RankOutcome], list[str]]:
    """The outcomes of every part file whose key equals ``keys[rank]`` and whose document is
    intact, and one line per part file that was not usable at all (for the merge's log)."""
    found: dict[int, RankOutcome] = {}
    unusable: list[str] = []
    for path in sorted(layout.journal_dir.glob("part-*.json")):
        doc = read_small_json(path, MAX_PART_BYTES)
        ranks = doc.get("ranks") if isinstance(doc, dict) and doc.get("format") == PART_FORMAT else None
        if not isinstance(ranks, list):
            unusable.append(f"{path.name}: not a readable part file")
            continue
        for raw in ranks:
            try:
                key, outcome = _outcome(layout, raw if isinstance(raw, dict) else {})
            except _Bad:
                continue
            if (
                keys.get(outcome.rank) == key
                and outcome.rank not in found
                and _document_intact(layout, outcome)
            ):
                found[outcome.rank] = outcome
    return found, unusable
