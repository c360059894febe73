"""The Lite-LLM4Rec family (Wang et al. 2024): an item LLM encodes each item's text once (``items``), a
recommendation LLM runs over the sequence of those vectors and an item projection head scores the whole
catalogue in one pass (``model``); no titles are generated, no beam search. ``config``, ``recommender``,
``train`` (the classic family's loop). It sits above both :mod:`llmrec.llm` (SmolLM2, the text encoders) and
:mod:`llmrec.seqrec` (the item-sequence losses and loop)."""

from .config import DEFAULTS, complete
from .items import item_vectors
from .model import LiteLLM4Rec
from .recommender import LiteRecommender
from .training import base_weights, train
