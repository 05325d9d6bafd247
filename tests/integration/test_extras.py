"""Without an optional extra, the features that need it say which extra to install."""

from __future__ import annotations

import subprocess
from pathlib import Path

from tests.conftest import PYTHON, python_env

_WITHOUT = """
import sys
for name in sys.argv[2].split(","):
    sys.modules[name] = None  # as if not installed: importing it raises ImportError
import yprov_hpc as prov4ml
run = prov4ml.start_run("www.example.org", "x", sys.argv[1], sidecar="off", handle_sigterm=False)
for call in (lambda: prov4ml.log_model("m", object()), lambda: prov4ml.save_model_version({}, "m"),
             lambda: prov4ml.log_dataset([1, 2], "d"), lambda: prov4ml.ProvLightningLogger):
    try:
        call()
    except prov4ml.MissingExtraError as exc:
        print(exc.extra, exc.missing, "|", exc)
    except prov4ml.InvalidArgumentError:  # torch is there: the verb checked its model argument
        pass
prov4ml.end_run()
"""


def _run_without(tmp_path: Path, modules: str) -> list[str]:
    script = tmp_path / "without.py"
    script.write_text(_WITHOUT)
    out = subprocess.run(
        [PYTHON, str(script), str(tmp_path / "prov"), modules],
        env=python_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    return out.stdout.splitlines()


def test_without_torch_the_pytorch_verbs_name_the_torch_extra(tmp_path: Path) -> None:
    """log_model, save_model_version and log_dataset raise MissingExtraError naming yprov-hpc[torch]."""
    lines = _run_without(tmp_path, "torch")
    assert [line.split(" |")[0] for line in lines[:3]] == ["torch torch"] * 3
    assert "pip install 'yprov-hpc[torch]'" in lines[0] and "log_model()" in lines[0]


def test_without_lightning_the_logger_names_the_lightning_extra(tmp_path: Path) -> None:
    """ProvLightningLogger raises MissingExtraError naming yprov-hpc[lightning]."""
    lines = _run_without(tmp_path, "lightning")
    assert lines == [
        "lightning lightning | ProvLightningLogger() needs lightning, which is not installed: "
        "pip install 'yprov-hpc[lightning]'"
    ]


def test_the_lightning_logger_names_its_extra_as_the_first_name_used() -> None:
    """With no other public name touched before it (names load on first use),
    ProvLightningLogger without Lightning still raises MissingExtraError, not a NameError."""
    code = (
        "import sys\nsys.modules['lightning'] = None\nimport yprov_hpc\n"
        "try:\n    yprov_hpc.ProvLightningLogger\nexcept Exception as exc:\n"
        "    print(type(exc).__name__, exc.extra)\n"
    )
    out = subprocess.run([PYTHON, "-c", code], env=python_env(), capture_output=True, text=True, timeout=60)
    assert out.stdout.split() == ["MissingExtraError", "lightning"], out.stderr
