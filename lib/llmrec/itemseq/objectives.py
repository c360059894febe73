"""The training objective of a classic sequential model: every labelled position, one loss of the family.

* ``ce``: full softmax over all items (:func:`llmrec.core.losses.ce_loss`);
* ``bce`` / ``bpr``: one negative per position drawn from the items not in the
  window's sequence (:func:`llmrec.core.samplers.unseen`), as in the SASRec code;
* ``sampled-softmax``: K negatives uniform over all items;
* ``sce``: the same K negatives with the normalising term scaled by alpha
  (:func:`llmrec.core.losses.sce_loss`). The K negatives are drawn per training
  sequence and shared by its positions, so the scores are one batched matrix
  product of size (batch x positions x K) instead of (positions x items); the
  option ``negatives_per="position"`` draws K for every position, as the SCE
  authors do (K x hidden floats gathered per position).

A loss function of the user's (``loss_fn``, :mod:`llmrec.core.custom_loss`) is called where CE is, on the same
scores: ``loss_fn(scores, targets)``, every item's score at each labelled position (P, |I|) and the column of
each position's next item (P,).
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..core.losses import bce_loss, bpr_loss, ce_loss, sampled_softmax_loss, sce_loss
from ..core.samplers import uniform, unseen


def batch_loss(model: nn.Module, seqs: torch.Tensor, cfg: dict, n_items: int, gen: torch.Generator,
                device: torch.device, loss_fn=None) -> torch.Tensor:
    """Mean loss over every labelled position of a batch of (B, W + 1) sequences (on CPU); with ``loss_fn`` (a
    :class:`~llmrec.core.custom_loss.CustomLoss`) the user's loss on the full scores instead of ``cfg["loss"]``."""
    inp, lab = seqs[:, :-1], seqs[:, 1:]
    m = lab != 0
    if cfg.get("positions", "all") == "last":  # only the window's own target (the last column)
        m[:, :-1] = False
    h = model.head(model(inp.to(device)))  # (B, W, d)
    E, bias = model.output_table()  # (n_items + 1, d), (n_items + 1,) or None
    lab_d, m_d = lab.to(device), m.to(device)
    hp = h[m_d]  # (P, d)
    tp = lab_d[m_d]
    loss = cfg["loss"]
    if loss == "ce" or loss_fn is not None:
        scores = hp @ E[1:].T if bias is None else hp @ E[1:].T + bias[1:]
        return ce_loss(scores, tp - 1) if loss_fn is None else loss_fn(scores, tp - 1)
    # F.embedding, not E[idx]: the backward of advanced indexing accumulates in a
    # thread-dependent order on CPU, which would break bitwise-exact resume
    pos = (hp * F.embedding(tp, E)).sum(-1) + _bias(bias, tp)
    if loss in ("bce", "bpr"):
        neg = unseen(seqs, n_items, inp.shape[1], gen).to(device)[m_d]  # one unseen item per position
        neg_s = ((hp * F.embedding(neg, E)).sum(-1) + _bias(bias, neg))[:, None]
        return bce_loss(pos, neg_s) if loss == "bce" else bpr_loss(pos, neg_s)
    if cfg.get("negatives_per", "sequence") == "position":  # K of its own for every position (the SCE code)
        neg = uniform(n_items, (len(hp), int(cfg["negatives"])), gen).to(device)  # (P, K)
        neg_s = torch.einsum("pd,pkd->pk", hp, F.embedding(neg, E)) + _bias(bias, neg)
    else:  # K per sequence, shared by its positions: one batched product
        neg = uniform(n_items, (len(seqs), int(cfg["negatives"])), gen).to(device)
        neg_s = (torch.bmm(h, F.embedding(neg, E).transpose(1, 2)) + _bias(bias, neg[:, None, :]))[m_d]  # (P, K)
    if loss == "sampled-softmax":
        return sampled_softmax_loss(pos, neg_s)
    return sce_loss(pos, neg_s, alpha=float(cfg["alpha"]))


def _bias(bias: torch.Tensor | None, ids: torch.Tensor) -> torch.Tensor | float:
    """The item biases of ``ids`` (0 when the head has none)."""
    return 0.0 if bias is None else F.embedding(ids, bias[:, None]).squeeze(-1)
