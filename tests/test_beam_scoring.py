"""The beam-scoring choice (issue 26, item 2): pooling over runs against a direct computation, the rule, and the
library's default against the choice the committed validation evaluations make."""

import inspect
import math

import numpy as np
import pytest

from llmrec import runs
from llmrec.core.metrics import compare_by_user
from llmrec.experiments import beam_scoring as B
from llmrec.llm.recommender import LLMRecommender


def _entry(ranks, users):
    return {"ranks": [math.inf if r is None else float(r) for r in ranks], "user_ids": list(users),
            "n_users": len(users), "summary": {}}


def _ndcg(ranks):  # NDCG@10 of one target per window, written out
    return np.array([1 / math.log2(r + 2) if r is not None and r < 10 else 0.0 for r in ranks])


def test_pooled_is_the_mean_over_runs_of_each_scoring():
    rng = np.random.default_rng(3)
    users = list(range(40))
    raw = {f"run {i}": [[int(x) if x < 14 else None for x in rng.integers(0, 30, 40)] for _ in range(2)]
           for i in range(3)}
    pairs = {k: (_entry(f, users), _entry(v, users)) for k, (f, v) in raw.items()}
    got = B.pooled(pairs)
    want = np.mean([_ndcg(v) - _ndcg(f) for f, v in raw.values()])
    assert got["diff"] == pytest.approx(want)
    assert got["runs"] == 3 and got["lo"] <= got["diff"] <= got["hi"]
    one = {"run 0": pairs["run 0"]}  # one run pooled: the per-run comparison, draw for draw
    single = compare_by_user(*pairs["run 0"], "ndcg@10")
    assert (B.pooled(one)["lo"], B.pooled(one)["hi"]) == pytest.approx((single["lo"], single["hi"]))


def test_pooled_refuses_runs_on_other_windows():
    a = (_entry([1, None], [1, 2]), _entry([0, None], [1, 2]))
    b = (_entry([1, None], [1, 3]), _entry([0, None], [1, 3]))
    with pytest.raises(ValueError, match="different windows"):
        B.pooled({"a": a, "b": b})


def test_the_rule_changes_the_default_only_for_a_resolved_gain():
    users = list(range(300))
    full = _entry([None] * 300, users)
    better = _entry([0] * 60 + [None] * 240, users)  # P_valid finds 60 targets first, full none
    worse_pairs = {"r": (better, full)}
    assert B.decide(B.pooled({"r": (full, better)})) == "valid"
    assert B.decide(B.pooled(worse_pairs)) == "full"  # resolved, but below 0
    assert B.decide(B.pooled({"r": (full, full)})) == "full"  # no difference


def test_the_library_default_is_the_choice_on_the_committed_validation_runs():
    c = B.choice()
    assert c["choice"] == B.DEFAULT
    assert len(c["runs"]) >= 3 and c["users"] >= 100  # the seed-1 reference runs, evaluated both ways
    assert inspect.signature(runs.evaluate).parameters["beam_score"].default == B.DEFAULT
    assert LLMRecommender.beam_score == B.DEFAULT


def test_every_committed_reference_arm_with_both_test_scorings_is_in_the_table():
    table = B.scoring_table("test")
    assert {"LML (seed 0)", "MSL + ATS (seed 0)", "LML (seed 1)", "MSL + ATS (seed 1)"} <= set(table["run"])
    assert table["run"].iloc[-1].startswith("pooled") and (table["users"] == 500).all()


def test_books_reference_runs_scored_both_ways_are_judged_by_the_same_rule():
    """Books checks the choice on a second dataset: its runs scored both ways are tabled on the same 500 test users,
    and the rule applied to its validation beams is the same function as Toy's."""
    table = B.scoring_table("test", "books")
    assert {"LML (seed 1)", "MSL + ATS (seed 1)", "S-DPO (seed 0)"} <= set(table["run"])
    assert (table["users"] == 500).all()
    c = B.choice(dataset="books")
    assert c["choice"] == B.decide(c["pooled"]) and 0 < c["users"] <= 100 and len(c["runs"]) >= 3


def test_runs_that_differ_only_in_learning_rate_get_their_own_labels():
    from llmrec.core.results import records
    from llmrec.experiments.published import results_root
    sweep = {r.config["lr"]: r for r in records(results_root() / "laptop" / "llm").values()
             if r.config["loss"] == "msl" and float(r.config["tau"]) == 1.0}
    assert set(sweep) == {1e-3, 3e-3}  # chapter 05's τ 1 at the profile's learning rate and at 3x it
    assert B.run_label(sweep[1e-3]) == "MSL τ 1 (seed 0)"
    assert B.run_label(sweep[3e-3]) == "MSL τ 1, lr 0.003 (seed 0)"


def test_not_scored_names_the_runs_with_beams_scored_one_way_only(tmp_path, monkeypatch):
    from llmrec.core.results import read_record, write_record
    from llmrec.experiments.published import results_root

    src = results_root() / "laptop" / "transfer" / "toy-lml-seed-1.json"
    monkeypatch.setenv("LLMREC_RESULTS", str(tmp_path))
    rec = read_record(src)
    write_record(tmp_path / "laptop" / "transfer" / src.name, rec)
    assert B.not_scored("test") == [] and list(B.scored_both_ways("test")) == ["LML (seed 1)"]
    from llmrec.experiments import doc_llm
    assert doc_llm._choice_values("toy")["not_scored"] == "none"
    one_way = {k: e for k, e in rec.evaluations.items() if "score-valid" not in k}
    write_record(tmp_path / "laptop" / "transfer" / src.name, rec.model_copy(update={"evaluations": one_way}))
    assert B.not_scored("test") == ["LML (seed 1)"] and B.scored_both_ways("test") == {}


@pytest.mark.parametrize("dataset", ["toy", "books"])
def test_every_committed_laptop_run_with_beams_is_scored_both_ways(dataset):
    """Issue 26, item 2: every committed `laptop` LLM run evaluated by beam search has its beams scored by log
    P_valid too, on test and on validation (`llmrec remake --beam-scorings` made the runs kept without weights)."""
    assert B.not_scored("test", dataset) == [] and B.not_scored("valid", dataset) == []
    assert set(B.scored_both_ways("test", dataset)) <= set(B.scored_both_ways("valid", dataset))  # chosen on validation
