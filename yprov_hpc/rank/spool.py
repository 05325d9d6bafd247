"""The rank's own spool file: where batches go that the sidecar did not acknowledge.

Same format as the sidecar's journal (``wire.journal``), opened on the first spill, so a
healthy run has no spool file. A batch that cannot be written (a full disk) is counted as
lost and said once; nothing raises.
"""

from __future__ import annotations

import logging
from pathlib import Path

from yprov_hpc.wire.journal import JournalWriter

log = logging.getLogger("yprov_hpc")


class Spool:
    """Appends spilled batches to one spool file, counting what went there and what could not."""

    def __init__(self, path: Path) -> None:
        self._path = path
        self._writer: JournalWriter | None = None
        self.batches = 0
        self.events = 0
        self.events_lost = 0

    def write(self, header: bytes, body: bytes, n_events: int) -> None:
        """Append one batch and hand it to the OS."""
        try:
            if self._writer is None:
                self._writer = JournalWriter(self._path)
            self._writer.append(header, body)
            self._writer.flush()
            self.batches += 1
            self.events += n_events
        except OSError as exc:  # a full disk: the events are written nowhere
            self.events_lost += n_events
            if self.events_lost == n_events:
                log.error("yprov: could not spill %d events to %s: %s", n_events, self._path, exc)

    def close(self) -> None:
        """Sync and close (idempotent)."""
        if self._writer is not None:
            try:
                self._writer.close()
            except OSError as exc:
                log.error("yprov: could not sync the spool %s: %s", self._path, exc)
