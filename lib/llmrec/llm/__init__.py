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
from .recommender import LLMRecommender
from .training import base_weights, train
