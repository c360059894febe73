"""What the families trained on item sequences share (SASRec & co in :mod:`llmrec.seqrec`, Lite-LLM4Rec in
:mod:`llmrec.lite`): the scored-state model (``scorer.ItemScorer``), the losses over item scores
(``objectives.batch_loss``), the training loop (``loop.fit``) and the recommender (``recommender``)."""

from .loop import fit
from .objectives import batch_loss
from .recommender import ItemSeqRecommender
from .scorer import ItemScorer, histories, load_trainable, train_sequences, trainable_state
