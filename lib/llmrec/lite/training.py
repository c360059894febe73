"""Training Lite-LLM4Rec: the item-sequence loop it shares with the classic family (:func:`llmrec.itemseq.loop.fit`)
on its model.

Adam on the trained parameters (adapter, LoRA, head), every position of a
training window labelled (or the last only), validation NDCG@10 on full
ranking after every epoch, early stopping, the best epoch's trained weights
in ``model.pt`` (the frozen LLM blocks and the item table are rebuilt from the
model cache and the item-vector cache at load time), per-epoch checkpoints to
resume from.
"""

from __future__ import annotations

from pathlib import Path

from ..itemseq.loop import fit
from .config import complete
from .recommender import LiteRecommender


def train(config: dict, run_dir: str | Path | None = None, progress: bool = True) -> Path:
    """Train one Lite-LLM4Rec configuration (keys of :data:`llmrec.lite.config.DEFAULTS`); return its run
    directory (the run cache's folder of the configuration unless ``run_dir`` is given)."""
    return fit(complete(config), LiteRecommender.build, run_dir, progress)
