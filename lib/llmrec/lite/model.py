"""Lite-LLM4Rec (Wang et al. 2024): an item LLM's vectors, a recommendation LLM over them, an item projection head.

For a history of items i_1..i_t (left-padded ids, as the classic models take them):

    x_k = A z_{i_k} + b              z: the item LLM's vector of item i_k (standardised), A: the adapter
    h_1..h_t = RecLLM(x_1..x_t)      the first ``rec_layers`` blocks of SmolLM2, causal, ``inputs_embeds``
    s(u, i) = W_i . GELU(M h_t + c) + w_i    the paper's MLP head: a score for every catalogue item
    s(u, i) = (P h_t) . z_i / sqrt(d_z)      or the dot-product head: any item with a vector, seen or not

No titles are generated: one forward pass over t item positions (not the
~30 tokens of each title) and one matrix product score the whole catalogue.
The model is an :class:`~llmrec.itemseq.scorer.ItemScorer`: every position's
state scores the next item, so it trains with the classic family's losses
(CE over the catalogue at every position or the last; sampled softmax; SCE).
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F
from peft import LoraConfig, inject_adapter_in_model

from ..core.tensors import padding_rotation
from ..itemseq.scorer import ItemScorer


def standardise(vectors: torch.Tensor) -> torch.Tensor:
    """Per-dimension z-scores over the items (rows 1..; row 0 stays zero): SmolLM2's pooled states have norm
    ~40 and a few huge dimensions, which would swamp the adapter and the dot-product scores."""
    z = vectors.clone()
    real = z[1:]
    mean, std = real.mean(0), real.std(0).clamp_min(1e-6)
    z[1:] = (real - mean) / std
    return z


class LiteLLM4Rec(ItemScorer):
    """``body``: a decoder (transformers ``*Model``) taking ``inputs_embeds``; ``item_vectors``: the item LLM's
    (n_items + 1, d_z) table, or None for learned item-id embeddings (the "without item LLM" ablation)."""

    def __init__(self, n_items: int, body: nn.Module, item_vectors: torch.Tensor | None = None, head: str = "mlp",
                 dropout: float = 0.1):
        super().__init__()
        d = body.config.hidden_size
        self.n_items, self.hidden, self.head_kind = n_items, d, head
        if item_vectors is not None:
            if item_vectors.shape[0] != n_items + 1:
                raise ValueError(f"item vectors have {item_vectors.shape[0]} rows, the catalogue {n_items} + 1")
            self.register_buffer("item_vec", standardise(item_vectors.float()), persistent=False)
            self.adapter = nn.Linear(item_vectors.shape[1], d)
            d_z = item_vectors.shape[1]
        else:
            self.item_vec = None
            self.item_emb = nn.Embedding(n_items + 1, d, padding_idx=0)
            nn.init.normal_(self.item_emb.weight, std=1.0 / math.sqrt(d))
            d_z = d
        self.emb_dropout = nn.Dropout(dropout)
        self.body = body
        if head == "mlp":
            self.mlp = nn.Linear(d, d)
            self.out_table = nn.Parameter(torch.empty(n_items + 1, d).uniform_(-1 / math.sqrt(d), 1 / math.sqrt(d)))
            self.out_bias = nn.Parameter(torch.zeros(n_items + 1))
        elif head == "dot":
            self.proj = nn.Linear(d, d_z)
        else:
            raise ValueError(f"head must be 'mlp' or 'dot', got {head!r}")

    def embed(self, seq: torch.Tensor) -> torch.Tensor:
        """(B, W) ids -> (B, W, d) inputs of the recommendation LLM."""
        if self.item_vec is None:
            return self.item_emb(seq)
        return self.adapter(F.embedding(seq, self.item_vec))

    def forward(self, seq: torch.Tensor) -> torch.Tensor:
        """(B, W) left-padded ids -> (B, W, d) states; position t has seen items <= t (causal attention).

        The LLM reads each sequence from column 0 (padding rotated to the right
        end, where causal attention never lets a real position see it), so
        positions count from the first item, as in pre-training.
        """
        to_right, back = padding_rotation(seq)
        x = self.emb_dropout(self.embed(seq.gather(1, to_right)))
        h = self.body(inputs_embeds=x).last_hidden_state
        return h.gather(1, back.unsqueeze(-1).expand(-1, -1, h.shape[-1])) * (seq != 0).unsqueeze(-1)

    def head(self, h: torch.Tensor) -> torch.Tensor:
        if self.head_kind == "mlp":
            return F.gelu(self.mlp(h))
        return self.proj(h) / math.sqrt(self.proj.out_features)

    def output_table(self) -> tuple[torch.Tensor, torch.Tensor | None]:
        if self.head_kind == "mlp":
            return self.out_table, self.out_bias
        return (self.item_emb.weight if self.item_vec is None else self.item_vec), None


def prepare_body(body: nn.Module, tune: str, lora: dict | None = None) -> nn.Module:
    """Freeze the recommendation LLM's blocks, then: ``"lora"`` injects LoRA (peft) into its ``lora["targets"]``
    and trains only those; ``"frozen"`` trains nothing in it; ``"full"`` trains all of it. The token
    embedding table is dropped: the inputs are the adapted item vectors."""
    body.embed_tokens = None
    for p in body.parameters():
        p.requires_grad = tune == "full"
    if tune == "lora":
        lora = lora or {}
        cfg = LoraConfig(r=lora.get("r", 8), lora_alpha=lora.get("alpha", 16), lora_dropout=lora.get("dropout", 0.05),
                         target_modules=list(lora.get("targets", ("q_proj", "v_proj"))))
        inject_adapter_in_model(cfg, body)
        for n, p in body.named_parameters():
            p.requires_grad = "lora_" in n
    return body
