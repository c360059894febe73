"""The classic sequential family (SCE paper): SASRec, GRU4Rec and Caser trained with CE, BCE, BPR,
sampled softmax or SCE, shaped like :mod:`llmrec.llm`: ``config``, ``models``, ``recommender`` (the family's
:class:`~llmrec.core.recommender.Recommender`, and popularity), ``train`` (the item-sequence loop of
:mod:`llmrec.itemseq`). The models, recommenders and ``train`` are imported on first use (they import torch;
the configuration does not)."""

from .config import DEFAULTS, LOSSES, MODEL_DEFAULTS, MODELS, REFERENCE, SeqRecConfig, complete

_LAZY = {"GRU4Rec": "models", "SASRec": "models", "Caser": "models", "Popularity": "recommender",
         "SeqRecommender": "recommender", "train": "training"}


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f"{__name__}.{_LAZY[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
