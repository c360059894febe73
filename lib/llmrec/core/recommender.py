"""The one recommender interface, in the spirit of RecBole's ``predict`` / ``full_sort_predict``.

A trained model of any family answers two questions about a batch of
histories (lists of item ids, oldest first):

* :meth:`Recommender.score`: a score for every catalogue item, (users, items),
  columns in :attr:`Recommender.item_ids` order (higher is better);
* :meth:`Recommender.recommend`: a top-``k`` list per user.

and :meth:`Recommender.rank` turns either into the 0-based pessimistic rank
of each target under one of the family's evaluation ``modes``: ``"full"``
ranks the whole catalogue by :meth:`score`; a family may add its own (the LLM:
``"beam"``, the constrained beam-search list; ``"ground"``, generation +
nearest titles). A family that gives probabilities may also answer
:meth:`Recommender.likelihood` (the LLM: teacher-forced -log P of the target's
title), a continuous per-user measure that separates models on far fewer users
than a hit rate. :func:`evaluate` runs one mode (or ``"likelihood"``) on a
seeded sample of a split's windows, so that two runs of any families evaluated
on the same split and size pair user by user.
"""

from __future__ import annotations

import time

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from .metrics import rank_of_target, ranks_from_lists, summarize
from .samplers import sample_rows


class Recommender:
    """Base class of a trained recommender (subclasses set ``family``, ``item_ids`` and :meth:`score`)."""

    family: str = "?"
    modes: tuple[str, ...] = ("full",)
    eval_batch: int = 256  # users per call of rank / likelihood in :func:`evaluate`
    item_ids: np.ndarray  # the columns of :meth:`score`

    def score(self, histories) -> np.ndarray:
        raise NotImplementedError

    def recommend(self, histories, k: int = 10) -> list[list[int]]:
        """The ``k`` best-scoring items per user (ties: lower column first)."""
        s = np.asarray(self.score(histories))
        top = np.argsort(-s, axis=1, kind="stable")[:, :k]
        return [self.item_ids[row].tolist() for row in top]

    def rank(self, histories, targets, mode: str = "full", k: int = 10) -> np.ndarray:
        """0-based pessimistic rank of each target (``inf`` when a list mode misses it)."""
        self.check_mode(mode)
        if mode == "full":
            return rank_of_target(self.score(histories), self.columns(targets)).astype(float)
        return ranks_from_lists(self.recommend(histories, k), list(targets))

    def likelihood(self, histories, targets) -> dict[str, np.ndarray]:
        """Per-user negative log-likelihoods of the targets (nats), by name; only some families have one."""
        raise ValueError(f"a {self.family} recommender has no likelihood evaluation")

    def columns(self, item_ids) -> np.ndarray:
        col = getattr(self, "_col", None)
        if col is None:
            col = self._col = {int(i): c for c, i in enumerate(self.item_ids)}
        return np.asarray([col[int(i)] for i in item_ids], dtype=np.int64)

    def check_mode(self, mode: str) -> None:
        if mode not in self.modes:
            raise ValueError(f"a {self.family} recommender evaluates in modes {self.modes}, not {mode!r}")


def evaluate(rec: Recommender, windows: pd.DataFrame, mode: str = "full", n_users: int | None = None, k: int = 10,
             progress: bool = False) -> dict:
    """Ranks (or, with ``mode="likelihood"``, negative log-likelihoods) of the targets of ``n_users`` windows
    (a seeded sample, seed 0 whatever the run: paired across runs).

    Returns the per-user ``user_ids``, ``rows`` (positions in ``windows``),
    ``targets`` and ``ranks`` (likelihood: one list per measure, e.g.
    ``nll_valid``), the ``summary`` (NDCG/HR@5,10 and MRR, or the mean of each
    measure) and the seconds per user.
    """
    if mode != "likelihood":
        rec.check_mode(mode)
    rows = sample_rows(len(windows), n_users, seed=0)
    df = windows.iloc[rows]
    if len(df) == 0:
        raise ValueError("no windows to evaluate (an empty split): a metric over zero users is undefined")
    hist, targets = [list(h) for h in df["history"]], df["target"].astype(int).tolist()
    measure = rec.likelihood if mode == "likelihood" else (lambda H, T: {"ranks": rec.rank(H, T, mode, k)})
    t0 = time.perf_counter()
    B = rec.eval_batch
    parts = [measure(hist[b:b + B], targets[b:b + B])
             for b in tqdm(range(0, len(df), B), disable=not progress, desc=f"{mode} ({len(df)} users)")]
    seconds = time.perf_counter() - t0
    values = {name: np.concatenate([p[name] for p in parts]) for name in parts[0]} if parts else {}
    summary = ({name: float(v.mean()) for name, v in values.items()} if mode == "likelihood"
               else summarize(values.get("ranks", np.zeros(0))))
    return {"user_ids": df["user_id"].astype(int).tolist(), "rows": rows.tolist(), "targets": targets,
            **{name: v.tolist() for name, v in values.items()}, "mode": mode, "k": k, "n_users": len(df),
            "seconds": seconds, "seconds_per_user": seconds / max(len(df), 1), "summary": summary}
