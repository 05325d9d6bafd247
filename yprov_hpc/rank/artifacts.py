"""Artifacts: the size, hash and copy of a file or directory that ``log_artifact`` records.

Only regular files have content here. A device, FIFO or socket (given, or inside a given
directory) is refused with ``ArtifactTypeError``: reading ``/dev/zero`` never ends and a FIFO
blocks. Every file is opened non-blocking and checked again after opening, so a file swapped
for a FIFO in between is refused too. Inside a directory, symlinks to files are followed and
symlinks to directories are not (they are counted as skipped).

A directory's size is the sum of its regular files. Up to the copy limit, the content is copied
into the run directory while it is hashed (one read); the copy stops, and is removed, as soon
as it would pass the limit (files that grew since they were measured). A copy that cannot be
written (a full disk) is removed, and the artifact is referenced in place, with the reason.

Where copies go: each revision of a logged path (each time it is logged with new content) is
kept, immutable, at ``artifacts/rank<r>/revisions/<name>/r<k>-<sha256[:12]>/<name>``, and that
is the path its record names; ``artifacts/rank<r>/<name>`` (the *natural path*) holds the latest
revision, as hard links (no second copy on disk). Two different paths with one file name get
two natural names (the second ``<stem>.<hash of its path><suffix>``). A file already inside the
run directory (a checkpoint Lightning wrote there) is hashed and referenced where it is, not
copied again.
"""

from __future__ import annotations

import hashlib
import logging
import os
import secrets
import shutil
import stat
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from yprov_hpc.core.errors import ArtifactNotFoundError, ArtifactTypeError, InvalidArgumentError
from yprov_hpc.core.layout import RunLayout, safe_name
from yprov_hpc.rank.values import info_value, name_value, timestamp_value, where
from yprov_hpc.wire.records import Kind

if TYPE_CHECKING:
    from yprov_hpc.core.context import Context
    from yprov_hpc.rank.run import Run

__all__ = ["ArtifactStore", "Scanned", "Stored", "log_artifact", "record_model_version_file", "scan"]

log = logging.getLogger("yprov_hpc")

_CHUNK = 1 << 20
_SPECIAL = (
    (stat.S_ISCHR, "character device"),
    (stat.S_ISBLK, "block device"),
    (stat.S_ISFIFO, "FIFO"),
    (stat.S_ISSOCK, "socket"),
)


def _special(mode: int) -> str | None:
    for test, kind in _SPECIAL:
        if test(mode):
            return kind
    return None


@dataclass(frozen=True)
class Scanned:
    """What a path holds: its regular files (relative path, path), their total size, and the
    symlinked directories that were not followed."""

    files: list[tuple[str, Path]]
    size_bytes: int
    is_dir: bool
    skipped: int


def scan(src: Path) -> Scanned:
    """The regular files of ``src`` (a file, or a directory walked without following symlinked
    directories); ``ArtifactTypeError`` for a device, FIFO or socket anywhere in it."""
    st = os.stat(src)
    kind = _special(st.st_mode)
    if kind is not None:
        raise ArtifactTypeError(str(src), kind)
    if stat.S_ISREG(st.st_mode):
        return Scanned([("", src)], st.st_size, False, 0)
    files: list[tuple[str, Path]] = []
    total = skipped = 0
    for root, dirs, names in os.walk(src, followlinks=False):
        skipped += sum(1 for d in dirs if os.path.islink(os.path.join(root, d)))
        for name in names:
            path = Path(root, name)
            try:
                st = os.stat(path)
            except FileNotFoundError:  # a dangling symlink: nothing to record
                skipped += 1
                continue
            kind = _special(st.st_mode)
            if kind is not None:
                raise ArtifactTypeError(str(path), kind)
            files.append((path.relative_to(src).as_posix(), path))
            total += st.st_size
    files.sort()
    return Scanned(files, total, True, skipped)


def _open_regular(path: Path) -> IO[bytes]:
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    kind = _special(os.fstat(fd).st_mode)
    if kind is not None:
        os.close(fd)
        raise ArtifactTypeError(str(path), kind)
    return os.fdopen(fd, "rb")


