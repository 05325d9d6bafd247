"""The environment capture lists installed packages from their metadata headers, quickly and
exactly as importlib.metadata's full parser would."""

from __future__ import annotations

from importlib import metadata
from pathlib import Path

from yprov_hpc.rank.environment import installed_packages


def _reference(dists: list[metadata.Distribution]) -> dict[str, str]:
    out = {}
    for d in dists:
        name = d.metadata.get("Name")
        if name and d.version:
            out[name] = d.version
    return out


def test_this_environment_is_listed_as_the_full_parser_lists_it() -> None:
    """Every distribution of the running environment, with the version the full parser reads."""
    dists = list(metadata.distributions())
    assert installed_packages(dists) == _reference(dists) and len(dists) > 10


def test_odd_metadata_files(tmp_path: Path) -> None:
    """CRLF lines, an egg-info PKG-INFO, a Version below a long header block, a missing
    Version and undecodable bytes: the same answer as the full parser, never an error."""
    files = {
        "crlf-1.0.dist-info/METADATA": b"Metadata-Version: 2.1\r\nName: crlf\r\nVersion: 1.0\r\n\r\nbody\r\n",
        "old.egg-info/PKG-INFO": b"Metadata-Version: 1.0\nName: old\nVersion: 0.3\n",
        "late-2.dist-info/METADATA": (
            b"Metadata-Version: 2.1\nName: late\n" + b"Classifier: x\n" * 200 + b"Version: 2\n\n"
        ),
        "noversion-1.dist-info/METADATA": b"Metadata-Version: 2.1\nName: noversion\n\n",
        "garbage-1.dist-info/METADATA": b"\xff\xfe\x00Name: \xc3\x28\n",
    }
    for rel, data in files.items():
        path = tmp_path / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    dists = list(metadata.distributions(path=[str(tmp_path)]))
    got = installed_packages(dists)
    assert got["crlf"] == "1.0" and got["old"] == "0.3" and got["late"] == "2"
    assert "noversion" not in got
    assert set(got) == {"crlf", "old", "late"}
