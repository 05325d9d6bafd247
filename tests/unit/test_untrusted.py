"""Small JSON files in a run directory are untrusted: a FIFO, a symlink, deep nesting, a huge
file or NaN never hang, crash or fool the readers."""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path

from yprov_hpc.core.layout import RunLayout
from yprov_hpc.core.untrusted import read_small_json
from yprov_hpc.rank.sidecar_client import read_ready_file
from yprov_hpc.read.live import read_status


def test_hostile_files_read_as_none(tmp_path: Path) -> None:
    """A FIFO (would block), a symlink, 100k nested brackets, a file over the bound and garbage
    all give None; a good file gives its JSON."""
    fifo = tmp_path / "fifo.json"
    os.mkfifo(fifo)
    link = tmp_path / "link.json"
    (tmp_path / "target.json").write_text("{}")
    link.symlink_to(tmp_path / "target.json")
    deep = tmp_path / "deep.json"
    deep.write_text("[" * 100_000)
    big = tmp_path / "big.json"
    big.write_text(json.dumps({"x": "y" * 2000}))
    bad = tmp_path / "bad.json"
    bad.write_bytes(b"\xff\xfe{")
    good = tmp_path / "good.json"
    good.write_text('{"rank": 3}')
    results: list[object] = []
    reader = threading.Thread(target=lambda: results.append(read_small_json(fifo)), daemon=True)
    reader.start()
    reader.join(5)
    assert results == [None], "a FIFO blocked the reader"
    for path in (link, deep, bad, tmp_path / "missing.json"):
        assert read_small_json(path) is None, path
    assert read_small_json(big, max_bytes=1000) is None
    assert read_small_json(good) == {"rank": 3}


def test_a_ready_file_with_a_nan_start_time_names_no_live_sidecar(tmp_path: Path) -> None:
    """pid 1 is alive, but a NaN start time (which compares false with everything) is refused."""
    ready = tmp_path / "sidecar-n.json"
    ready.write_text('{"endpoint": "ipc:///x", "pid": 1, "pid_create_time": NaN}')
    assert read_ready_file(ready) is None
    ready.write_text('{"endpoint": "ipc:///x", "pid": true, "pid_create_time": 0}')
    assert read_ready_file(ready) is None


def test_a_hostile_status_file_is_left_out(tmp_path: Path) -> None:
    """Ranks as a list, keys of non-ASCII digits, infinite counters: skipped, never a traceback."""
    layout = RunLayout.open(tmp_path / "e_r")
    layout.journal_dir.mkdir(parents=True)
    layout.status_file("a").write_text('{"version": 1, "ranks": [1, 2], "events": 1e999}')
    layout.status_file("b").write_text(
        '{"version": 1, "ranks": {"²": {}, "1": {"alive": true}}, "power_w": NaN}'
    )
    nodes = {n.node: n for n in read_status(layout.root)}
    assert nodes["a"].ranks == {} and nodes["a"].events == 0
    assert list(nodes["b"].ranks) == [1] and nodes["b"].power_w is None