def _discard(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


class _Budget(Exception):
    """The copy would pass the copy limit."""


def _hash_file(path: Path, out: IO[bytes] | None, budget: list[int]) -> str:
    h = hashlib.sha256()
    with _open_regular(path) as f:
        for chunk in iter(lambda: f.read(_CHUNK), b""):
            h.update(chunk)
            if out is not None:
                budget[0] -= len(chunk)
                if budget[0] < 0:
                    raise _Budget
                out.write(chunk)
    return h.hexdigest()


@dataclass(frozen=True)
class Stored:
    """One logged artifact: its hash and size, and where its copy is (relative to the run
    directory; empty when it is referenced in place)."""

    sha256: str
    size_bytes: int
    is_dir: bool
    stored: str
    note: str = ""  # why there is no copy, or what was skipped

    def info(self, source: Path) -> dict[str, Any]:
        """The artifact's description, as recorded in the event."""
        info: dict[str, Any] = {
            "source": str(source.absolute()),
            "stored": self.stored,
            "size_bytes": self.size_bytes,
            "sha256": self.sha256,
            "is_dir": self.is_dir,
        }
        if self.note:
            info["note"] = self.note
        return info


class ArtifactStore:
    """Copies and hashes one rank's artifacts into ``artifacts/rank<r>/``."""

    def __init__(self, layout: RunLayout, rank: int, copy_max_bytes: int) -> None:
        self._layout = layout
        self._base = layout.artifacts_dir(rank)
        self._copy_max_bytes = copy_max_bytes
        self._natural: dict[str, str] = {}  # logged path -> its natural name
        self._taken: set[str] = set()  # natural names in use
        # logged path -> (sha256, stored path) of its last revision
        self._latest: dict[str, tuple[str, str]] = {}
        self._revisions: dict[str, int] = {}  # logged path -> revisions so far

    def store(self, src: Path, key: str | None = None) -> Stored:
        """Hash ``src`` and, within the copy limit, copy it as the next revision of ``key`` (the
        path as logged); see the module docstring."""
        key = os.fspath(src) if key is None else key
        found = scan(src)
        skipped = f"{found.skipped} symlinked directories or dangling links skipped" if found.skipped else ""
        inside = self._inside_run(src)
        if inside is not None:  # already in the run directory: never a second copy
            digest = self._digest(found, None, [0])
            return Stored(digest, found.size_bytes, found.is_dir, inside, skipped)
        if found.size_bytes > self._copy_max_bytes:
            digest = self._digest(found, None, [0])
            note = f"over the copy limit of {self._copy_max_bytes} bytes: referenced in place"
            return Stored(
                digest, found.size_bytes, found.is_dir, "", "; ".join(filter(None, (note, skipped)))
            )
        staging = self._base / f".{safe_name(src.name)}.{secrets.token_hex(4)}.tmp"
        try:
            self._base.mkdir(parents=True, exist_ok=True)
            digest = self._copy(found, staging)
        except _Budget:
            _discard(staging)
            note = (
                f"grew past the copy limit of {self._copy_max_bytes} bytes while copied: referenced in place"
            )
            return Stored(self._digest(found, None, [0]), found.size_bytes, found.is_dir, "", note)
        except OSError as exc:  # the run directory's disk, not the source: reference in place
            _discard(staging)
            log.warning("yprov: could not copy artifact %s into the run directory: %s", src, exc)
            digest = self._digest(found, None, [0])
            return Stored(digest, found.size_bytes, found.is_dir, "", f"not copied: {exc}")
        except BaseException:
            _discard(staging)
            raise
        return Stored(digest, found.size_bytes, found.is_dir, self._place(key, src, staging, digest), skipped)

    def _inside_run(self, src: Path) -> str | None:
        try:
            return src.resolve().relative_to(self._layout.root.resolve()).as_posix()
        except (ValueError, OSError):
            return None

    def _digest(self, found: Scanned, staging: Path | None, budget: list[int]) -> str:
        """sha256 of a file's content, or of a directory's sorted (relative path, file hash)
        listing (as ``core.hashing.sha256_path``); copies into ``staging`` when given."""
        if not found.is_dir:
            ((_, path),) = found.files
            if staging is None:
                return _hash_file(path, None, budget)
            with open(staging, "xb") as out:
                return _hash_file(path, out, budget)
        h = hashlib.sha256()
        for rel, path in found.files:
            if staging is None:
                file_hash = _hash_file(path, None, budget)
            else:
                dest = staging / rel
                dest.parent.mkdir(parents=True, exist_ok=True)
                with open(dest, "xb") as out:
                    file_hash = _hash_file(path, out, budget)
            h.update(f"{rel}\0{file_hash}\n".encode())
        return h.hexdigest()

    def _copy(self, found: Scanned, staging: Path) -> str:
        if found.is_dir:
            staging.mkdir()
        return self._digest(found, staging, [self._copy_max_bytes])

    def _name_of(self, key: str, src: Path) -> str:
        name = self._natural.get(key)
        if name is None:
            name = safe_name(src.name)
            if name in self._taken or name == "revisions":
                tag = hashlib.sha256(key.encode()).hexdigest()[:8]
                name = f"{safe_name(src.stem)}.{tag}{safe_name(src.suffix) if src.suffix else ''}"
            self._taken.add(name)
            self._natural[key] = name
        return name

    def _place(self, key: str, src: Path, staging: Path, digest: str) -> str:
        """Keep the staged copy as the next revision of ``key`` and point the natural path at it;
        the same content as the last revision again is no new copy."""
        last = self._latest.get(key)
        if last is not None and last[0] == digest:
            _discard(staging)
            return last[1]
        name = self._name_of(key, src)
        revision = self._revisions.get(key, 0) + 1
        dest = self._base / "revisions" / name / f"r{revision}-{digest[:12]}" / name
        dest.parent.mkdir(parents=True, exist_ok=True)
        os.replace(staging, dest)
        self._revisions[key] = revision
        stored = dest.relative_to(self._layout.root).as_posix()
        self._latest[key] = (digest, stored)
        try:
            _link_tree(dest, self._base / name)
        except OSError as exc:  # the revision is kept; only the convenience view is missing
            log.warning("yprov: could not update %s to the latest revision: %s", self._base / name, exc)
        return stored


def _link_tree(target: Path, natural: Path) -> None:
    """Make ``natural`` hold what ``target`` holds, as hard links, replacing it atomically for a
    file (a directory is swapped with two renames)."""
    tmp = natural.with_name(f".{natural.name}.{secrets.token_hex(4)}.tmp")
    if target.is_dir():
        shutil.copytree(target, tmp, copy_function=os.link)
        old = natural.with_name(f".{natural.name}.{secrets.token_hex(4)}.old")
        if natural.exists():
            os.rename(natural, old)
        os.rename(tmp, natural)
        _discard(old)
    else:
        os.link(target, tmp)
        os.replace(tmp, natural)


# --- the verbs (Run's methods of the same names call these) -------------------------------------
def log_artifact(
    run: Run,
    store: ArtifactStore,
    artifact_path: str | os.PathLike[str],
    context: Context | str | None,
    step: int | None,
    timestamp: float | None,
) -> None:
    """Record a file or directory (see ``Run.log_artifact``)."""
    if not isinstance(artifact_path, (str, os.PathLike)):
        raise InvalidArgumentError("log_artifact", "artifact_path", artifact_path, "a path")
    key = name_value("log_artifact", os.fspath(artifact_path))
    ctx, st = where("log_artifact", context, step)
    ts = timestamp_value("log_artifact", timestamp)
    src = Path(artifact_path)
    if not src.exists():
        raise ArtifactNotFoundError(str(artifact_path))
    info = store.store(src, key).info(src)
    info["user_timestamp"] = ts
    run.emit((int(Kind.ARTIFACT), time.time_ns(), key, ctx, st, info_value("log_artifact", info)))


def record_model_version_file(
    run: Run,
    store: ArtifactStore,
    path: Path,
    model_name: str,
    context: Context | str | None,
    step: int | None,
) -> None:
    """Record a checkpoint file someone else wrote (see ``Run.record_model_version_file``)."""
    model_name = name_value("record_model_version_file", model_name)
    ctx, st = where("record_model_version_file", context, step)
    src = Path(path)
    stored = store.store(src)
    info = {
        "version": run.next_model_version(model_name),
        "path": stored.stored,
        "source_path": str(src.absolute()),
        "size_bytes": stored.size_bytes,
        "sha256": stored.sha256,
        "format": src.suffix.lstrip(".") or "file",
    }
    run.emit((int(Kind.MODEL_VERSION), time.time_ns(), model_name, ctx, st, info))
