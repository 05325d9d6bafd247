"""``python -m yprov_daemon``: the sidecar's command line (also ``yprov sidecar``)."""

from .cli import run

if __name__ == "__main__":
    run()
