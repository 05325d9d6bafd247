"""Graphs of PROV documents: DOT always (via ``prov.dot``), SVG through Graphviz's ``dot``."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

MISSING_DOT = (
    "Graphviz's `dot` program was not found, so no SVG was made (the DOT file is written). "
    "Install Graphviz (Debian: apt-get install graphviz), then: dot -Tsvg FILE.dot -o FILE.svg"
)


def document_to_dot(document: Path, out: Path) -> Path:
    """Write the DOT graph of one PROV-JSON document."""
    from prov.dot import prov_to_dot
    from prov.model import ProvDocument

    doc = ProvDocument.deserialize(source=str(document), format="json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(prov_to_dot(doc).to_string())
    return out


def dot_to_svg(dot_file: Path) -> Path | None:
    """Render SVG next to a DOT file; None when Graphviz is missing."""
    exe = shutil.which("dot")
    if exe is None:
        return None
    svg = dot_file.with_suffix(".svg")
    subprocess.run([exe, "-Tsvg", str(dot_file), "-o", str(svg)], check=True, timeout=300)
    return svg


def write_graphs(documents: list[Path], out_dir: Path, svg: bool) -> tuple[list[Path], list[str]]:
    """DOT for each document (and SVG on request); returns (files written, problems)."""
    written: list[Path] = []
    problems: list[str] = []
    warned = False
    for document in documents:
        try:
            dot_file = document_to_dot(document, out_dir / (document.stem + ".dot"))
        except Exception as exc:  # a graph is a view: never fail the merge for it
            problems.append(f"graph of {document.name} failed: {exc}")
            continue
        written.append(dot_file)
        if svg:
            try:
                made = dot_to_svg(dot_file)
            except (subprocess.SubprocessError, OSError) as exc:
                problems.append(f"SVG of {document.name} failed: {exc}")
                continue
            if made is None:
                if not warned:
                    problems.append(MISSING_DOT)
                    warned = True
            else:
                written.append(made)
    return written, problems
