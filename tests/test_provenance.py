"""The versions in every result: llmrec.core.provenance, a run directory's versions.json, a results record."""

import shutil
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import pytest

from llmrec.core import provenance, rundir

ROOT = Path(__file__).resolve().parents[1]


def test_versions_are_the_installed_distributions():
    v = provenance.versions(extra=("pytest", "no-such-distribution"))
    assert v["python"] == ".".join(map(str, sys.version_info[:3]))
    for name in ("torch", "transformers", "peft", "accelerate", "numpy", "marisa-trie", "pytest"):
        assert v[name] == metadata.distribution(name).version, name
    assert "no-such-distribution" not in v and all(isinstance(x, str) for x in v.values())
    assert provenance.installed("Marisa_Trie") == v["marisa-trie"]  # any spelling of the name


@pytest.mark.skipif(shutil.which("git") is None or not (ROOT / ".git").exists(), reason="not a git checkout")
def test_the_commit_is_the_checkouts():
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
    assert provenance.commit().removesuffix("+dirty") == head


def test_importing_runs_no_git():
    code = ("import llmrec.core.provenance as P, llmrec.core.rundir, llmrec.chapters; "
            "print(P.commit.cache_info().currsize)")
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == "0"


def test_a_run_directory_records_the_versions_of_each_process_that_trained_it(tmp_path, monkeypatch):
    run = tmp_path / "run"
    assert not rundir.open_run(run, {"lr": 0.1})
    first = rundir.read_json(run / "versions.json")
    assert first == [provenance.versions()]
    assert not rundir.open_run(run, {"lr": 0.1})  # resumed under the same versions: nothing added
    assert rundir.read_json(run / "versions.json") == first
    monkeypatch.setattr(rundir, "versions", lambda: {**provenance.versions(), "torch": "9.9.9"})
    assert not rundir.open_run(run, {"lr": 0.1})  # resumed under another torch: a second entry
    assert [v["torch"] for v in rundir.read_json(run / "versions.json")] == [first[0]["torch"], "9.9.9"]
    rundir.write_json(run / "done.json", {})
    assert rundir.open_run(run, {"lr": 0.1})  # finished: read, not trained, nothing added
    assert len(rundir.read_json(run / "versions.json")) == 2


def test_a_results_record_carries_the_versions_of_its_export_and_of_its_training(tmp_path):
    from llmrec.core import results as R

    run = tmp_path / "run"
    rundir.open_run(run, {"family": "seqrec", "dataset": "toy", "epochs": 1})
    rundir.write_json(run / "done.json", {"best_epoch": 1, "epochs_run": 1, "seconds_total": 1.0})
    prov = provenance.provenance()
    assert {"commit", "date", "machine", "torch", "versions"} <= set(prov)
    assert prov["versions"] == provenance.versions() and prov["torch"] == prov["versions"]["torch"]
    record = R.run_record(run, name="x", what="a test", profile="smoke", provenance=prov, dataset_fingerprint="f")
    assert record.provenance.versions == prov["versions"]  # the export's
    assert record.training.facts["versions"] == [provenance.versions()]  # each training process's
    back = R.read_record(R.write_record(tmp_path / "x.json", record))  # the schema takes both
    assert back.provenance.versions == prov["versions"] and back.training.facts["versions"] == [prov["versions"]]
