"""Reading a small JSON file that anyone with write access to a run directory could have made.

The one helper for marker, ready, owner and status files: opened without following a symlink
and without blocking (a FIFO planted under the name does not hang the reader), only a regular
file is read, at most ``max_bytes``, and anything that does not parse (deep nesting included)
is ``None``. Callers still check every field they use.
"""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path
from typing import Any

__all__ = ["read_small_json"]


def read_small_json(path: Path, max_bytes: int = 1 << 16) -> Any:
    """The parsed JSON of ``path``, or None (missing, not a regular file, too big, not JSON)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOFOLLOW)
    except OSError:
        return None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return None
        chunks, left = [], max_bytes + 1
        while left > 0:
            chunk = os.read(fd, left)
            if not chunk:
                break
            chunks.append(chunk)
            left -= len(chunk)
        raw = b"".join(chunks)
    except OSError:
        return None
    finally:
        os.close(fd)
    if len(raw) > max_bytes:
        return None
    try:
        return json.loads(raw)
    except (ValueError, RecursionError):
        return None
