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
