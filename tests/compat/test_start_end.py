"""start_run and end_run with yProv4ML's signatures: names told apart by their values, every
3.2.8 keyword accepted, the end flags never failing a finished run."""

from __future__ import annotations

from pathlib import Path

import pytest

import yprov_hpc as prov4ml
from tests.compat.conftest import begin, finish
from yprov_hpc.compat import hooks
from yprov_hpc.compat.warn import CompatWarning


def test_a_lone_positional_name_is_the_experiment(save_dir: Path) -> None:
    """start_run("mnist") (3.2.8) names the experiment and keeps the default namespace."""
    run = begin(save_dir, "mnist")
    assert (run.config.experiment, run.config.namespace) == ("mnist", "www.example.org")


def test_namespace_first_as_in_the_paper(save_dir: Path) -> None:
    """start_run("www.example.org", "mnist") reads the namespace first, as the paper does."""
    run = begin(save_dir, "www.example.org", "mnist")
    assert (run.config.namespace, run.config.experiment) == ("www.example.org", "mnist")


def test_experiment_first_then_namespace_as_in_3_2_8(save_dir: Path) -> None:
    """start_run("mnist", "http://example.com/ns/") reads the experiment first, as 3.2.8 does."""
    run = begin(save_dir, "mnist", "http://example.com/ns/")
    assert (run.config.experiment, run.config.namespace) == ("mnist", "http://example.com/ns/")


def test_two_plain_names_are_refused_as_ambiguous(save_dir: Path) -> None:
    """Two positional names neither of which reads as a namespace raise InvalidArgumentError."""
    with pytest.raises(prov4ml.InvalidArgumentError, match="experiment_name= and prov_user_namespace="):
        begin(save_dir, "mnist", "test")


def test_the_namespace_follows_the_environment_when_not_given(
    save_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without a namespace argument, $YPROV_NAMESPACE is used before the default."""
    monkeypatch.setenv("YPROV_NAMESPACE", "https://lab.example.net/")
    assert begin(save_dir).config.namespace == "https://lab.example.net/"


def test_every_3_2_8_keyword_is_accepted(save_dir: Path) -> None:
    """All of start_run's 3.2.8 and documented keywords start a run (the unused ones warn)."""
    with pytest.warns(CompatWarning):
        run = begin(
            save_dir,
            experiment_name="kw",
            prov_user_namespace="www.example.org",
            collect_all_processes=False,
            save_after_n_logs=10,
            rank=None,
            metrics_file_type=prov4ml.MetricsType.ZARR,
            csv_separator=";",
            use_compressor=prov4ml.CompressorType.BLOSC_ZSTD,
            disable_codecarbon=True,
            unify_experiments=False,
        )
    assert run.active and run.config.batch_events == 10


def test_use_run_id_becomes_the_run_id(save_dir: Path) -> None:
    """use_run_id (3.2.8) is mapped to the run id, so the run directory is predictable."""
    run = begin(save_dir, use_run_id=7)
    assert run.run_id == "7" and run.run_dir.name == "exp_7"


def test_an_unknown_keyword_is_still_a_type_error(save_dir: Path) -> None:
    """A misspelt keyword raises TypeError naming it, as a Python call does."""
    with pytest.raises(TypeError, match="experimnt_name"):
        begin(save_dir, experimnt_name="x")


def test_end_run_with_crate_and_card_writes_both_and_finishes_the_run(save_dir: Path) -> None:
    """end_run(crate_ro_crate=True, create_card=True) writes an RO-Crate (read back with the rocrate
    library) and MODEL_CARD.md into the run directory, and the run is still finished."""
    from rocrate.rocrate import ROCrate

    run = begin(save_dir)
    prov4ml.log_param("lr", 0.25)
    prov4ml.log_metric("loss", 0.5, step=1)
    doc = finish(run, create_graph=True, create_svg=False, crate_ro_crate=True, create_card=True)
    assert doc["activity"]["run:rank0"]
    crate = ROCrate(run.run_dir)
    assert any(e.id.endswith("_rank0.json") for e in crate.get_entities())
    card = (run.run_dir / "MODEL_CARD.md").read_text()
    assert "| lr | 0.25 |" in card and "| loss |" in card


def test_a_failing_export_hook_never_fails_the_run(save_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """An exception in the after-end hook is reported in the RunReport, not raised."""

    def broken(report: object, crate: bool, card: bool) -> None:
        raise RuntimeError("no rocrate here")

    monkeypatch.setattr(hooks, "after_end_run", broken)
    begin(save_dir)
    report = prov4ml.end_run(crate_ro_crate=True)
    assert report.status == "finished"
    assert any("export failed" in p for p in report.problems)


def test_the_graph_request_reaches_the_merge(save_dir: Path) -> None:
    """end_run(True, False, True) keeps create_graph: the DOT graph is written."""
    run = begin(save_dir)
    prov4ml.end_run(True, False, True)
    assert list((run.run_dir / "graph").glob("*.dot"))


def test_no_graph_is_drawn_unless_asked(save_dir: Path) -> None:
    """end_run() without create_graph writes no graph: nothing the run did not ask for is done."""
    run = begin(save_dir)
    prov4ml.end_run()
    assert not list(run.run_dir.glob("graph/*"))


def test_log_provenance_documents_ends_the_run(save_dir: Path) -> None:
    """log_provenance_documents (the itwinai spelling) ends the run like end_run."""
    begin(save_dir)
    report = prov4ml.log_provenance_documents(create_graph=True)
    assert report.status == "finished" and prov4ml.active_run() is None


def test_every_keyword_of_the_real_start_run_passes_through() -> None:
    """The compatibility start_run knows every keyword-only setting of yprov_hpc.api.start_run
    (a new one added there and forgotten here would be a TypeError for top-level callers)."""
    import inspect

    from yprov_hpc import api
    from yprov_hpc.compat.api import _START_KEYWORDS

    keyword_only = {
        name
        for name, p in inspect.signature(api.start_run).parameters.items()
        if p.kind is inspect.Parameter.KEYWORD_ONLY
    }
    assert keyword_only <= _START_KEYWORDS
