"""``python -m yprov_daemon``: the sidecar's command line (also ``yprov sidecar``)."""

from .cli import main

if __name__ == "__main__":
    main(prog_name="yprov sidecar")
