"""Ranking metrics from 0-based ranks, and paired bootstrap intervals.

A rank is the number of catalogue items placed above the target (0 = top).
Ties are broken pessimistically: every other item with a score equal to the
target's counts as above it. A recommendation list of length L that misses the
target gives rank >= L (use ``np.inf`` or any value >= k): it scores 0 at every
cut-off k <= L.

Items that share a title (Books has 6,344 items and 6,335 titles) cannot be
told apart by a title generator: the generated title stands for all of them.
:func:`ranks_from_lists` therefore expands a ranked list of titles into items
in item-id order, so the target's rank counts the other items of a shared title
placed before it (pessimistic for the target when its id is larger).
"""

from __future__ import annotations

import numpy as np


def _ranks(ranks) -> np.ndarray:
    r = np.asarray(ranks, dtype=float)
    if np.any(r < 0) or np.any(np.isnan(r)):
        raise ValueError("ranks must be >= 0 (0-based: the number of items above the target)")
    return r


def _users(values: np.ndarray) -> np.ndarray:
    """``values`` (one per user), refused when there are none: a mean over zero users is NaN, never a result."""
    if len(values) == 0:
        raise ValueError("a metric over zero users: nothing was evaluated (an empty split, or 0 users asked for)")
    return values


def hit_at_k(ranks, k: int) -> np.ndarray:
    """Per-user hit ratio: 1 if the target is in the top k (rank < k)."""
    return (_ranks(ranks) < k).astype(float)


def ndcg_at_k(ranks, k: int) -> np.ndarray:
    """Per-user NDCG@k with one relevant item: 1/log2(rank + 2) if rank < k else 0."""
    r = _ranks(ranks)
    out = np.zeros_like(r)
    hit = r < k
    out[hit] = 1.0 / np.log2(r[hit] + 2.0)
    return out


def mrr(ranks, k: int | None = None) -> np.ndarray:
    """Per-user reciprocal rank 1/(rank+1), 0 beyond ``k`` when given (a finite list)."""
    r = _ranks(ranks)
    out = 1.0 / (r + 1.0)
    if k is not None:
        out[r >= k] = 0.0
    return out


def rank_of_target(scores: np.ndarray, target: np.ndarray) -> np.ndarray:
    """0-based pessimistic rank of ``target[u]`` among ``scores[u]`` (users x items)."""
    scores = np.asarray(scores)
    t = scores[np.arange(len(scores)), np.asarray(target)]
    return (scores >= t[:, None]).sum(1) - 1


def ranks_from_lists(lists, targets, title_groups: dict | None = None, miss_rank: float = np.inf) -> np.ndarray:
    """Ranks of targets in ranked lists of item ids (or of titles expanded by ``title_groups``).

    ``lists[u]`` is a ranked list; each entry is an item id, or a key of
    ``title_groups`` (title -> sorted item ids) that expands into several items.
    """
    out = np.full(len(targets), miss_rank, dtype=float)
    for u, (lst, t) in enumerate(zip(lists, targets)):
        pos = 0
        for entry in lst:
            members = title_groups[entry] if title_groups is not None else [entry]
            if t in members:
                out[u] = pos + members.index(t)
                break
            pos += len(members)
    return out


K_VALUES = (5, 10)


def summarize(ranks, ks=K_VALUES) -> dict[str, float]:
    """Mean NDCG@k, HR@k for each k, and MRR (with the list length max(ks)); zero users are an error."""
    r = _users(_ranks(ranks))
    out = {}
    for k in ks:
        out[f"ndcg@{k}"] = float(ndcg_at_k(r, k).mean())
        out[f"hr@{k}"] = float(hit_at_k(r, k).mean())
    out["mrr"] = float(mrr(r, max(ks)).mean())
    return out


METRICS = {"ndcg": ndcg_at_k, "hr": hit_at_k}


def per_user(ranks, metric: str) -> np.ndarray:
    """Per-user values of ``"ndcg@10"``, ``"hr@5"``, ``"mrr"``..."""
    if metric == "mrr":
        return mrr(ranks, 10)
    name, _, k = metric.partition("@")
    if name not in METRICS or not k.isdigit():
        raise ValueError(f"unknown metric {metric!r}; use ndcg@K, hr@K or mrr")
    return METRICS[name](ranks, int(k))


