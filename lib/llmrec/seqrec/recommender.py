"""Classic sequential models and the popularity baseline as recommenders: a score for every item."""

from __future__ import annotations

import numpy as np

from ..core.recommender import Recommender
from ..core.samplers import item_counts
from ..data import load_dataset
from ..itemseq.recommender import ItemSeqRecommender
from .models import build_model


class SeqRecommender(ItemSeqRecommender):
    """A SASRec / GRU4Rec / Caser model: s(u, i) = <h_u, e_i> for every item i (column j = item j + 1)."""

    family = "seqrec"
    eval_batch = 1024

    @classmethod
    def build(cls, cfg: dict) -> "SeqRecommender":
        """The untrained model of a completed configuration (initialised from the current torch seed)."""
        return cls(cfg, build_model(cfg, max(load_dataset(cfg["dataset"]).items)).to(cfg["device"]))


class Popularity(Recommender):
    """Every user gets the same scores: the items' interaction counts in the training windows."""

    family = "popularity"
    eval_batch = 1024

    def __init__(self, dataset: str):
        self.ds = ds = load_dataset(dataset)
        self.n_items = max(ds.items)
        self.item_ids = np.arange(1, self.n_items + 1)
        self.counts = item_counts(ds.train, self.n_items).astype(np.float64)[1:]

    def score(self, hists) -> np.ndarray:
        return np.broadcast_to(self.counts, (len(hists), self.n_items))
