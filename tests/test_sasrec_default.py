"""SASRec's default chosen on validation (issue 26 item 1): the candidates are the measured departures singly
and combined, trained on validation only, resumable, and the table chooses the best seed mean."""

import math

import pandas as pd
import pytest

from llmrec import runs
from llmrec.experiments import sasrec_default as S
from llmrec.experiments.classic_protocol import CHOSEN_DEFAULT, CHOSEN_DEPARTURES, PROTOCOL_VARIANTS, REFERENCE_CODE
from llmrec.seqrec.config import MODEL_DEFAULTS


def test_the_candidates_are_the_departures_singly_and_combined():
    singles = {n: {k: v for k, v in o.items() if k != "loss" and REFERENCE_CODE.get(k) != v}
               for n, o in PROTOCOL_VARIANTS.items() if n.startswith("CE, ") and n != CHOSEN_DEFAULT}
    assert all(len(o) >= 1 for o in singles.values())  # each departure changes something
    assert S.CANDIDATES[S.TODAY] == {}
    assert all(S.CANDIDATES[n.removeprefix("CE, ")] == o for n, o in singles.items())
    combined = [n for n in S.CANDIDATES if " + " in n]
    assert len(combined) == 4  # three pairs and all three
    for name in combined:  # a combination holds each of its parts' changes
        for part in name.split(" + "):
            assert S.CANDIDATES[part].items() <= S.CANDIDATES[name].items()
    configs = [S.candidate_config("laptop", "toy", n, 0, 0.01) for n in S.CANDIDATES]
    assert len({tuple(sorted(c.items())) for c in configs}) == len(S.CANDIDATES)  # every candidate is its own run
    # the code as it was is the protocol's SASRec + CE (the same run), not the library's default, the chosen one
    from llmrec.experiments.profile_runs import seqrec_config
    assert configs[0] == seqrec_config("laptop", "toy", **PROTOCOL_VARIANTS["SASRec + CE"], seed=0, lr=0.01)
    chosen = configs[list(S.CANDIDATES).index(" + ".join(S._COMBINED))]
    assert chosen == seqrec_config("laptop", "toy", loss="ce", seed=0, lr=0.01) != configs[0]


def test_the_table_chooses_the_best_seed_mean_and_says_its_margin():
    rows = [("a", 0.10), ("a", 0.12), (S.TODAY, 0.11), (S.TODAY, 0.115), ("b", 0.13), ("b", 0.116)]
    frame = pd.DataFrame([{"candidate": c, "seed": i % 2, "valid ndcg@10": v, "best epoch": 3, "s/run": 1.0}
                          for i, (c, v) in enumerate(rows)])
    t = S.selection_table(frame)
    assert S.chosen(t) == "b" and t["chosen"].sum() == 1
    assert math.isclose(t.loc["b", "margin"], 0.123 - 0.1125)
    assert t.loc["b", "beyond spread"] and not t.loc["a", "beyond spread"]  # b's worst seed beats today's best
    assert (t.loc["a", "min"], t.loc["a", "max"]) == (0.10, 0.12)


def test_default_selection_trains_validation_only_and_resumes(tmp_path, monkeypatch):
    names = (S.TODAY, "Adam beta2 0.999")
    evaluated = []
    real = runs.evaluate
    monkeypatch.setattr(runs, "evaluate", lambda *a, **k: evaluated.append(a) or real(*a, **k))
    t = S.default_selection("smoke", "synthetic", names=names, seeds=(0, 1), folder=tmp_path, progress=False)
    assert not evaluated  # no test window: the choice is made on validation
    assert list(t.index) == list(names) and (t["seeds"] == 2).all() and t["chosen"].sum() == 1
    assert len(list(tmp_path.glob("synthetic-*-seed-*.json"))) == 4
    monkeypatch.setattr(runs, "train", lambda *a, **k: pytest.fail("a finished run was trained again"))
    again = S.default_selection("smoke", "synthetic", names=names, seeds=(0, 1), folder=tmp_path, train=False)
    pd.testing.assert_frame_equal(again, t)
    with pytest.raises(FileNotFoundError, match="default-selection"):
        S.default_selection("smoke", "synthetic", names=("post-LN blocks",), folder=tmp_path, train=False)


