"""PROV mapping rules: URI namespaces, NCName identifiers, typed literals."""

from __future__ import annotations

import math
import re

from hypothesis import given
from hypothesis import strategies as st
from lxml import etree

from yprov_hpc.core.context import Context
from yprov_hpc.prov.vocab import namespace_uri, ncname, typed

_NCNAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_.\-]*$")


def test_namespace_becomes_a_uri() -> None:
    """The paper's 'www.example.org' becomes an absolute URI; real URIs are kept."""
    assert namespace_uri("www.example.org") == "http://www.example.org/"
    assert namespace_uri("https://lab.org/ml#") == "https://lab.org/ml#"
    assert namespace_uri("urn:lab:ml") == "urn:lab:ml/"


@given(st.text(min_size=1, max_size=40))
def test_ncname_is_always_valid_and_injective_on_changes(text: str) -> None:
    """Any text maps to a valid NCName (usable in an XML QName); changed names carry a hash."""
    name = ncname(text)
    assert _NCNAME.match(name)
    etree.QName("http://x/", name)  # raises ValueError for an invalid local name
    if name != text:
        assert name != ncname(text + "x")


def test_typed_literals() -> None:
    """Numbers and booleans become typed literals; NaN and infinities use XSD's lexical forms."""
    assert typed(3) == {"$": "3", "type": "xsd:long"}
    assert typed(2**64 - 1) == {"$": str(2**64 - 1), "type": "xsd:integer"}  # beyond xsd:long
    assert typed(True) == {"$": "true", "type": "xsd:boolean"}
    assert typed(math.nan)["$"] == "NaN"
    assert typed(-math.inf)["$"] == "-INF"
    assert typed(0.1) == {"$": "0.1", "type": "xsd:double"}
    assert typed("text") == "text"


def test_context_is_a_string_with_enum_style_access() -> None:
    """Context works as a str and has .name/.value like the predecessor's Enum."""
    assert Context.TRAINING == "training" and Context.TRAINING.name == "TRAINING"
    assert Context("FineTuning") == "finetuning" and Context(Context.EVALUATION) is Context.EVALUATION
