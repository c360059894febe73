"""Chapters that stand alone: the committed runs of ``results/<profile>/`` read beneath the run cache by default
(``retrain=False``), published by the canonical batch only, and ignored by ``retrain=True``."""

import hashlib
from pathlib import Path

import nbformat
import pytest

from llmrec import chapters, runs
from llmrec.core import results, rundir
from llmrec.experiments import lite_vs_sasrec, profile_runs, published

NB_DIR = Path(__file__).resolve().parents[1] / "notebooks"
LONG = ("02", "05", "06", "07", "08")  # the chapters over 5 minutes when they train (the canonical quick batch)


@pytest.fixture(autouse=True)
def caches(tmp_path, monkeypatch):
    """A run cache and a committed results folder of the test's own; the layers, results mode and exports off
    after it."""
    monkeypatch.setenv("LLMREC_RUNS", str(tmp_path / "runs"))
    monkeypatch.setenv("LLMREC_RESULTS", str(tmp_path / "results"))
    monkeypatch.setattr(profile_runs, "LLM_RUNS", {})
    yield
    rundir.use_fallback(())
    rundir.use_committed(None)
    runs.WATCHERS.clear()


def seqrec(**over) -> dict:
    return profile_runs.seqrec_config("smoke", None, epochs=2, **over)


def digest(folder: Path) -> str:
    """The names and bytes of every file under ``folder``: what a run must never change in committed results."""
    files = sorted(p for p in folder.rglob("*") if p.is_file())
    return hashlib.sha1(b"".join(str(p.relative_to(folder)).encode() + p.read_bytes() for p in files)).hexdigest()


def publish_one(tmp_path: Path) -> tuple[Path, dict]:
    """A smoke SASRec run trained, evaluated and published by a run with ``export_results`` (retrain), then the
    run cache emptied: what a fresh clone holds. Returns the published record's path and the evaluation."""
    published.standalone("smoke", retrain=True, export=True, what="test")
    run = runs.train(seqrec(), progress=False)
    ev = runs.evaluate(run, "test", "full", 8, progress=False)
    record = tmp_path / "results" / "smoke" / "seqrec" / f"{run.name}.json"
    assert "test/full/n8" in results.read_record(record).evaluations  # published as it was evaluated
    assert not (record.parent / run.name).exists() and not list(record.parent.glob("*.pt"))  # no weights
    rundir.use_fallback(())
    runs.WATCHERS.clear()
    import shutil

    shutil.rmtree(tmp_path / "runs")
    return record, ev


def test_a_committed_run_is_found_by_its_key_and_never_written(tmp_path):
    record, ev = publish_one(tmp_path)
    before = digest(tmp_path / "results")
    assert published.standalone("smoke") == [record.parent]
    run = runs.train(seqrec(), progress=False)
    assert rundir.is_committed(run) and run.name == record.stem
    assert not (tmp_path / "runs").exists()  # nothing trained
    back = runs.evaluate(run, "test", "full", 8, progress=False)
    assert back["ranks"] == ev["ranks"] and back["user_ids"] == ev["user_ids"]
    with pytest.raises(PermissionError, match="committed run"):
        rundir.save_metrics(run, "test/full/n8", back)
    with pytest.raises(FileNotFoundError, match="not among the committed results"):
        rundir.open_run(run, {**seqrec(), "lr": 1.0})
    other = runs.train(seqrec(seed=1), progress=False)  # another key: trained in the run cache as usual
    assert not rundir.is_committed(other) and other.parent == tmp_path / "runs" and rundir.is_done(other)
    assert digest(tmp_path / "results") == before  # nothing committed was written, nothing published
    assert digest(rundir.fallback_layers()[0]) == digest(published.unpacked(record.parent, "smoke-seqrec"))


def test_what_a_committed_run_lacks_trains_it_in_the_run_cache(tmp_path):
    record, ev = publish_one(tmp_path)
    before = digest(tmp_path / "results")
    published.standalone("smoke")
    run = runs.train(seqrec(), progress=False)
    new = runs.evaluate(run, "valid", "full", 8, progress=False)  # not published: needs the weights
    twin = tmp_path / "runs" / run.name
    assert rundir.is_done(twin) and "valid/full/n8" in rundir.load_metrics(twin)
    assert "valid/full/n8" not in rundir.load_metrics(run) and new["split"] == "valid"
    assert runs.train(seqrec(), progress=False) == twin  # the run cache first, now that it holds the run
    assert runs.load(run).model is not None  # a committed run loads by its twin's weights
    assert digest(tmp_path / "results") == before


