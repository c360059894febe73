"""The classic sequential family (SCE paper): SASRec, GRU4Rec and Caser trained with CE, BCE, BPR,
sampled softmax or SCE, shaped like :mod:`llmrec.llm`: ``config``, ``models``, ``objectives``,
``recommender`` (the family's :class:`~llmrec.core.recommender.Recommender`, and popularity), ``train``."""

from .config import DEFAULTS, LOSSES, MODELS, complete
from .models import GRU4Rec, SASRec, Caser
from .recommender import Popularity, SeqRecommender
from .training import train
