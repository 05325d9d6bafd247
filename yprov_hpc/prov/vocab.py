"""The PROV mapping: the one module that knows PROV-JSON's shape and our vocabulary.

Documents are plain dicts written with orjson (the ``prov`` library's object model is far
slower and bigger at this size); ``prov`` validates them and converts them to PROV-XML/PROV-N.

Rules (docs/prov-mapping.md): real URIs for every prefix, the user's namespace as the default
namespace; identifiers whose local part is an XML NCName; typed literals for numbers,
booleans and times (NaN and infinities as the XSD lexical forms NaN, INF, -INF).
"""

from __future__ import annotations

import math
import re
from datetime import datetime, timezone
from typing import Any

import orjson

PROV_NS = "http://www.w3.org/ns/prov#"
XSD_NS = "http://www.w3.org/2001/XMLSchema#"
DCTERMS_NS = "http://purl.org/dc/terms/"  # dcterms:isPartOf ties a sub-context to its parent
YPROV_NS = "https://w3id.org/yprov-hpc/ns#"
# yProv4ML's prov-ml terms (docs/prov-mapping.md, "The prov-ml vocabulary"): yProv4ML binds the
# prefix ``provml`` to the relative reference 'prov-ml', which is no namespace URI (PROV-XML and
# the PROV-JSON schema refuse it), and no URI for these terms is published; readers match the
# prefixed name ("provml:Metric"), so the prefix is kept and the URI is ours, beside ``yprov``.
PROVML_NS = "https://w3id.org/yprov-hpc/prov-ml#"

# our entity type -> the prov-ml type yProv4ML 3.2.8 gives the same kind of record
PROVML_TYPES = {
    "yprov:Metric": "provml:Metric",
    "yprov:ExecutionTime": "provml:Metric",  # 3.2.8 logs execution times as metrics
    "yprov:Parameter": "provml:HyperParameter",
    "yprov:Model": "provml:Model",
    "yprov:ModelVersion": "provml:Model",  # 3.2.8 saves a version as a model artifact
    "yprov:Dataset": "provml:Dataset",
}

_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.\-]*:")

Attrs = dict[str, Any]


def run_namespace_uri(user_namespace: str, experiment: str, run_id: str) -> str:
    """The URI of the ``run:`` prefix: one run's identifiers, under the user's namespace."""
    from urllib.parse import quote

    return f"{namespace_uri(user_namespace)}{quote(experiment, safe='')}/{quote(run_id, safe='')}/"


def namespace_uri(user_namespace: str) -> str:
    """The user's namespace as an absolute URI ending in '/' or '#' ('www.example.org' gets http://)."""
    ns = user_namespace.strip()
    if not _SCHEME.match(ns) or ns.lower().startswith(("localhost:", "www.")):
        ns = "http://" + ns.lstrip("/")
    if not ns.endswith(("/", "#")):
        ns += "/"
    return ns


# --- identifiers --------------------------------------------------------------------------------
# A local part is "." between components. Inside a component, [A-Za-z0-9_] stand for themselves,
# "/" is written "--", and every other character as "-<hex code point>-" ("." as "-2e-", " " as
# "-20-", "é" as "-e9-"). The last component of an identifier may keep literal dots (a file name,
# a context): every other component is dot-free, so the components can be told apart. The
# encoding is reversible, so distinct inputs give distinct identifiers by construction, and it
# depends on the text alone (the same name has the same identifier on every rank).
_PLAIN = re.compile(r"[A-Za-z0-9_]*")
_PLAIN_DOTS = re.compile(r"[A-Za-z0-9_.]*")
_WORD = re.compile(r"[A-Za-z][A-Za-z0-9_]*")
NO_CONTEXT = "run"  # the context slot of a record logged outside any context


def escape(text: str, keep_dots: bool = False) -> str:
    """One identifier component for ``text``: NCName characters only, reversible (see above)."""
    if (_PLAIN_DOTS if keep_dots else _PLAIN).fullmatch(text):
        return text
    out = []
    for ch in text:
        if ch.isascii() and (ch.isalnum() or ch == "_" or (keep_dots and ch == ".")):
            out.append(ch)
        elif ch == "/":
            out.append("--")
        else:
            out.append(f"-{ord(ch):x}-")
    return "".join(out)


def context_slot(context: str | None) -> str:
    """The context component: ``run`` for none; a context named "run" is written ``-72-un``."""
    if context is None:
        return NO_CONTEXT
    slot = escape(context, keep_dots=True)
    return "-72-" + slot[1:] if slot == NO_CONTEXT else slot


