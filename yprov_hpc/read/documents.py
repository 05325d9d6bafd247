"""Reading the PROV-JSON documents of a finished run: typed literals back to Python values,
records found by their ``prov:type`` and label, never by identifier (identifiers embed the run
id and a per-rank hash, so they cannot join runs).

Every byte read here is untrusted: a file that is missing, not JSON, or not shaped like a
PROV-JSON document gives a problem string, never an exception.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import orjson

Attrs = dict[str, Any]

MAX_DOCUMENT_BYTES = 1 << 30  # a rank document is kilobytes; a bigger file is not ours
_INTS = frozenset({"xsd:long", "xsd:int", "xsd:integer", "xsd:short", "xsd:byte", "xsd:unsignedLong"})
_FLOATS = frozenset({"xsd:double", "xsd:float", "xsd:decimal"})
_SPECIAL_FLOATS = {"NaN": math.nan, "INF": math.inf, "-INF": -math.inf}


def literal(value: Any) -> Any:
    """The Python value of one PROV-JSON attribute value (a list for a multi-valued one).

    xsd:long -> int, xsd:double -> float (NaN and INF kept), xsd:boolean -> bool,
    xsd:dateTime -> an aware ``datetime``; a literal whose text does not parse stays a str."""
    if isinstance(value, list):
        return [literal(v) for v in value]
    if not isinstance(value, dict) or "$" not in value:
        return value
    text, kind = value.get("$"), value.get("type")
    if not isinstance(text, str):
        return text
    try:
        if kind in _INTS:
            return int(text)
        if kind in _FLOATS:
            return _SPECIAL_FLOATS.get(text) or float(text)
        if kind == "xsd:boolean":
            return {"true": True, "1": True, "false": False, "0": False}.get(text, text)
        if kind == "xsd:dateTime":
            return datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return text
    return text


def json_text(value: Any) -> Any:
    """A list or dict that the writer stored as JSON text, decoded; anything else as is."""
    if isinstance(value, str) and value[:1] in ("[", "{"):
        try:
            return orjson.loads(value)
        except orjson.JSONDecodeError:
            return value
    return value


def read_json(path: Path, problems: list[str], *, what: str = "file") -> Any:
    """The JSON content of ``path``, or None with a problem appended (missing, too big, not JSON)."""
    try:
        size = path.stat().st_size
        if size > MAX_DOCUMENT_BYTES:
            problems.append(f"{path.name}: {size} bytes, too big for a {what}; skipped")
            return None
        return orjson.loads(path.read_bytes())
    except FileNotFoundError:
        problems.append(f"{path.name}: missing")
    except OSError as exc:
        problems.append(f"{path.name}: cannot read ({exc.strerror or exc})")
    except orjson.JSONDecodeError as exc:
        problems.append(f"{path.name}: not JSON ({exc})")
    return None


def read_document(path: Path, problems: list[str]) -> dict[str, Any] | None:
    """A PROV-JSON document as a dict, or None with a problem appended."""
    doc = read_json(path, problems, what="PROV document")
    if doc is None:
        return None
    if not isinstance(doc, dict) or not all(isinstance(v, dict) for v in doc.values()):
        problems.append(f"{path.name}: not a PROV-JSON document (expected an object of sections)")
        return None
    return doc


def types_of(attrs: Attrs) -> set[str]:
    """The ``prov:type`` values of a record, as qualified-name strings."""
    raw = attrs.get("prov:type")
    values = raw if isinstance(raw, list) else [raw]
    out = set()
    for v in values:
        text = v.get("$") if isinstance(v, dict) else v
        if isinstance(text, str):
            out.add(text)
    return out


def records(doc: dict[str, Any], section: str, prov_type: str) -> Iterator[Attrs]:
    """The records of ``section`` (entity, activity, agent) with ``prov_type``, each as a dict of
    Python values keyed by attribute name without the ``yprov:`` prefix (``prov:`` names kept)."""
    for attrs in (doc.get(section) or {}).values():
        if isinstance(attrs, dict) and prov_type in types_of(attrs):
            yield plain(attrs)


def plain(attrs: Attrs) -> Attrs:
    """A record's attributes as Python values; ``yprov:x`` becomes ``x``, prov:type is dropped."""
    out: Attrs = {}
    for key, value in attrs.items():
        if key == "prov:type" or not isinstance(key, str):
            continue
        out[key.removeprefix("yprov:")] = literal(value)
    return out


def first(doc: dict[str, Any] | None, section: str, prov_type: str) -> Attrs:
    """The first record of that type, or an empty dict."""
    if doc is None:
        return {}
    return next(records(doc, section, prov_type), {})


def inside(root: Path, relative: Any) -> Path | None:
    """``root / relative`` if ``relative`` (read from a document) names a path inside ``root``;
    None for anything else (absolute paths, ``..``, not a string): a document must not point a
    reader outside its run directory."""
    if not isinstance(relative, str) or not relative:
        return None
    candidate = (root / relative).resolve()
    base = root.resolve()
    if candidate != base and base not in candidate.parents:
        return None
    return candidate