def paired_bootstrap(ranks_a, ranks_b, metric: str = "ndcg@10", n_boot: int = 2000, seed: int = 0,
                     level: float = 0.95) -> dict[str, float]:
    """Paired bootstrap CI of mean(metric_b) - mean(metric_a) over the same users, from their ranks."""
    return {"metric": metric, **paired_difference(per_user(ranks_a, metric), per_user(ranks_b, metric), n_boot,
                                                  seed, level)}


def paired_difference(a, b, n_boot: int = 2000, seed: int = 0, level: float = 0.95) -> dict[str, float]:
    """Paired bootstrap CI of mean(b) - mean(a) for per-user values of the same users.

    Returns the observed difference, the interval and the share of resamples in
    which the difference is <= 0 (a one-sided bootstrap p-value for "b > a").
    """
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if a.shape != b.shape:
        raise ValueError(f"paired comparison needs the same users: {a.shape} vs {b.shape}")
    _users(a)
    d = b - a
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(d), size=(n_boot, len(d)))
    boots = d[idx].mean(1)
    lo, hi = np.quantile(boots, [(1 - level) / 2, 1 - (1 - level) / 2])
    return {"a": float(a.mean()), "b": float(b.mean()), "diff": float(d.mean()), "lo": float(lo), "hi": float(hi),
            "p_b_not_better": float((boots <= 0).mean()), "n": int(len(d))}


MC_Z = 3.0  # a bound is told apart from 0 when it lies more than 3 of its Monte Carlo standard errors away


def quantile_mc_error(boots: np.ndarray, q: float) -> float:
    """The Monte Carlo standard error of the ``q``-quantile of ``boots`` (resamples), distribution-free: half the
    distance between the order statistics one binomial standard deviation (sqrt(B q (1 - q)) ranks) either side
    of rank B q."""
    x = np.sort(np.asarray(boots, dtype=float))
    n = len(x)
    half = np.sqrt(n * q * (1 - q))
    lo, hi = int(np.floor(n * q - half)), int(np.ceil(n * q + half))
    return float((x[min(max(hi, 0), n - 1)] - x[min(max(lo, 0), n - 1)]) / 2)


def verdict(lo: float, hi: float, lo_mc: float, hi_mc: float, z: float = MC_Z) -> str:
    """``"resolved"`` when the interval [lo, hi] excludes 0 and each bound lies more than ``z`` of its Monte
    Carlo errors from 0; ``"edge"`` when a bound lies within that noise of 0 (more resamples, or none can tell
    on which side it falls); ``"unresolved"`` when the interval contains 0 beyond the noise (a bound exactly 0
    without Monte Carlo error, as when every resample gives the same difference, counts as containing it)."""
    if any(mc > 0 and abs(bound) <= z * mc for bound, mc in ((lo, lo_mc), (hi, hi_mc))):
        return "edge"
    return "resolved" if lo > 0 or hi < 0 else "unresolved"


