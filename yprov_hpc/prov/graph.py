"""Graphs of PROV documents: DOT always (via ``prov.dot``), SVG through Graphviz's ``dot``."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from yprov_hpc.core.atomic import write_bytes_atomic

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
    write_bytes_atomic(out, prov_to_dot(doc).to_string().encode())
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


def _graph_one(args: tuple[Path, Path, bool]) -> tuple[list[Path], list[str]]:
    document, out_dir, svg = args
    return write_graphs([document], out_dir, svg=svg)


def draw_documents(
    documents: list[Path], out_dir: Path, svg: bool, workers: int = 1
) -> tuple[list[Path], list[str]]:
    """``write_graphs`` for many documents, in that many worker processes (spawned, not forked:
    the caller may be a training process with threads)."""
    tasks = [(document, out_dir, svg) for document in documents]
    if workers > 1 and len(tasks) > 1:
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        ctx = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(max_workers=min(workers, len(tasks)), mp_context=ctx) as pool:
            drawn = list(pool.map(_graph_one, tasks))
    else:
        drawn = [_graph_one(t) for t in tasks]
    written: list[Path] = []
    problems: list[str] = []
    warned = False
    for files, probs in drawn:
        written.extend(files)
        for p in probs:
            if p == MISSING_DOT and warned:
                continue
            warned = warned or p == MISSING_DOT
            problems.append(p)
    return written, problems
