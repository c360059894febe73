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

from ..core.custom_loss import configure
from ..itemseq.loop import fit
from ..llm.model import weights_fingerprint
from .config import complete
from .items import encoder_fingerprint
from .recommender import LiteRecommender


def base_weights(config: dict) -> dict:
    """The fingerprints of the pretrained weights a run starts from (its identity's ``weights``): the
    recommendation LLM's and the item LLM's (none for learned item-id embeddings)."""
    cfg = complete(config)
    out = {"rec_model": weights_fingerprint(cfg["rec_model"], seed=cfg["seed"])}
    if cfg["encoder"] != "none":
        out["encoder"] = encoder_fingerprint(cfg["encoder"])
    return out


def train(config: dict, run_dir: str | Path | None = None, progress: bool = True, loss_fn=None) -> Path:
    """Train one Lite-LLM4Rec configuration (keys of :data:`llmrec.lite.config.DEFAULTS`); return its run
    directory (the run cache's folder of the configuration and weights unless ``run_dir`` is given).
    ``loss_fn(scores, targets) -> loss``: a loss of your own instead of ``config["loss"]``
    (:mod:`llmrec.core.custom_loss`)."""
    cfg = complete(configure(config, loss_fn)[0])
    return fit(cfg, LiteRecommender.build, run_dir, progress, weights=lambda: base_weights(cfg), loss_fn=loss_fn)
