"""A full disk: the sidecar acks nothing it could not journal, and keeps running."""

from __future__ import annotations

import errno
from pathlib import Path

import zmq

from yprov_daemon.sidecar import Sidecar, SidecarSettings
from yprov_hpc.core.layout import RunLayout
from yprov_hpc.wire.codec import encode_batch
from yprov_hpc.wire.journal import JournalWriter


class _FullDisk(JournalWriter):
    """The real writer, on a disk that fills up: buffered appends pass, flushing fails."""

    def flush(self) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")


def test_no_ack_for_a_batch_that_could_not_be_journaled(tmp_path: Path) -> None:
    """Over real sockets: with the journal unwritable, the rank gets no ack (so it resends, then spills)."""
    layout = RunLayout.create(tmp_path, "e", "r1")
    sidecar = Sidecar(SidecarSettings(layout=layout, node="n0", endpoint="inproc://sidecar", samplers=()))
    ctx = zmq.Context()
    router, dealer = ctx.socket(zmq.ROUTER), ctx.socket(zmq.DEALER)
    router.bind("inproc://sidecar")
    dealer.connect("inproc://sidecar")
    dealer.send_multipart(encode_batch("r1", 0, "n0", 1, 0, [(4, 1, "loss", 0.5, None, 0)], 1))
    assert router.poll(2000)
    journal = _FullDisk(layout.node_journal("n0"))
    sidecar._drain(router, journal)
    assert sidecar.stats.journal_failures == 1
    assert not dealer.poll(300), "a batch that is not on disk must not be acked"
    dealer.send_multipart(encode_batch("r1", 0, "n0", 1, 1, [(4, 2, "loss", 0.4, None, 1)], 2))
    assert router.poll(2000)
    sidecar._drain(router, JournalWriter(layout.journal_dir / "other.journal"))  # the disk has room again
    assert dealer.poll(2000), "once the journal can be written, acks flow again"
    for sock in (router, dealer):
        sock.close(linger=0)
    ctx.term()
