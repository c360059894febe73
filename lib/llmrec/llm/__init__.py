"""The generative LLM family (MSL paper): fine-tune an LLM to generate the next item's title.

Lowest first: ``prompts`` (the paper's templates), ``trie`` (the token trie of
titles, Z_valid), ``model`` (offline SmolLM2, LoRA), ``config`` (a run's
options), ``objectives`` (batches, hidden states, every loss of the family),
``frozen`` (the frozen lower blocks' cached output), ``decode`` (beam search,
shared-prompt attention, exact ranking, grounding), ``recommender`` (the
family's :class:`~llmrec.core.recommender.Recommender`), ``train`` (the LoRA
training loop).
"""

from .config import LOSSES, TrainConfig


def __getattr__(name: str):
    """``LLMRecommender``, ``train`` and ``base_weights`` on first use: they import torch, transformers and peft, which the command
    line's ``--help`` and ``check`` (and anything that needs only the prompts or the config) never need."""
    if name == "LLMRecommender":
        from .recommender import LLMRecommender

        return LLMRecommender
    if name in ("train", "base_weights"):
        from . import training

        return getattr(training, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
