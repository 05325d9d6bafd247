"""Write-then-rename: the one way a file that other processes read is replaced.

A reader sees the old content or the new, never a torn mix: the bytes go to a private temporary
file beside the target (same file system), are optionally fsynced, and are renamed over it.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path
from typing import Any

import orjson

__all__ = ["write_bytes_atomic", "write_json_atomic"]


def write_bytes_atomic(path: Path, data: bytes, *, mode: int = 0o644, sync: bool = False) -> None:
    """Replace ``path`` with ``data`` atomically; the temporary file never outlives a failure."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, mode)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            if sync:
                f.flush()
                os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_json_atomic(
    path: Path, obj: Any, *, mode: int = 0o644, sync: bool = False, indent: bool = False
) -> None:
    """Replace ``path`` with ``obj`` as JSON (orjson; NaN becomes null), atomically."""
    option = orjson.OPT_INDENT_2 if indent else 0
    write_bytes_atomic(path, orjson.dumps(obj, option=option), mode=mode, sync=sync)
