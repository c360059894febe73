"""``llmrec remake`` (:mod:`llmrec.experiments.remake`): a committed record whose weights were not kept, trained
again; replayed where every committed evaluation comes back the same, made whole from the new run otherwise."""

import json
import math
import shutil

import pytest

from llmrec import runs
from llmrec.cli import main
from llmrec.core import rundir
from llmrec.core.results import Evaluation, read_record, run_record, write_record
from llmrec.experiments import remake as M
from llmrec.experiments.profile_runs import llm_config


def _evaluation(mode, **per_user):
    return Evaluation(split="test", mode=mode, n_users=3, user_ids=[1, 2, 3], summary={}, **per_user)


def test_same_evaluation_compares_user_for_user():
    beam = _evaluation("beam", k=10, ranks=[0.0, None, 4.0])
    entry = {"user_ids": [1, 2, 3], "ranks": [0.0, math.inf, 4.0]}  # a miss: None in a record, inf in metrics.json
    assert M.same_evaluation(beam, entry)
    assert not M.same_evaluation(beam, {**entry, "ranks": [0.0, math.inf, 5.0]})
    assert not M.same_evaluation(beam, {**entry, "ranks": [0.0, 3.0, 4.0]})  # found where the record missed
    assert not M.same_evaluation(beam, {**entry, "user_ids": [1, 2, 4]})
    nll = _evaluation("likelihood", nll_valid=[1.0, 2.0, 3.0])
    assert M.same_evaluation(nll, {"user_ids": [1, 2, 3], "nll_valid": [1.0, 2.0 + 5e-5, 3.0]})
    assert not M.same_evaluation(nll, {"user_ids": [1, 2, 3], "nll_valid": [1.0, 2.0 + 5e-4, 3.0]})


def test_log_drift():
    old = [{"epoch": 0, "step": s, "loss": 1.0 / s} for s in (1, 2)] + [
        {"event": "epoch_end", "epoch": 0, "valid_nll_valid": 3.0}]
    same = M.log_drift(old, json.loads(json.dumps(old)))
    assert same == {"same_steps": True, "loss": 0.0, "valid": 0.0}
    moved = [dict(r, loss=r["loss"] + 0.25) if "loss" in r else dict(r, valid_nll_valid=3.5) for r in old]
    assert M.log_drift(old, moved) == {"same_steps": True, "loss": 0.25, "valid": 0.5}
    assert M.log_drift(old, old[1:])["same_steps"] is False and M.log_drift(old, old[1:])["loss"] == math.inf


@pytest.fixture()
def committed(tmp_path, monkeypatch):
    """A smoke LML run evaluated on test (beams, likelihood), committed as a record without its weights."""
    monkeypatch.setenv("LLMREC_RUNS", str(tmp_path / "runs"))
    monkeypatch.setenv("LLMREC_RESULTS", str(tmp_path / "results"))
    run = runs.train(llm_config("smoke", "lml", "synthetic"), progress=False)
    keys = [runs.metrics_key("test", "beam", 8, 4), runs.metrics_key("test", "likelihood", 8, 4)]
    runs.evaluate(run, "test", "beam", 8, k=4, progress=False)
    runs.evaluate(run, "test", "likelihood", 8, k=4, progress=False)
    path = tmp_path / "results" / "smoke" / "llm" / f"{run.name}.json"
    write_record(path, run_record(run, name=run.name, what="a test", profile="smoke", keys=keys,
                                  provenance={"machine": "a test", "commit": "0" * 40, "date": "2026-12-06"}))
    shutil.rmtree(run)  # the weights were not kept
    return path, run


