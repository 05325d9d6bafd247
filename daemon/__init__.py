"""yprov-hpc's node processes: the sidecar, its samplers, and the aggregator it can also be.

Installed as ``yprov_daemon`` (the name ``daemon`` belongs to python-daemon). It imports
``yprov_hpc``; ``yprov_hpc`` never imports it, it starts it as a process.
"""