def record_id(*parts: str, tail: str | None = None) -> str:
    """``run:`` + the components, escaped; ``tail`` is a last component that keeps its dots.

    ``parts[0]`` is a fixed word of ours (``rank0``, ``node``, ``job``), never untrusted text."""
    if not parts or not _WORD.fullmatch(parts[0]):
        raise ValueError(f"an identifier starts with a fixed word, got {parts[:1]!r}")
    comps = [parts[0], *(escape(p) for p in parts[1:])]
    if tail is not None:
        comps.append(escape(tail, keep_dots=True))
    return "run:" + ".".join(comps)


def run_id_of(local: str) -> str:
    """``run:`` + ``local``'s dot-separated components, escaped (the last keeps no dots of its own)."""
    first, *rest = local.split(".")
    return record_id(first, *rest[:-1], tail=rest[-1]) if rest else record_id(first)


def summary_id(rank: int, kind: str, name: str, context: str | None) -> str:
    """A metric, execution-time or mark summary: ``run:rank<r>.<kind>.<name>.<context or run>``."""
    return f"run:rank{rank}.{kind}.{escape(name)}.{context_slot(context)}"


def context_id(rank: int, context: str) -> str:
    """A context activity: ``run:rank<r>.context.<context>``."""
    return record_id(f"rank{rank}", "context", tail=context)


def param_id(rank: int, key: str, revision: int = 1) -> str:
    """A param: ``run:rank<r>.param.<key>``, then ``-rev<k>`` for revision k >= 2 (as artifacts)."""
    ident = record_id(f"rank{rank}", "param", tail=key)
    return ident if revision <= 1 else f"{ident}-rev{revision}"


def artifact_id(rank: int, path: str, revision: int = 1) -> str:
    """An artifact by its logged path: ``run:rank<r>.artifact.<path>``, then ``-rev<k>`` for
    revision k >= 2 (no escaped text ends that way: after "-" an escape has a hex digit or "-")."""
    ident = record_id(f"rank{rank}", "artifact", tail=path)
    return ident if revision <= 1 else f"{ident}-rev{revision}"


def dataset_id(rank: int, label: str, context: str | None) -> str:
    """A dataset, per label and context: ``run:rank<r>.dataset.<label>``, then ``.<context>``
    when it was logged for one (three components against four or more: never confused)."""
    ident = f"run:rank{rank}.dataset.{escape(label)}"
    return ident if context is None else f"{ident}.{escape(context, keep_dots=True)}"


def model_id(rank: int, label: str) -> str:
    """A model (saved or loaded): ``run:rank<r>.model.<label>`` (three components)."""
    return record_id(f"rank{rank}", "model", label)


def model_version_id(rank: int, name: str, version: Any) -> str:
    """A model version: ``run:rank<r>.model.<name>.v<version>`` (four components or more)."""
    return record_id(f"rank{rank}", "model", name, tail=f"v{version}")


_IS_NCNAME = re.compile(r"[A-Za-z_][A-Za-z0-9_.\-]*")


def is_ncname(text: str) -> bool:
    """Whether ``text`` is already an (ASCII) NCName, usable as it is."""
    return bool(_IS_NCNAME.fullmatch(text))


def ncname(text: str) -> str:
    """A valid NCName for any text, reversible: ``escape`` keeping dots, and a leading "_" when
    that does not start with a letter (so "1" -> "_1" and "_1" -> "__1")."""
    clean = escape(text, keep_dots=True)
    return clean if clean[:1].isascii() and clean[:1].isalpha() else "_" + clean


def iso_time(ts_ns: int) -> str:
    """xsd:dateTime text of a nanosecond epoch timestamp (microsecond precision, UTC)."""
    return datetime.fromtimestamp(ts_ns / 1e9, tz=timezone.utc).isoformat()


def typed(value: Any) -> Any:
    """A PROV-JSON attribute value: str as is, everything else a typed literal."""
    if isinstance(value, bool):
        return {"$": "true" if value else "false", "type": "xsd:boolean"}
    if isinstance(value, int):  # xsd:long is 64-bit signed; a larger one (a uint64 seed) is xsd:integer
        return {"$": str(value), "type": "xsd:long" if -(2**63) <= value < 2**63 else "xsd:integer"}
    if isinstance(value, float):
        if math.isnan(value):
            text = "NaN"
        elif math.isinf(value):
            text = "INF" if value > 0 else "-INF"
        else:
            text = repr(value)
        return {"$": text, "type": "xsd:double"}
    if isinstance(value, str):
        return value
    if isinstance(value, dict) and "$" in value:  # already a typed literal
        return value
    if isinstance(value, (list, tuple, dict)):
        return orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS).decode()
    return str(value)