def user_bootstrap(a, b, users=None, n_boot: int = 2000, max_boot: int = 128_000, seed: int = 0,
                   level: float = 0.95, z: float = MC_Z) -> dict:
    """Paired bootstrap CI of mean(b) - mean(a) over evaluation windows that resamples users: all the windows
    of one user (``users[i]``: the user of window ``i``; None: every window its own user) go in or out together.

    Each resample draws as many users as there are, with replacement, and takes the mean difference over all
    the drawn users' windows (a user drawn twice counts twice). With every user distinct this is
    :func:`paired_difference`, draw for draw (same seed, while ``n_boot`` x users stays under 2**22). The bounds are percentiles of
    the resamples, each with its Monte Carlo standard error (:func:`quantile_mc_error`); while a bound lies
    within ``z`` errors of 0 the resamples are doubled, up to ``max_boot``.

    Returns the means, the observed difference, the interval ``lo``/``hi`` and their errors ``lo_mc``/``hi_mc``,
    ``p_b_not_better`` (the share of resamples <= 0) and its error ``p_mc``, the numbers of windows ``n`` and
    users ``n_users``, ``n_boot`` (the resamples drawn) and :func:`verdict`'s ``verdict`` (``resolved``: True
    only for ``"resolved"``).
    """
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if a.shape != b.shape:
        raise ValueError(f"paired comparison needs the same users: {a.shape} vs {b.shape}")
    users = np.arange(len(a)) if users is None else np.asarray(users)
    if users.shape != a.shape:
        raise ValueError(f"one user per window: {len(users)} users for {len(a)} windows")
    if len(a) == 0:
        raise ValueError("a bootstrap needs at least one window")
    d = b - a
    _, first, inverse = np.unique(users, return_index=True, return_inverse=True)
    order = np.argsort(np.argsort(first))  # users numbered by their first window: distinct users keep d's order
    cluster = order[inverse]
    sums, counts = np.bincount(cluster, d), np.bincount(cluster).astype(float)
    rng = np.random.default_rng(seed)
    chunk = max(1, 2 ** 22 // len(sums))  # rows of user draws per batch: at most 32 MB of indices
    boots = np.zeros(0)
    q = ((1 - level) / 2, 1 - (1 - level) / 2)
    while True:
        need = n_boot - len(boots)
        while need > 0:
            idx = rng.integers(0, len(sums), size=(min(need, chunk), len(sums)))
            boots = np.concatenate([boots, sums[idx].sum(1) / counts[idx].sum(1)])
            need -= len(idx)
        lo, hi = np.quantile(boots, q)
        lo_mc, hi_mc = quantile_mc_error(boots, q[0]), quantile_mc_error(boots, q[1])
        v = verdict(lo, hi, lo_mc, hi_mc, z)
        if v != "edge" or n_boot >= max_boot:
            break
        n_boot = min(2 * n_boot, max_boot)
    p = float((boots <= 0).mean())
    return {"a": float(a.mean()), "b": float(b.mean()), "diff": float(d.mean()), "lo": float(lo), "hi": float(hi),
            "lo_mc": lo_mc, "hi_mc": hi_mc, "p_b_not_better": p, "p_mc": float(np.sqrt(p * (1 - p) / len(boots))),
            "n": int(len(d)), "n_users": int(len(sums)), "n_boot": int(len(boots)), "verdict": v,
            "resolved": v == "resolved"}


def mean_interval(values, n_boot: int = 2000, seed: int = 0, level: float = 0.95) -> tuple[float, float, float]:
    """``(mean, lo, hi)``: the mean of per-user values and its percentile-bootstrap interval (for values >= 0
    the interval stays >= 0)."""
    v = _users(np.asarray(values, dtype=float))
    boots = v[np.random.default_rng(seed).integers(0, len(v), (n_boot, len(v)))].mean(1)
    lo, hi = np.quantile(boots, [(1 - level) / 2, 1 - (1 - level) / 2])
    return float(v.mean()), float(lo), float(hi)


def no_hit_bound(n: int, level: float = 0.95) -> float:
    """The one-sided upper ``level`` bound of a hit rate when none of ``n`` users is hit (exact binomial: the rate
    at which 0 hits in ``n`` has probability ``1 - level``; about 3/n, the rule of three). NDCG@k <= HR@k for
    every user, so it bounds NDCG@k too."""
    if n < 1:
        raise ValueError(f"no_hit_bound needs at least one user, got {n}")
    return 1 - (1 - level) ** (1 / n)


def entry_values(entry: dict, metric: str) -> np.ndarray:
    """Per-user values of ``metric`` in an evaluation entry: a stored measure (``nll_valid``) or one of ranks."""
    if metric in entry and metric != "ranks":
        return np.asarray(entry[metric], dtype=float)
    return per_user(entry["ranks"], metric)


def compare_entries(a: dict, b: dict, metric: str, **kw) -> dict[str, float]:
    """Paired bootstrap of (b - a) for two evaluation entries of the same users (ranks or stored measures)."""
    if a["user_ids"] != b["user_ids"]:
        raise ValueError("the two evaluations are on different users")
    return {"metric": metric, **paired_difference(entry_values(a, metric), entry_values(b, metric), **kw)}


def compare_by_user(a: dict, b: dict, metric: str, **kw) -> dict:
    """:func:`compare_entries` with :func:`user_bootstrap`: the windows of one user (the entries' ``user_ids``)
    resampled together, enough resamples to tell each bound from 0, and a :func:`verdict`."""
    if a["user_ids"] != b["user_ids"]:
        raise ValueError("the two evaluations are on different users")
    return {"metric": metric, **user_bootstrap(entry_values(a, metric), entry_values(b, metric), a["user_ids"], **kw)}