def test_retrain_ignores_the_committed_runs(tmp_path):
    record, _ = publish_one(tmp_path)
    assert published.standalone("smoke", retrain=True) == []
    run = runs.train(seqrec(), progress=False)
    assert run == tmp_path / "runs" / record.stem and not rundir.is_committed(run)
    published.standalone("smoke")  # and back: the run cache's finished run comes before the committed one
    assert runs.train(seqrec(), progress=False) == run


def test_an_empty_committed_folder_trains_as_before(tmp_path):
    (tmp_path / "results" / "smoke" / "llm").mkdir(parents=True)
    assert published.standalone("smoke") == [] and rundir.fallback_layers() == ()
    run = runs.train(seqrec(), progress=False)
    assert run.parent == tmp_path / "runs" and rundir.is_done(run)


def test_llm_runs_are_keyed_by_their_weights_and_sdpo_trains_its_reference_when_it_must(tmp_path):
    """An LLM run's committed record is found under the key that holds the weights' fingerprint; an S-DPO run
    the records lack trains its committed reference in the run cache first (its adapter is needed)."""
    published.standalone("smoke", retrain=True, export=True)
    lml = profile_runs.llm_run("smoke", "lml", None, "cpu", progress=False, seed=0)
    assert "-w" in lml.name and (tmp_path / "results" / "smoke" / "llm" / f"{lml.name}.json").exists()
    runs.WATCHERS.clear()
    import shutil

    shutil.rmtree(tmp_path / "runs")
    published.standalone("smoke")
    again = profile_runs.llm_run("smoke", "lml", None, "cpu", progress=False, seed=0)
    assert rundir.is_committed(again) and again.name == lml.name and not (tmp_path / "runs").exists()
    sdpo = profile_runs.llm_run("smoke", "sdpo", None, "cpu", progress=False, seed=0)
    assert not rundir.is_committed(sdpo) and rundir.is_done(tmp_path / "runs" / lml.name)


def test_only_the_canonical_batch_publishes_and_every_batch_retrains(tmp_path, monkeypatch):
    seen = {}

    def execute(todo, common, out_dir, kernel, cell_timeout, extras, planned=None):
        seen[common["profile"]] = {nb.name[:2]: chapters.chapter_parameters(nb, common, extras) for nb in todo}
        return [(nb.name, 0.0, None) for nb in todo]

    monkeypatch.setattr(chapters, "_execute", execute)
    # the canonical batch (quick, on the CPU, the chapters' own datasets), then another
    assert chapters.run_batch("quick", only=list(LONG), out_dir=tmp_path / "executed") == 0
    assert chapters.run_batch("smoke", only=list(LONG), out_dir=tmp_path / "executed") == 0
    for n in LONG:
        assert seen["quick"][n]["retrain"] is True and seen["quick"][n]["export_results"] is True, n
        assert seen["smoke"][n]["retrain"] is True and "export_results" not in seen["smoke"][n], n


@pytest.mark.parametrize("n", LONG)
def test_a_long_chapter_reads_the_committed_runs_by_default(n):
    (path,) = chapters.chapters(NB_DIR, [n])
    code = [c for c in nbformat.read(path, as_version=4).cells if c.cell_type == "code"]
    declared = chapters.pm.inspect_notebook(str(path))
    assert declared["retrain"]["default"] == "False" and declared["export_results"]["default"] == "False"
    assert "published.standalone(" in code[1].source and "retrain" in code[1].source


def test_chapter_08_shows_its_committed_study_only_for_its_own_parameters(tmp_path):
    """committed_study: the main run's record under its key, every ablation, the cost timed on the same users."""
    folder = tmp_path / "results" / "smoke" / "08_lite"
    config = profile_runs.lite_config("smoke", None, epochs=1)
    run = runs.train(config, progress=False)
    ev = runs.evaluate(run, "test", "full", progress=False)
    names = lite_vs_sasrec.LITE_VARIANTS
    published.export_runs({name: (run, ev) for name in names}, folder, "smoke", "synthetic", "test")
    import pandas as pd

    cost = pd.DataFrame({"method": list("abcd"), "users": [16, 16, 2, 100]}).set_index("method")
    assert not lite_vs_sasrec.committed_study(folder, "synthetic", config)  # no inference cost yet
    published.export_table(cost, folder, "synthetic", "inference-cost", "test")
    assert lite_vs_sasrec.committed_study(folder, "synthetic", config)
    assert not lite_vs_sasrec.committed_study(folder, "synthetic", {**config, "seed": 1})
    assert not lite_vs_sasrec.committed_study(folder, "synthetic", config, ablations=False)
    assert not lite_vs_sasrec.committed_study(folder, "synthetic", config, beam_users=8)
    next(folder.glob("synthetic-dot-product-head.json")).unlink()
    assert not lite_vs_sasrec.committed_study(folder, "synthetic", config)
