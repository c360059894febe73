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


def _trec_eval(runs: dict[int, dict[int, float]], targets, measures) -> dict[str, np.ndarray]:
    """Per-user values of ``measures`` computed by ir-measures (trec_eval, through pytrec_eval) on ``runs``
    ({user: {item: score}}) with one relevant item per user, the user's target."""
    import ir_measures as irm

    qrels = [irm.Qrel(f"u{u}", f"i{t}", 1) for u, t in enumerate(targets)]
    run = [irm.ScoredDoc(f"u{u}", f"i{i}", float(s)) for u, docs in runs.items() for i, s in docs.items()]
    out = {str(m): np.zeros(len(targets)) for m in measures}
    for v in irm.iter_calc(measures, qrels, run):
        out[str(v.measure)][int(v.query_id[1:])] = v.value
    return out


def _ours(ranks, k: int) -> dict[str, np.ndarray]:
    return {f"nDCG@{k}": M.ndcg_at_k(ranks, k), f"Success@{k}": M.hit_at_k(ranks, k),
            f"R@{k}": M.hit_at_k(ranks, k), f"RR@{k}": M.mrr(ranks, k), "RR": M.mrr(ranks)}


def test_metrics_agree_with_trec_eval_on_random_rankings_with_ties():
    """NDCG@k, HR@k (= Success@k = Recall@k with one relevant item) and MRR from our pessimistic ranks against
    ir-measures on the whole catalogue's scores. The scores are small integers, so the target often ties with
    other items; the library's run lowers the target's score by half a unit, which breaks exactly its ties
    against it (trec_eval's own tie-break, by document id, plays no part) and keeps every other order."""
    from ir_measures import RR, R, Success, nDCG

    rng = np.random.default_rng(0)
    n_users, n_items = 300, 40
    scores = rng.integers(0, 6, size=(n_users, n_items)).astype(float)
    targets = rng.integers(0, n_items, n_users)
    pessimistic = M.rank_of_target(scores, targets)
    optimistic = (scores > scores[np.arange(n_users), targets][:, None]).sum(1)
    assert (pessimistic > optimistic).mean() > 0.9  # ties at the target are the rule, not the exception
    runs = {u: {i: s - 0.5 * (i == targets[u]) for i, s in enumerate(scores[u])} for u in range(n_users)}
    for k in (1, 5, 10):
        measures = [nDCG @ k, Success @ k, R @ k, RR @ k, RR]
        lib = _trec_eval(runs, targets, measures)
        ours, opt = _ours(pessimistic, k), _ours(optimistic, k)
        for name in lib:
            np.testing.assert_allclose(ours[name], lib[name], rtol=1e-9, atol=1e-12, err_msg=f"{name}, k={k}")
            # the comparison can fail: the optimistic convention (ties above the target) disagrees with it
            assert not np.allclose(opt[name], lib[name]), f"{name}, k={k}: ties do not matter here"
    s = M.summarize(pessimistic)
    lib = _trec_eval(runs, targets, [nDCG @ 10, Success @ 5, RR @ 10])
    assert s["ndcg@10"] == pytest.approx(lib["nDCG@10"].mean()) and s["hr@5"] == pytest.approx(lib["Success@5"].mean())
    assert s["mrr"] == pytest.approx(lib["RR@10"].mean())


def test_list_metrics_agree_with_trec_eval_when_the_list_misses_the_target():
    """Ranks from ranked lists of length 10 (:func:`ranks_from_lists`, a miss is ``inf``) against ir-measures
    on the same lists (a list that misses the target scores 0 at every cut-off up to its length)."""
    from ir_measures import RR, Success, nDCG

    rng = np.random.default_rng(1)
    n_users, n_items, length = 200, 30, 10
    lists = [rng.permutation(n_items)[:length].tolist() for _ in range(n_users)]
    targets = rng.integers(0, n_items, n_users)
    ranks = M.ranks_from_lists(lists, targets)
    assert 0.2 < np.isinf(ranks).mean() < 0.8
    runs = {u: {i: float(length - pos) for pos, i in enumerate(lst)} for u, lst in enumerate(lists)}
    for k in (5, 10):
        lib = _trec_eval(runs, targets, [nDCG @ k, Success @ k, RR @ k, RR])
        ours = _ours(ranks, k)
        for name in lib:
            np.testing.assert_allclose(ours[name], lib[name], rtol=1e-9, atol=1e-12, err_msg=f"{name}, k={k}")
