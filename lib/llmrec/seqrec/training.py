"""Classic sequential recommenders (SASRec, GRU4Rec) trained with CE, BCE, BPR, sampled softmax or SCE.

The SCE paper's question: is an LLM recommender better because it is an LLM, or
because it is trained with a full-softmax cross-entropy while the classic
baselines get BCE/BPR with one negative? Here the classic models are trained
with every loss of :mod:`llmrec.core.losses` on the same windows and evaluated with
the same protocol as the LLM runs (full ranking of the target among *all*
items, history items included, pessimistic ties).

The models are in :mod:`.models`; the losses (:mod:`llmrec.itemseq.objectives`) and the loop
(:func:`llmrec.itemseq.loop.fit`: Adam, every position of a window's sequence labelled, validation NDCG@10 on
full ranking after every epoch, early stopping with ``patience``; the best epoch's weights are ``model.pt``)
are shared with Lite-LLM4Rec.
"""

from __future__ import annotations

from pathlib import Path

from ..core.custom_loss import configure
from ..itemseq.loop import fit
from .config import complete
from .recommender import SeqRecommender


def train(config: dict, run_dir: str | Path | None = None, progress: bool = True, loss_fn=None) -> Path:
    """Train one SASRec / GRU4Rec / Caser configuration; return its run directory.

    ``config``: keys of :data:`llmrec.seqrec.config.DEFAULTS` (missing keys
    take their defaults). ``run_dir`` defaults to the run cache's folder of the
    completed config, so an identical configuration is trained once. An
    interrupted run resumes from its last epoch checkpoint (model, optimiser,
    RNG states, early-stopping state) and ends with the same weights as an
    uninterrupted run; calling again with a larger ``epochs`` continues a
    finished run.

    Writes ``log.jsonl`` (per epoch: epoch, loss, seconds, valid_seconds,
    valid ndcg@10), ``checkpoints/epoch-N`` (every epoch, and only there: an epoch takes seconds, so an
    interruption costs at most one; the LLM, whose quick run is one long epoch, also checkpoints every
    ``checkpoint_every`` steps), ``model.pt`` (weights
    of the best validation epoch) and ``done.json`` (best_epoch,
    seconds_per_epoch, peak memory and how it was measured).

    Deterministic: the same configuration trains to the same weights, losses and
    metrics bit for bit, in any process (model init and dropout from the seed,
    the batch order and negatives from a seeded generator), given the same number
    of CPU threads (``done.json``'s ``torch_threads``): some CPU kernels (LayerNorm's
    backward) reduce in a thread-dependent order, so 1 and 2 threads differ in the
    last bits (about 1e-8 in a gradient).

    ``loss_fn(scores, targets) -> loss`` (or a :class:`~llmrec.core.custom_loss.CustomLoss`) trains with a loss of
    your own instead of ``config["loss"]``: the run's loss is ``custom:<name>`` and its key holds the function's
    source (:mod:`llmrec.core.custom_loss`).
    """
    return fit(complete(configure(config, loss_fn)[0]), SeqRecommender.build, run_dir, progress, loss_fn=loss_fn)
