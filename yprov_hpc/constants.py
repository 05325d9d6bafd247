"""yProv4ML's ``constants`` import path (shim): ``PROV4ML_DATA`` is a read-only view of the
active run (``yprov_hpc.compat.state``); ``VERBOSE`` is kept for scripts that read it."""

from yprov_hpc.compat.state import PROV4ML_DATA

VERBOSE = False

__all__ = ["PROV4ML_DATA", "VERBOSE"]
