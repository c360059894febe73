"""What every model trained on item sequences shares: a state per position scored against an item table.

s(u, i) = <head(h_u), E_i> (+ b_i), with id 0 as padding; sequences are left-padded, so the last position holds
the state after the whole history. SASRec & co (:mod:`llmrec.seqrec`) and Lite-LLM4Rec (:mod:`llmrec.lite`)
are :class:`ItemScorer` s.
"""

from __future__ import annotations

import torch
import torch.nn as nn

from ..core.tensors import pad_sequences


class ItemScorer(nn.Module):
    """A sequential model scored against an item table: s(u, i) = <head(h_u), E_i> (+ b_i).

    ``forward`` maps (B, W) left-padded ids to (B, W, d) states; :meth:`head`
    and :meth:`output_table` say how a state scores items (row i of the table =
    item id i, row 0 padding). The classic models score their states against
    their input item embeddings (tied, no bias); Lite-LLM4Rec's heads override both.
    """

    def head(self, h: torch.Tensor) -> torch.Tensor:
        return h

    def output_table(self) -> tuple[torch.Tensor, torch.Tensor | None]:
        return self.item_emb.weight, None

    def scores(self, h: torch.Tensor) -> torch.Tensor:
        """(..., d) states -> (..., n_items) scores of items 1..n_items."""
        E, bias = self.output_table()
        s = self.head(h) @ E[1:].T
        return s if bias is None else s + bias[1:]


def trainable_state(model: torch.nn.Module) -> dict:
    """The state dict entries of the trained parameters (all of a classic model; a frozen LLM's are left out)."""
    names = {n for n, p in model.named_parameters() if p.requires_grad}
    return {k: v for k, v in model.state_dict().items() if k in names}


def load_trainable(model: torch.nn.Module, state: dict) -> None:
    """Load :func:`trainable_state` back; every trained parameter must be there."""
    missing = {n for n, p in model.named_parameters() if p.requires_grad} - set(state)
    if missing:
        raise ValueError(f"the saved weights lack trained parameters {sorted(missing)[:5]}")
    model.load_state_dict(state, strict=False)


def train_sequences(df, maxlen: int) -> torch.Tensor:
    """(n, W + 1) left-padded history + target (W = min(maxlen, longest history))."""
    seqs = [list(h) + [int(t)] for h, t in zip(df["history"], df["target"])]
    width = min(maxlen, max(len(s) for s in seqs) - 1)
    return pad_sequences(seqs, side="left", width=width + 1)[0]


def histories(hists, maxlen: int) -> torch.Tensor:
    """(n, W) left-padded histories (W = min(maxlen, longest history))."""
    hists = [list(h) for h in hists]
    return pad_sequences(hists, side="left", width=min(maxlen, max(1, max(len(h) for h in hists))))[0]
