"""A model trained on item sequences as a recommender: one forward pass over a history scores every item."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from ..core.io import read_json
from ..core.recommender import Recommender
from ..data import load_dataset
from .scorer import histories, load_trainable


class ItemSeqRecommender(Recommender):
    """An :class:`~llmrec.itemseq.scorer.ItemScorer` as a recommender: s(u, i) = <h_u, e_i> for every item i
    (column j = item j + 1). A family says how its untrained model is built (:meth:`build`)."""

    family = ""
    eval_batch = 1024

    def __init__(self, cfg: dict, model: torch.nn.Module):
        self.cfg, self.model = cfg, model
        self.ds = load_dataset(cfg["dataset"])
        self.n_items = model.n_items
        self.item_ids = np.arange(1, self.n_items + 1)
        self.device = torch.device(cfg["device"])

    @classmethod
    def build(cls, cfg: dict) -> "ItemSeqRecommender":
        """The untrained model of a completed configuration (initialised from the current torch seed)."""
        raise NotImplementedError

    @classmethod
    def from_run(cls, run_dir: str | Path) -> "ItemSeqRecommender":
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
