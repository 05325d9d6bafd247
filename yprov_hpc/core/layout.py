"""Where everything of one run lives on disk: the one home of the run directory's layout.

```
<save dir>/<experiment>_<run id>/
  prov_<experiment>_rank<r>.json, prov_<experiment>_collection.json
  metrics/rank<r>.parquet, artifacts/rank<r>/..., environment/rank<r>.json, graph/, journal/
```
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import stat
import tempfile
from dataclasses import dataclass
from pathlib import Path

from yprov_hpc.core.errors import ConfigError

_SAFE = re.compile(r"[^A-Za-z0-9_.\-]")
_MAX_IPC_PATH = 100  # sun_path is 108 bytes on Linux, minus "ipc://"


def safe_name(text: str) -> str:
    """A file-name-safe form of a node or label name."""
    return _SAFE.sub("_", text) or "_"


def _own_directory(path: Path, mode: int) -> None:
    """Make ``path`` a directory of this user (``mode`` when new; 0700 is enforced), or raise
    ConfigError: for a symlink, something that is not a directory, or another user's directory."""
    with contextlib.suppress(FileExistsError):
        os.mkdir(path, mode)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError as exc:
        if exc.errno in (errno.ELOOP, errno.ENOTDIR):
            kind = "a symbolic link" if os.path.islink(path) else "not a directory"
            raise ConfigError(
                "run directory", str(path), f"is {kind}; refusing to follow or use it"
            ) from None
        raise
    try:
        st = os.fstat(fd)
        if st.st_uid != os.geteuid():
            raise ConfigError(
                "run directory", str(path), f"is owned by uid {st.st_uid}, not by you (uid {os.geteuid()})"
            )
        if mode == 0o700 and stat.S_IMODE(st.st_mode) != 0o700:
            os.fchmod(fd, 0o700)
    finally:
        os.close(fd)


@dataclass(frozen=True)
class RunLayout:
    """Paths of one run directory."""

    root: Path
    experiment: str

    @classmethod
    def create(cls, save_dir: Path, experiment: str, run_id: str, run_dir: Path | None = None) -> RunLayout:
        """Make the run directory (your umask) and its private journal directory (0700):
        ``run_dir`` when a batch script chose it, else ``<save_dir>/<experiment>_<run_id>``.
        Neither is ever followed through a symlink or used when another user owns it; every
        refusal, and a directory that cannot be made, is a ``ConfigError`` naming the path."""
        root = Path(run_dir).absolute() if run_dir else Path(save_dir).absolute() / f"{experiment}_{run_id}"
        layout = cls(root, experiment)
        try:
            root.parent.mkdir(parents=True, exist_ok=True)
            _own_directory(root, 0o755)
            _own_directory(layout.journal_dir, 0o700)
        except OSError as exc:
            why = exc.strerror or str(exc)
            raise ConfigError(
                "run directory",
                str(root),
                f"cannot be created or used ({why}); choose a save directory you can write",
            ) from None
        return layout

    @classmethod
    def open(cls, root: Path, experiment: str | None = None) -> RunLayout:
        """The layout of an existing run directory (experiment, if not given, from its name)."""
        root = Path(root).absolute()
        if experiment is None:
            experiment = root.name.rsplit("_", 1)[0] if "_" in root.name else root.name
        return cls(root, experiment)

    @property
    def journal_dir(self) -> Path:
        return self.root / "journal"

    def node_journal(self, node: str) -> Path:
        return self.journal_dir / f"node-{safe_name(node)}.journal"

    def spool(self, rank: int, stream: int) -> Path:
        return self.journal_dir / f"spool-rank{rank}-{stream:016x}.journal"

    def sidecar_info(self, node: str) -> Path:
        return self.journal_dir / f"sidecar-{safe_name(node)}.json"

    def sidecar_lock(self, node: str) -> Path:
        return self.journal_dir / f"sidecar-{safe_name(node)}.lock"

    def status_file(self, node: str) -> Path:
        """The sidecar's live status for ``yprov top`` (not ``sidecar-*.json``: ready files)."""
        return self.journal_dir / f"status-{safe_name(node)}.json"

    def sidecar_log(self, node: str) -> Path:
        return self.journal_dir / f"sidecar-{safe_name(node)}.log"

    def done_marker(self, rank: int) -> Path:
        return self.journal_dir / f"rank{rank}.done"

    def lost_marker(self, rank: int) -> Path:
        """Written for a rank that died without end_run (by whoever noticed)."""
        return self.journal_dir / f"rank{rank}.lost"

    def rank_start(self, rank: int) -> Path:
        """Which job started this rank in the run directory (see ``rank.run_ids``)."""
        return self.journal_dir / f"rank{rank}.start"

    @property
    def owner(self) -> Path:
        """Which job created the run directory (see ``rank.run_ids``)."""
        return self.journal_dir / "owner.json"

    @property
    def merge_log(self) -> Path:
        """Output of the merge process a rank starts."""
        return self.journal_dir / "merge.log"

    @property
    def merge_lock(self) -> Path:
        """flock'ed by whoever merges: merges of one run never overlap."""
        return self.journal_dir / "merge.lock"

    @property
    def merge_state(self) -> Path:
        """What the last completed merge read and wrote (see ``core.merge_state``)."""
        return self.journal_dir / "merge.state.json"

    @property
    def job_end(self) -> Path:
        """How a batch job ended (written by the Slurm batch script)."""
        return self.journal_dir / "job.end"

    def ipc_endpoint(self, node: str) -> str:
        """The sidecar's ipc endpoint: in the private journal dir, or a private tmp dir if too long."""
        path = self.journal_dir / f"sidecar-{safe_name(node)}.sock"
        if len(str(path)) <= _MAX_IPC_PATH:
            return f"ipc://{path}"
        short = Path(tempfile.mkdtemp(prefix="yprov-"))  # mkdtemp makes it 0700
        return f"ipc://{short}/s.sock"

    def rank_document(self, rank: int) -> Path:
        return self.root / f"prov_{self.experiment}_rank{rank}.json"

    @property
    def collection_document(self) -> Path:
        return self.root / f"prov_{self.experiment}_collection.json"

    @property
    def combined_document(self) -> Path:
        return self.root / f"prov_{self.experiment}_all.json"

    def node_series_file(self, node: str) -> Path:
        return self.root / "metrics" / f"node-{safe_name(node)}.parquet"

    def series_file(self, rank: int) -> Path:
        return self.root / "metrics" / f"rank{rank}.parquet"

    def artifacts_dir(self, rank: int) -> Path:
        return self.root / "artifacts" / f"rank{rank}"

    def environment_file(self, rank: int) -> Path:
        return self.root / "environment" / f"rank{rank}.json"

    @property
    def graph_dir(self) -> Path:
        return self.root / "graph"

    @property
    def merge_report(self) -> Path:
        return self.root / "merge_report.json"
