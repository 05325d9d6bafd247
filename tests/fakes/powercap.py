"""A fake /sys/class/powercap tree (there is no RAPL here): same files, same semantics."""

from __future__ import annotations

from pathlib import Path

MAX_RANGE_UJ = 262_143_328_850  # a typical package max_energy_range_uj


def make_tree(root: Path, packages: int = 1, dram: bool = True, start_uj: int = 0) -> dict[str, Path]:
    """Create package (with core and dram subzones) zones; return {domain name: energy_uj file}."""
    files: dict[str, Path] = {}
    for p in range(packages):
        zone = root / f"intel-rapl:{p}"
        zone.mkdir(parents=True)
        (zone / "name").write_text(f"package-{p}\n")
        (zone / "max_energy_range_uj").write_text(f"{MAX_RANGE_UJ}\n")
        (zone / "energy_uj").write_text(f"{start_uj}\n")
        files[f"package-{p}"] = zone / "energy_uj"
        subs = [("core", 0)] + ([("dram", 1)] if dram else [])
        for name, i in subs:
            sub = root / f"intel-rapl:{p}:{i}"
            sub.mkdir()
            (sub / "name").write_text(f"{name}\n")
            (sub / "max_energy_range_uj").write_text(f"{MAX_RANGE_UJ}\n")
            (sub / "energy_uj").write_text(f"{start_uj}\n")
            files[f"package-{p}/{name}"] = sub / "energy_uj"
    return files


def set_uj(path: Path, value: int) -> None:
    """Set a counter (wrapping like the hardware); replaced atomically, as sysfs reads are."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(f"{value % (MAX_RANGE_UJ + 1)}\n")
    tmp.replace(path)