def test_the_protocol_runs_the_default_the_committed_selection_chose():
    """The protocol's "chosen default" variant is the candidate the committed validation runs chose, and holds
    exactly its changes (a new selection that chose otherwise fails here until the variant follows it)."""
    t = S.default_selection("laptop", "toy", train=False, progress=False)
    assert (t["seeds"] == 3).all() and len(t) == len(S.CANDIDATES)
    assert S.chosen(t) == " + ".join(n.removeprefix("CE, ") for n in CHOSEN_DEPARTURES)
    assert PROTOCOL_VARIANTS[CHOSEN_DEFAULT] == {"loss": "ce", **S.CANDIDATES[S.chosen(t)]}
    assert S.CANDIDATES[S.chosen(t)] == MODEL_DEFAULTS["sasrec"]  # and the library's SASRec is that candidate


def test_the_chapter_states_the_choice_and_its_test_difference_from_the_tables():
    from llmrec.experiments import narrative
    assert narrative.CHOSEN == CHOSEN_DEFAULT
    frame = pd.DataFrame([{"candidate": c, "seed": s, "valid ndcg@10": v, "best epoch": 3, "s/run": 1.0}
                          for c, vals in ((S.TODAY, (0.010, 0.011)), ("N(0, 0.02) init", (0.013, 0.014)))
                          for s, v in enumerate(vals)])
    test = pd.DataFrame({"ndcg@10": [0.0100, 0.0112], "ndcg@10 min": [0.0090, 0.0105],
                         "ndcg@10 max": [0.0110, 0.0119], "seeds": [2, 2], "diff": [float("nan"), 0.0012],
                         "lo": [float("nan"), 0.0003], "hi": [float("nan"), 0.0021],
                         "verdict": [None, "resolved"]}, index=["SASRec + CE", CHOSEN_DEFAULT])
    text = narrative.default_findings(S.selection_table(frame), {"Toy": {"NDCG@10": test}})
    assert "Of 2 candidates" in text and "N(0, 0.02) init: 0.0135" in text and "2 seeds each" in text
    assert "worst seed is above" in text
    assert "by NDCG@10, the chosen default beats SASRec + CE" in text
    assert "0.0112 (seeds 0.0105 to 0.0119) against 0.0100 (seeds 0.0090 to 0.0110), 2 seeds each" in text
    assert "Books" not in text and "forward selection" not in text and "On Toy's test windows" in text
    assert "On Books' test windows" in narrative.default_findings(S.selection_table(frame), {"Books": {"NDCG@10": test}})
    books = S.selection_table(frame.assign(**{"valid ndcg@10": frame["valid ndcg@10"] * [1, 1.5, 1, 1]}))
    other = narrative.default_findings(S.selection_table(frame), {}, elsewhere={"Books": books})
    assert "On Books' validation (2 seeds each, the chosen candidate and the code as it was): 0.0135 (0.0130 to " \
           "0.0140) against 0.0133 (0.0100 to 0.0165); the seeds' spreads overlap." in other
    path = narrative.default_findings(S.selection_table(frame), {}, path=[S.TODAY, "N(0, 0.02) init"])
    assert "goes N(0, 0.02) init: the same choice" in path


def test_forward_selection_adds_the_best_departure_while_it_helps():
    means = {S.TODAY: 0.10, "a": 0.12, "b": 0.11, "c": 0.13, "a + b": 0.125, "a + c": 0.14, "b + c": 0.15,
             "a + b + c": 0.135}
    t = pd.DataFrame({"valid ndcg@10": means})
    assert S.forward_path(t) == [S.TODAY, "c", "b + c"]  # b + c beats a + c; a + b + c does not beat b + c
    assert S.forward_path(t.drop(index=["b + c"])) == [S.TODAY, "c", "a + c"]
    assert S.forward_path(pd.DataFrame({"valid ndcg@10": {S.TODAY: 0.2, "a": 0.1}})) == [S.TODAY]
    committed = S.default_selection("laptop", "toy", train=False, progress=False)
    assert S.forward_path(committed)[-1] == S.chosen(committed)  # validation alone reaches the same choice


def test_make_results_classic_selects_on_toy_and_checks_the_choice_elsewhere(monkeypatch):
    calls = []
    monkeypatch.setattr(S, "default_selection", lambda profile, dataset, names=None, seeds=(0, 1, 2), train=True,
                        progress=True: calls.append((dataset, names, train)) or S.selection_table(pd.DataFrame(
                            [{"candidate": n, "seed": 0, "valid ndcg@10": v, "best epoch": 1, "s/run": 1.0}
                             for n, v in ((S.TODAY, 0.1), ("Adam beta2 0.999", 0.2))])))
    S.default_reference("laptop", "toy")
    assert calls == [("toy", None, True)]
    calls.clear()
    S.default_reference("laptop", "books")
    assert calls == [("toy", None, False), ("books", (S.TODAY, "Adam beta2 0.999"), True)]
