"""Which stage may import which: the folders show the data flow, and this test keeps it so."""

from __future__ import annotations

import ast
from pathlib import Path

from tests.conftest import ROOT

# stage -> the stages its modules may import (every import counts, lazy ones inside functions too)
ALLOWED: dict[str, set[str]] = {
    "core": {"core"},
    "wire": {"core", "wire"},
    "rank": {"core", "wire", "rank", "integrations"},  # integrations.pytorch, lazily, for the torch verbs
    "fold": {"core", "wire", "fold"},
    "prov": {"core", "wire", "fold", "prov"},
    "merge": {"core", "wire", "fold", "prov", "merge"},
    "read": {"core", "wire", "fold", "prov", "merge", "read"},
    # one merge at a time, then the run's exports (the experiment record): never in a rank
    "finalize": {"core", "wire", "fold", "prov", "merge", "read", "finalize"},
    "integrations": {"core", "wire", "rank", "integrations", "api"},
    "api": {"core", "wire", "rank", "integrations", "api"},
    "cli": {"core", "wire", "rank", "fold", "prov", "merge", "read", "finalize", "integrations", "api"}
    | {"cli"},
    "daemon": {"core", "wire", "finalize", "daemon"},
}
# single modules a stage may use beyond its stages: the sidecar names its node as the ranks do
# and readies pyarrow for its merge; yProv4ML's getters read finished runs (called by the user,
# never from the training loop)
EXTRA_MODULES: dict[str, set[str]] = {
    "daemon": {"yprov_hpc.rank.discovery", "yprov_hpc.fold.series"},
    "api": {"yprov_hpc.read.load"},
}
# top-level modules and packages outside the stage folders; the yProv4ML compatibility names
# (compat and the submodule paths yProv4ML scripts import) sit at the API's level
_TOP_LEVEL = {
    "merge": "merge",
    "finalize": "finalize",
    "api": "api",
    "cli": "cli",
    "_entry": "cli",  # the `yprov` command's entry point (execs the sidecar, else imports cli)
    "__init__": "api",
    "compat": "api",
    "wrappers": "api",
    "datamodel": "api",
    "constants": "api",
    "loggers": "api",
    "utils": "api",
}


def stage_of_module(name: str) -> str | None:
    """The stage of a dotted module name of ours, or None for a module that is not ours."""
    parts = name.split(".")
    if parts[0] == "yprov_daemon":
        return "daemon"
    if parts[0] != "yprov_hpc":
        return None
    if len(parts) == 1:
        return "api"
    if parts[1] in ALLOWED:
        return parts[1]
    return _TOP_LEVEL.get(parts[1])


def _module_name(path: Path) -> str:
    rel = path.relative_to(ROOT).with_suffix("")
    parts = list(rel.parts)
    if parts[0] == "daemon":
        parts[0] = "yprov_daemon"
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def imports_of(path: Path) -> list[tuple[int, str]]:
    """(line, absolute module name) of every import in a file, relative ones resolved."""
    module = _module_name(path)
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found: list[tuple[int, str]] = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.extend((node.lineno, alias.name) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                target = ".".join([*base, node.module] if node.module else base)
            else:
                target = node.module or ""
            found.append((node.lineno, target))
            # "from pkg import mod" imports a module too
            found.extend((node.lineno, f"{target}.{alias.name}") for alias in node.names)
    return found


def _sources() -> list[Path]:
    return sorted([*(ROOT / "yprov_hpc").rglob("*.py"), *(ROOT / "daemon").rglob("*.py")])


def test_every_module_has_a_stage() -> None:
    """Each source file belongs to a stage that the table above knows."""
    for path in _sources():
        assert stage_of_module(_module_name(path)) in ALLOWED, path


def test_no_stage_imports_a_stage_it_may_not() -> None:
    """No module imports (even lazily) a module of a stage its own stage may not use."""
    violations = []
    for path in _sources():
        own = stage_of_module(_module_name(path))
        assert own is not None
        for line, target in imports_of(path):
            stage = stage_of_module(target)
            extra = EXTRA_MODULES.get(own, set())
            if any(target == m or target.startswith(m + ".") for m in extra):
                continue
            if stage is not None and stage not in ALLOWED[own]:
                violations.append(f"{path.relative_to(ROOT)}:{line}: {own} imports {target} ({stage})")
    assert not violations, "\n".join(violations)


def test_the_checker_sees_a_lazy_import_of_the_merge_from_the_rank_side(tmp_path: Path) -> None:
    """A function-level import counts: the checker resolves it and its stage is refused for rank."""
    fake = ROOT / "yprov_hpc" / "rank" / "_layer_probe.py"
    fake.write_text("def f():\n    from yprov_hpc.merge import merge_run\n    from ..fold import series\n")
    try:
        targets = [t for _, t in imports_of(fake)]
    finally:
        fake.unlink()
    assert "yprov_hpc.merge" in targets and "yprov_hpc.fold.series" in targets
    assert {stage_of_module(t) for t in targets} - ALLOWED["rank"] == {"merge", "fold"}
