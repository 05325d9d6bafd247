"""``yprov validate``: a document must pass the W3C PROV-JSON schema, parse with ``prov``,
and convert to PROV-XML that passes the W3C PROV-XML schema.

The schemas are the ones the ``prov`` package ships (prov/tests/schemas: the PROV-JSON
member submission's JSON schema and the PROV-XML XSD closure), so validation is offline.
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any


@dataclass
class Validation:
    """The outcome for one file."""

    path: Path
    errors: list[str] = field(default_factory=list)
    records: int = 0

    @property
    def ok(self) -> bool:
        return not self.errors


def schema_dir() -> Path:
    import prov

    path = Path(prov.__file__).parent / "tests" / "schemas"
    if not (path / "prov-json.schema.json").is_file():
        raise FileNotFoundError(
            f"the prov package at {path.parent.parent} does not ship its schemas; install prov>=3.2"
        )
    return path


@lru_cache(maxsize=1)
def _json_validator() -> Any:
    import jsonschema

    schema = json.loads((schema_dir() / "prov-json.schema.json").read_text())
    cls = jsonschema.validators.validator_for(schema)
    cls.check_schema(schema)
    return cls(schema, format_checker=jsonschema.FormatChecker(formats=["date-time", "uri"]))


@lru_cache(maxsize=1)
def _xml_schema() -> Any:
    from lxml import etree

    return etree.XMLSchema(etree.parse(str(schema_dir() / "prov.xsd")))


def validate_file(path: Path) -> Validation:
    """Check one PROV-JSON file three ways; never raises on bad content."""
    result = Validation(path)
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        result.errors.append(f"not readable JSON: {exc}")
        return result
    for error in sorted(_json_validator().iter_errors(data), key=str)[:20]:
        where = "/".join(str(p) for p in error.absolute_path) or "(document)"
        result.errors.append(f"PROV-JSON schema: {where}: {error.message}")
    try:
        from prov.model import ProvDocument

        doc = ProvDocument.deserialize(content=json.dumps(data), format="json")
        result.records = len(list(doc.get_records())) + sum(len(list(b.get_records())) for b in doc.bundles)
    except Exception as exc:  # prov raises many types on bad documents
        result.errors.append(f"prov could not parse it: {type(exc).__name__}: {exc}")
        return result
    try:
        from lxml import etree

        buf = io.BytesIO()
        doc.serialize(buf, format="xml")
        xml = etree.fromstring(buf.getvalue())
        schema = _xml_schema()
        if not schema.validate(xml):
            for err in list(schema.error_log)[:20]:
                result.errors.append(f"PROV-XML schema: line {err.line}: {err.message}")
    except Exception as exc:
        result.errors.append(f"PROV-XML conversion failed: {type(exc).__name__}: {exc}")
    return result
