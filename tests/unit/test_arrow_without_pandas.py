"""The merge process's pyarrow does not import pandas (0.3-0.5 s it never uses), and pandas stays
importable afterwards."""

from __future__ import annotations

import subprocess
import sys

_CODE = """
import sys, tempfile, os
from yprov_hpc.fold.series import arrow_without_pandas, build_table, SeriesColumns, summarize, write_series
from pathlib import Path
pa = arrow_without_pandas()
cols = SeriesColumns()
for i in range(10):
    cols.add("metric", "loss", None if i % 2 else "training", i, float(i), 1 + i)
table = build_table(cols)
write_series(table, Path(tempfile.mkdtemp()) / "s.parquet")
summarize(table)
print("pandas" in sys.modules)
import pandas
print(bool(pandas.__version__))
"""


def test_the_merge_path_runs_without_importing_pandas() -> None:
    """Build, summarize and write a series with no pandas import; pandas imports afterwards."""
    out = subprocess.run([sys.executable, "-c", _CODE], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "True"], out.stderr
