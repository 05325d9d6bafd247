"""``python -m yprov_daemon``: the sidecar's command line (also ``yprov sidecar``)."""

from . import early

early.catch()  # before the imports below: a stop signal while they run is not lost, nor fatal

from .cli import run  # noqa: E402

if __name__ == "__main__":
    run()
