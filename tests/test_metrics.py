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


def _clustered(seed: int, n_users: int, mean_diff: float):
    """Paired per-window values of ``n_users`` users with 1 to 4 windows each (a user's windows share a user
    effect, so they are correlated), in shuffled order."""
    rng = np.random.default_rng(seed)
    sizes = rng.integers(1, 5, n_users)
    users = rng.permutation(np.repeat(rng.choice(10 * n_users, n_users, replace=False), sizes))
    effect = dict(zip(np.unique(users), rng.normal(mean_diff, 1.0, n_users)))
    a = rng.random(len(users))
    return a, a + np.array([effect[u] for u in users]) + rng.normal(0, 0.3, len(users)), users


def test_user_bootstrap_matches_the_exact_cluster_bootstrap():
    """Against the bootstrap distribution enumerated exactly: 6 users, every one of the 6^6 equally likely
    ordered draws of 6 users, the mean difference over all the drawn users' windows. Each bound must be a
    quantile of that exact distribution and the share of resamples <= 0 its probability, up to the reported
    Monte Carlo error."""
    import itertools

    a, b, users = _clustered(3, 6, 0.2)
    ids = np.unique(users)
    sums = np.array([(b - a)[users == u].sum() for u in ids])
    counts = np.array([(users == u).sum() for u in ids])
    draws = np.array(list(itertools.product(range(len(ids)), repeat=len(ids))))
    exact = np.sort(sums[draws].sum(1) / counts[draws].sum(1))
    got = M.user_bootstrap(a, b, users, n_boot=64000, max_boot=64000, seed=1)
    assert got["n_users"] == 6 and got["n"] == len(users) and got["n_boot"] == 64000
    assert got["diff"] == pytest.approx((b - a).mean())
    for bound, q in ((got["lo"], 0.025), (got["hi"], 0.975)):
        tol = 4 * math.sqrt(q * (1 - q) / 64000)
        assert (exact <= bound + 1e-12).mean() >= q - tol and (exact < bound - 1e-12).mean() <= q + tol
    p_exact = (exact <= 0).mean()
    assert 0.02 < p_exact < 0.5
    assert got["p_b_not_better"] == pytest.approx(p_exact, abs=4 * got["p_mc"])


def test_user_bootstrap_agrees_with_scipy_and_reports_an_honest_monte_carlo_error():
    """scipy.stats.bootstrap on the users (their summed differences and window counts, resampled as pairs) gives
    the same percentile interval up to the Monte Carlo error; that error matches the spread of the bounds over
    bootstrap seeds; with every user distinct the resamples are :func:`paired_difference`'s, draw for draw."""
    from scipy import stats

    a, b, users = _clustered(0, 150, 0.15)
    ids = np.unique(users)
    sums = np.array([(b - a)[users == u].sum() for u in ids])
    counts = np.array([(users == u).sum() for u in ids], dtype=float)
    got = M.user_bootstrap(a, b, users, n_boot=20000, max_boot=20000)
    ref = stats.bootstrap((sums, counts), lambda s, c, axis=-1: s.sum(axis) / c.sum(axis), paired=True,
                          vectorized=True, n_resamples=20000, method="percentile", rng=0).confidence_interval
    assert got["lo"] == pytest.approx(ref.low, abs=5 * math.sqrt(2) * got["lo_mc"])
    assert got["hi"] == pytest.approx(ref.high, abs=5 * math.sqrt(2) * got["hi_mc"])
    # windows of one user are correlated: resampling windows alone gives a narrower (overconfident) interval
    windows = M.paired_difference(a, b, n_boot=20000)
    assert windows["hi"] - windows["lo"] < 0.9 * (got["hi"] - got["lo"])

    runs = [M.user_bootstrap(a, b, users, n_boot=2000, max_boot=2000, seed=s) for s in range(40)]
    for side in ("lo", "hi"):
        spread = np.std([r[side] for r in runs], ddof=1)
        assert 0.6 < np.mean([r[f"{side}_mc"] for r in runs]) / spread < 1.6, side

    distinct = M.user_bootstrap(a, b, np.arange(len(a))[::-1], seed=5)
    old = M.paired_difference(a, b, seed=5)
    assert {k: distinct[k] for k in old} == old and M.user_bootstrap(a, b, seed=5)["lo"] == old["lo"]


def test_resolved_only_where_the_bound_is_told_apart_from_zero():
    assert M.verdict(0.002, 0.01, 1e-4, 1e-4) == "resolved" and M.verdict(-0.01, -0.002, 1e-4, 1e-4) == "resolved"
    assert M.verdict(2e-4, 0.01, 1e-4, 1e-4) == "edge" and M.verdict(-0.01, -2e-4, 1e-4, 1e-4) == "edge"
    assert M.verdict(-0.01, 0.01, 1e-4, 1e-4) == "unresolved"
    assert M.verdict(0.0, 0.01, 0.0, 1e-4) == "unresolved"  # a lower bound exactly 0 (ties in every draw near it)
    assert M.verdict(0.0, 0.0, 0.0, 0.0) == "unresolved"

    a, b, users = _clustered(1, 300, 0.0)
    clear = M.user_bootstrap(a, b + 1.0, users)
    assert clear["verdict"] == "resolved" and clear["n_boot"] == 2000
    # shift b so that the lower bound sits on 0 (its mean over 10 seeds of 16,000 resamples): more resamples are
    # drawn, up to max_boot, and the bound stays within its Monte Carlo error of 0
    lo = np.mean([M.user_bootstrap(a, b, users, n_boot=16000, max_boot=16000, seed=s)["lo"] for s in range(10, 20)])
    edge = M.user_bootstrap(a, b - lo, users, max_boot=16000, seed=1)
    assert edge["n_boot"] == 16000 and edge["verdict"] == "edge" and not edge["resolved"]
    assert edge["lo_mc"] < M.user_bootstrap(a, b - lo, users, max_boot=2000, seed=1)["lo_mc"] / 2

    entry = {"user_ids": users.tolist(), "ranks": np.where(a > 0.5, 0.0, np.inf).tolist()}
    other = {**entry, "ranks": np.where(b > 0.5, 0.0, np.inf).tolist()}
    got = M.compare_by_user(entry, other, "hr@10")
    assert got["metric"] == "hr@10" and got["n_users"] == len(np.unique(users))
    with pytest.raises(ValueError, match="one user per window"):
        M.user_bootstrap(a, b, users[:-1])
    with pytest.raises(ValueError, match="different users"):
        M.compare_by_user(entry, {**other, "user_ids": users[::-1].tolist()}, "hr@10")
