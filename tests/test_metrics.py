import math

import numpy as np
import pytest

from llmrec.core import metrics as M


def test_hand_computed_values():
    ranks = [0, 1, 4, 5, 9, np.inf]
    assert M.ndcg_at_k(ranks, 5).tolist() == pytest.approx([1, 1 / math.log2(3), 1 / math.log2(6), 0, 0, 0])
    assert M.hit_at_k(ranks, 5).tolist() == [1, 1, 1, 0, 0, 0]
    assert M.hit_at_k(ranks, 10).tolist() == [1, 1, 1, 1, 1, 0]
    assert M.mrr(ranks, 10).tolist() == pytest.approx([1, 1 / 2, 1 / 5, 1 / 6, 1 / 10, 0])
    s = M.summarize(ranks)
    assert s["ndcg@10"] == pytest.approx((1 + 1 / math.log2(3) + 1 / math.log2(6) + 1 / math.log2(7)
                                          + 1 / math.log2(11)) / 6)
    assert s["hr@5"] == pytest.approx(0.5)


def test_ranks_are_pessimistic_under_ties():
    scores = np.array([[0.1, 0.5, 0.5, 0.2], [3.0, 1.0, 2.0, 0.0]])
    assert M.rank_of_target(scores, np.array([1, 0])).tolist() == [1, 0]  # a tie with item 2 counts above


def test_ranks_from_lists_expand_shared_titles():
    groups = {"A": [3], "B": [5, 7], "C": [9]}
    got = M.ranks_from_lists([["A", "B", "C"], ["B", "A"], ["A"]], [7, 5, 9], title_groups=groups)
    assert got.tolist() == [2, 0, math.inf]


def test_paired_bootstrap_interval_and_sign():
    a = np.full(200, np.inf)
    b = np.where(np.arange(200) < 40, 0, np.inf)  # b hits 20% of users at rank 0
    out = M.paired_bootstrap(a, b, "hr@10", n_boot=500)
    assert out["diff"] == pytest.approx(0.2) and out["lo"] > 0.1 and out["hi"] < 0.3 and out["p_b_not_better"] == 0
    same = M.paired_bootstrap(b, b, "ndcg@10", n_boot=200)
    assert same["diff"] == same["lo"] == same["hi"] == 0
    with pytest.raises(ValueError, match="same users"):
        M.paired_bootstrap(a, b[:10])
    with pytest.raises(ValueError, match="unknown metric"):
        M.per_user(a, "auc")
    with pytest.raises(ValueError, match=">= 0"):
        M.ndcg_at_k([-1], 5)


def test_no_hit_bound_is_the_exact_binomial_upper_bound():
    from scipy import stats
    for n in (1, 24, 48, 500):
        bound = M.no_hit_bound(n)
        # Clopper-Pearson's one-sided upper bound for 0 successes, and its defining identity P(0 hits | p) = 5%
        assert bound == pytest.approx(stats.beta.ppf(0.95, 1, n), rel=1e-9)
        assert stats.binom.pmf(0, n, bound) == pytest.approx(0.05, rel=1e-9)
    assert M.no_hit_bound(48) == pytest.approx(3 / 48, rel=0.05)  # the rule of three
    with pytest.raises(ValueError, match="at least one user"):
        M.no_hit_bound(0)