def qname(value: str) -> dict[str, str]:
    """A qualified-name literal (for prov:type)."""
    return {"$": value, "type": "prov:QUALIFIED_NAME"}


def prov_types(yprov_type: str) -> dict[str, str] | list[dict[str, str]]:
    """The ``prov:type`` value of a record of ours: ``yprov_type``, and beside it the prov-ml type
    of the same kind when there is one (a list of two qualified names)."""
    provml = PROVML_TYPES.get(yprov_type)
    return qname(yprov_type) if provml is None else [qname(yprov_type), qname(provml)]


def time_literal(ts_ns: int) -> dict[str, str]:
    return {"$": iso_time(ts_ns), "type": "xsd:dateTime"}


class DocumentBuilder:
    """Accumulates the records of one PROV-JSON document."""

    def __init__(self, user_namespace: str, experiment: str, run_id: str) -> None:
        self.doc: dict[str, Any] = {
            "prefix": {
                "default": namespace_uri(user_namespace),
                "run": run_namespace_uri(user_namespace, experiment, run_id),
                "yprov": YPROV_NS,
                "provml": PROVML_NS,
                "dcterms": DCTERMS_NS,
                "xsd": XSD_NS,
                "prov": PROV_NS,
            }
        }
        self._n = 0

    def _section(self, name: str) -> dict[str, Any]:
        section: dict[str, Any] = self.doc.setdefault(name, {})
        return section

    @staticmethod
    def _clean(attrs: Attrs) -> Attrs:
        """Typed values, empty ones dropped; a list of ``prov:type`` names stays a list."""
        return {
            k: v if k == "prov:type" and isinstance(v, list) else typed(v)
            for k, v in attrs.items()
            if v is not None and v != ""
        }

    def entity(self, ident: str, attrs: Attrs) -> str:
        self._section("entity")[ident] = self._clean(attrs)
        return ident

    def agent(self, ident: str, attrs: Attrs) -> str:
        self._section("agent")[ident] = self._clean(attrs)
        return ident

    def activity(self, ident: str, start_ns: int | None, end_ns: int | None, attrs: Attrs) -> str:
        record = self._clean(attrs)
        if start_ns is not None:
            record["prov:startTime"] = iso_time(start_ns)
        if end_ns is not None:
            record["prov:endTime"] = iso_time(end_ns)
        self._section("activity")[ident] = record
        return ident

    def relation(self, kind: str, attrs: dict[str, Any], time_ns: int | None = None) -> None:
        """A relation; ``attrs`` holds its prov:* role keys (already identifiers)."""
        self._n += 1
        record = dict(attrs)
        if time_ns is not None:
            record["prov:time"] = iso_time(time_ns)
        self._section(kind)[f"_:{kind}{self._n}"] = record

    def used(self, activity: str, entity: str, time_ns: int | None = None) -> None:
        self.relation("used", {"prov:activity": activity, "prov:entity": entity}, time_ns)

    def generated(self, entity: str, activity: str, time_ns: int | None = None) -> None:
        self.relation("wasGeneratedBy", {"prov:entity": entity, "prov:activity": activity}, time_ns)

    def informed(self, informed: str, informant: str) -> None:
        self.relation("wasInformedBy", {"prov:informed": informed, "prov:informant": informant})

    def derived(self, generated: str, used: str) -> None:
        self.relation("wasDerivedFrom", {"prov:generatedEntity": generated, "prov:usedEntity": used})

    def associated(self, activity: str, agent: str) -> None:
        self.relation("wasAssociatedWith", {"prov:activity": activity, "prov:agent": agent})

    def on_behalf_of(self, delegate: str, responsible: str) -> None:
        self.relation("actedOnBehalfOf", {"prov:delegate": delegate, "prov:responsible": responsible})

    def revision_of(self, generated: str, used: str) -> None:
        """``generated`` is a revised version of ``used`` (wasDerivedFrom, prov:Revision)."""
        self.relation(
            "wasDerivedFrom",
            {"prov:generatedEntity": generated, "prov:usedEntity": used, "prov:type": qname("prov:Revision")},
        )

    def alternate(self, one: str, other: str) -> None:
        self.relation("alternateOf", {"prov:alternate1": one, "prov:alternate2": other})

    def member(self, collection: str, entity: str) -> None:
        self.relation("hadMember", {"prov:collection": collection, "prov:entity": entity})

    def to_bytes(self) -> bytes:
        return orjson.dumps(self.doc, option=orjson.OPT_INDENT_2)
