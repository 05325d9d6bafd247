"""CURVE keys of one job, for the links from node sidecars to the aggregator.

Made once per job (``yprov keys RUN_DIR``, or the batch script) in the run's private journal
directory (0700) on the shared file system: the aggregator's key pair, and one key pair for the
job's sidecars, whose public half the aggregator admits. A client without the sidecars' secret
key is refused by the aggregator's ZAP handler.
"""

from __future__ import annotations

import os
from pathlib import Path

from yprov_hpc.core.layout import RunLayout

SERVER = "aggregator"
CLIENT = "sidecar"


def keys_dir(layout: RunLayout) -> Path:
    return layout.journal_dir / "keys"


def make_keys(layout: RunLayout) -> Path:
    """Create the job's key pairs if they do not exist yet; return the keys directory."""
    import zmq.auth

    directory = keys_dir(layout)
    clients = directory / "clients"
    clients.mkdir(parents=True, exist_ok=True)
    os.chmod(directory, 0o700)
    for name in (SERVER, CLIENT):
        if not (directory / f"{name}.key_secret").exists():
            zmq.auth.create_certificates(directory, name)
        os.chmod(directory / f"{name}.key_secret", 0o600)
    public = (directory / f"{CLIENT}.key").read_bytes()
    (clients / f"{CLIENT}.key").write_bytes(public)  # the keys the aggregator admits
    return directory


def server_keys(layout: RunLayout) -> tuple[bytes, bytes]:
    """(public, secret) of the aggregator."""
    import zmq.auth

    public, secret = zmq.auth.load_certificate(keys_dir(layout) / f"{SERVER}.key_secret")
    assert secret is not None
    return public, secret


def client_keys(layout: RunLayout) -> tuple[bytes, bytes, bytes]:
    """(client public, client secret, server public) for a sidecar."""
    import zmq.auth

    public, secret = zmq.auth.load_certificate(keys_dir(layout) / f"{CLIENT}.key_secret")
    server_public, _ = zmq.auth.load_certificate(keys_dir(layout) / f"{SERVER}.key")
    assert secret is not None
    return public, secret, server_public