def test_a_run_trained_again_the_same_keeps_its_record_and_gains_the_beam_scorings(committed, capsys):
    path, run = committed
    before = read_record(path)
    assert main(["remake", str(path), "--beam-scorings"]) == 0
    assert "replayed" in capsys.readouterr().out
    after = read_record(path)
    for key, ev in before.evaluations.items():
        assert after.evaluations[key] == ev  # kept as committed
    added = {(e.split, e.options.get("beam_score", "full")) for k, e in after.evaluations.items()
             if k not in before.evaluations}
    assert added == {("valid", "full"), ("valid", "valid"), ("test", "valid")}
    pair = [e for e in after.evaluations.values() if (e.split, e.mode) == ("test", "beam")]
    assert pair[0].user_ids == pair[1].user_ids and pair[0].k == pair[1].k
    assert after.log == before.log and "added" in after.provenance.note and after.provenance.commit == "0" * 40
    # again, weights gone: every evaluation it now holds is compared (the P_valid ones too), the note carried on
    shutil.rmtree(run)
    again = M.remake(path, scorings=True)
    assert again["verdict"] == "replayed" and again["differs"] == []
    final = read_record(path)
    assert final.evaluations == after.evaluations
    assert final.provenance.note.startswith("nothing added") and after.provenance.note in final.provenance.note


def _tampered(record, key=None, log=False):
    """``record`` as if its run had been another: one user's beam rank under ``key`` moved, or every logged
    training loss 0.1 higher."""
    update = {}
    if key is not None:
        ranks = list(record.evaluations[key].ranks)
        ranks[0] = 7.0 if ranks[0] != 7.0 else 6.0
        update["evaluations"] = {**record.evaluations, key: record.evaluations[key].model_copy(update={"ranks": ranks})}
    if log:
        update["log"] = [dict(r, loss=r["loss"] + 0.1) if "loss" in r and "step" in r else r for r in record.log]
    return record.model_copy(update=update)


@pytest.mark.parametrize("moved", ["a rank", "the log"])
def test_a_run_that_is_not_the_committed_one_makes_the_record_whole(committed, moved):
    """Either sign alone (one evaluation that differs, or the training log) makes the new run a twin: the record
    becomes the new run's, every evaluation and the log, with the beam scorings."""
    path, run = committed
    before = read_record(path)
    key = runs.metrics_key("test", "beam", 8, 4)
    drifted = _tampered(before, key=key) if moved == "a rank" else _tampered(before, log=True)
    write_record(path, drifted)
    result = M.remake(path, scorings=True)
    assert result["verdict"] == "remade"
    assert result["differs"] == ([key] if moved == "a rank" else [])
    assert result["drift"]["loss"] == (0.0 if moved == "a rank" else pytest.approx(0.1, abs=1e-6))
    after = read_record(path)
    for k, ev in before.evaluations.items():
        assert after.evaluations[k].user_ids == ev.user_ids and after.evaluations[k].ranks == ev.ranks  # the new run's
    assert len(after.evaluations) == len(before.evaluations) + 3  # and the three scorings
    assert [r.get("loss") for r in after.log] == [r.get("loss") for r in rundir.read_log(run)]
    assert after.provenance.note.startswith("made again whole") and "0000000" in after.provenance.note
    assert after.provenance.commit != "0" * 40


def test_a_record_on_data_that_changed_is_refused(committed):
    path, run = committed
    write_record(path, read_record(path).model_copy(update={"dataset_fingerprint": "another"}))
    with pytest.raises(ValueError, match="has changed"):
        M.remake(path)
    assert not run.exists()  # refused before anything trained


def test_key_args_inverts_metrics_key():
    for args in [dict(split="test", mode="beam", n_users=500, k=10, beam_score="valid"),
                 dict(split="valid", mode="likelihood", n_users=None, k=10),
                 dict(split="test", mode="ground", n_users=8, k=20, embed="minilm"),
                 dict(split="test", mode="full", n_users=None, k=10)]:
        key = runs.metrics_key(**args)
        back = runs.key_args(key)
        assert runs.metrics_key(**{**back, "k": back["k"] or 10}) == key
    assert runs.key_args("test/beam/n500/k10/score-valid")["beam_score"] == "valid"
    with pytest.raises(ValueError, match="not an evaluation key"):
        runs.key_args("test/beam/500")
