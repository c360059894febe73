"""Classic sequential models and the popularity baseline as recommenders: a score for every item."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from ..core.io import read_json
from ..core.recommender import Recommender
from ..core.samplers import item_counts
from ..data import load_dataset
from .models import build_model, histories, load_trainable


class SeqRecommender(Recommender):
    """A SASRec / GRU4Rec / Caser model: s(u, i) = <h_u, e_i> for every item i (column j = item j + 1)."""

    family = "seqrec"
    eval_batch = 1024

    def __init__(self, cfg: dict, model: torch.nn.Module):
        self.cfg, self.model = cfg, model
        self.ds = load_dataset(cfg["dataset"])
        self.n_items = model.n_items
        self.item_ids = np.arange(1, self.n_items + 1)
        self.device = torch.device(cfg["device"])

    @classmethod
    def build(cls, cfg: dict) -> "SeqRecommender":
        """The untrained model of a completed configuration (initialised from the current torch seed)."""
        return cls(cfg, build_model(cfg, max(load_dataset(cfg["dataset"]).items)).to(cfg["device"]))

    @classmethod
    def from_run(cls, run_dir: str | Path) -> "SeqRecommender":
        """The best validation epoch of a finished run (``model.pt``: its trained weights), in eval mode."""
        run_dir = Path(run_dir)
        rec = cls.build(read_json(run_dir / "config.json"))
        load_trainable(rec.model, torch.load(run_dir / "model.pt", map_location=rec.cfg["device"],
                                             weights_only=False)["model"])
        rec.model.eval()
        return rec

    @torch.no_grad()
    def score(self, hists) -> np.ndarray:
        self.model.eval()
        h = self.model(histories(hists, self.cfg["maxlen"]).to(self.device))[:, -1]
        return self.model.scores(h).float().cpu().numpy()


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
