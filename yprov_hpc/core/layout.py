"""Where everything of one run lives on disk: the one home of the run directory's layout.

```
<save dir>/<experiment>_<run id>/
  prov_<experiment>_rank<r>.json, prov_<experiment>_collection.json
  metrics/rank<r>.parquet, artifacts/rank<r>/..., environment/rank<r>.json, graph/, journal/
```
"""

from __future__ import annotations

import os
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path

_SAFE = re.compile(r"[^A-Za-z0-9_.\-]")
_MAX_IPC_PATH = 100  # sun_path is 108 bytes on Linux, minus "ipc://"


def safe_name(text: str) -> str:
    """A file-name-safe form of a node or label name."""
    return _SAFE.sub("_", text) or "_"


@dataclass(frozen=True)
class RunLayout:
    """Paths of one run directory."""

    root: Path
    experiment: str

    @classmethod
    def create(cls, save_dir: Path, experiment: str, run_id: str, run_dir: Path | None = None) -> RunLayout:
        """Make the run directory (and its private journal directory, mode 0700): ``run_dir``
        when a batch script chose it, else ``<save_dir>/<experiment>_<run_id>``."""
        root = Path(run_dir).absolute() if run_dir else Path(save_dir).absolute() / f"{experiment}_{run_id}"
        layout = cls(root, experiment)
        layout.journal_dir.mkdir(parents=True, exist_ok=True)
        os.chmod(layout.journal_dir, 0o700)
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

    def sidecar_log(self, node: str) -> Path:
        return self.journal_dir / f"sidecar-{safe_name(node)}.log"

    def done_marker(self, rank: int) -> Path:
        return self.journal_dir / f"rank{rank}.done"

    def lost_marker(self, rank: int) -> Path:
        """Written for a rank that died without end_run (by whoever noticed)."""
        return self.journal_dir / f"rank{rank}.lost"

    @property
    def owner(self) -> Path:
        """Which job created the run directory (see ``rank.run_ids``)."""
        return self.journal_dir / "owner.json"

    @property
    def merge_log(self) -> Path:
        """Output of the merge process a rank starts."""
        return self.journal_dir / "merge.log"

    @property
    def merge_claim(self) -> Path:
        return self.journal_dir / "merge.claim"

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
