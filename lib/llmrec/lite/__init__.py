"""The Lite-LLM4Rec family (Wang et al. 2024): an item LLM encodes each item's text once (``items``), a
recommendation LLM runs over the sequence of those vectors and an item projection head scores the whole
catalogue in one pass (``model``); no titles are generated, no beam search. ``config``, ``recommender``,
``train`` (the item-sequence loop it shares with the classic family, :mod:`llmrec.itemseq`). It sits above
:mod:`llmrec.llm` (SmolLM2, the text encoders) and :mod:`llmrec.itemseq`; it does not import :mod:`llmrec.seqrec`.
Everything but the configuration is imported on first use (it imports torch)."""

from .config import DEFAULTS, LiteConfig, complete

_LAZY = {"item_vectors": "items", "LiteLLM4Rec": "model", "LiteRecommender": "recommender", "train": "training",
         "base_weights": "training"}


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f"{__name__}.{_LAZY[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
