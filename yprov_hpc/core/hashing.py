"""Content hashes of files and directories (sha256), as recorded in the PROV documents."""

from __future__ import annotations

import hashlib
from pathlib import Path


def sha256_file(path: Path) -> str:
    """sha256 of one file, read in 1 MiB chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def sha256_path(path: Path) -> tuple[str, int]:
    """(sha256, size in bytes) of a file, or of a directory as the hash of its sorted listing
    of (relative path, file hash) pairs."""
    if path.is_file():
        return sha256_file(path), path.stat().st_size
    h = hashlib.sha256()
    total = 0
    for item in sorted(p for p in path.rglob("*") if p.is_file()):
        h.update(f"{item.relative_to(path).as_posix()}\0{sha256_file(item)}\n".encode())
        total += item.stat().st_size
    return h.hexdigest(), total
