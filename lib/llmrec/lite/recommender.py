"""Lite-LLM4Rec as a recommender: one forward pass over the history's item vectors scores every item."""

from __future__ import annotations

from ..data import load_dataset
from ..llm.model import load_llm
from ..itemseq.recommender import ItemSeqRecommender
from .config import complete
from .items import item_vectors
from .model import LiteLLM4Rec, prepare_body


def build_model(cfg: dict, progress: bool = False) -> LiteLLM4Rec:
    """The untrained model of a completed configuration: the item table from the cache (encoded on first
    use), the recommendation LLM's first ``rec_layers`` blocks (LoRA or frozen or full), a fresh head."""
    ds = load_dataset(cfg["dataset"])
    vectors = None
    if cfg["encoder"] != "none":
        vectors = item_vectors(ds, cfg["encoder"], cfg["encoder_max_tokens"], cfg["encoder_dtype"], progress)
    llm, _ = load_llm(cfg["rec_model"], layers=cfg["rec_layers"], seed=cfg["seed"])
    body = prepare_body(llm.get_decoder(), cfg["tune"], {"r": cfg["lora_r"], "alpha": cfg["lora_alpha"],
                                                         "dropout": cfg["lora_dropout"], "targets": cfg["lora_targets"]})
    return LiteLLM4Rec(max(ds.items), body, vectors, cfg["head"], cfg["dropout"])


class LiteRecommender(ItemSeqRecommender):
    """A Lite-LLM4Rec model: s(u, i) for every item i from the last history position's state."""

    family = "lite"
    eval_batch = 512

    @classmethod
    def build(cls, cfg: dict) -> "LiteRecommender":
        cfg = complete(cfg)
        return cls(cfg, build_model(cfg).to(cfg["device"]))
