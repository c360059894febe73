"""SASRec, GRU4Rec and Caser: a user state per position, scored against the item embedding table.

s(u, i) = <h_u, e_i>, with id 0 as padding; sequences are left-padded, so the
last position holds the state after the whole history.
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn

from ..core.tensors import padding_rotation
from ..itemseq.scorer import ItemScorer


class SASRec(ItemScorer):
    """Self-attentive sequential recommendation (Kang & McAuley 2018), as in the reference PyTorch code.

    Learned positional embeddings counted from the most recent item (so left
    padding of any width gives the same result), causal self-attention that
    also ignores padding, pre-layer-norm blocks, output scored against the item
    embedding table.
    """

    def __init__(self, n_items: int, hidden: int = 64, blocks: int = 2, heads: int = 1, dropout: float = 0.6,
                 maxlen: int = 50, norm: str = "pre", ffn_act: str = "relu", ffn_mult: int = 1, emb_scale: bool = True,
                 init: str = "xavier"):
        super().__init__()
        if norm not in ("pre", "post") or ffn_act not in ("relu", "gelu") or init not in INITS:
            raise ValueError(f"norm pre|post, ffn_act relu|gelu, init {'|'.join(INITS)}; got {norm}, {ffn_act}, {init}")
        self.n_items, self.hidden, self.maxlen, self.heads = n_items, hidden, maxlen, heads
        self.norm, self.emb_scale = norm, emb_scale
        self.item_emb = nn.Embedding(n_items + 1, hidden, padding_idx=0)
        self.pos_emb = nn.Embedding(maxlen, hidden)
        self.emb_dropout = nn.Dropout(dropout)
        self.attn_norms = nn.ModuleList(nn.LayerNorm(hidden, eps=1e-8) for _ in range(blocks))
        self.attns = nn.ModuleList(nn.MultiheadAttention(hidden, heads, dropout=dropout, batch_first=True)
                                   for _ in range(blocks))
        self.ffn_norms = nn.ModuleList(nn.LayerNorm(hidden, eps=1e-8) for _ in range(blocks))
        act = nn.ReLU if ffn_act == "relu" else nn.GELU
        self.ffns = nn.ModuleList(
            nn.Sequential(nn.Linear(hidden, ffn_mult * hidden), act(), nn.Dropout(dropout),
                          nn.Linear(ffn_mult * hidden, hidden), nn.Dropout(dropout))
            for _ in range(blocks))
        self.last_norm = nn.LayerNorm(hidden, eps=1e-8) if norm == "pre" else nn.Identity()
        _init_weights(self, init)

    def forward(self, seq: torch.Tensor) -> torch.Tensor:
        """(B, W) left-padded item ids -> (B, W, hidden) states; position t has seen items <= t."""
        B, W = seq.shape
        if W > self.maxlen:
            raise ValueError(f"sequence width {W} exceeds maxlen {self.maxlen}")
        keep = (seq != 0).unsqueeze(-1)
        x = self.item_emb(seq) * math.sqrt(self.hidden) if self.emb_scale else self.item_emb(seq)
        x = x + self.pos_emb(torch.arange(self.maxlen - W, self.maxlen, device=seq.device))[None]
        x = self.emb_dropout(x) * keep
        causal = torch.ones(W, W, dtype=torch.bool, device=seq.device).triu(1)
        blocked = causal[None] | (seq == 0)[:, None, :]  # future keys and padding keys
        blocked = blocked & ~torch.eye(W, dtype=torch.bool, device=seq.device)[None]  # a row never empty
        blocked = blocked.repeat_interleave(self.heads, dim=0)
        for norm, attn, fnorm, ffn in zip(self.attn_norms, self.attns, self.ffn_norms, self.ffns):
            if self.norm == "pre":  # the reference code: normalised queries, residual on them
                q = norm(x)
                a, _ = attn(q, x, x, attn_mask=blocked, need_weights=False)
                x = q + a
                x = fnorm(x)
                x = (x + ffn(x)) * keep
            else:  # post-LN (the original Transformer): sublayer, residual, then LayerNorm
                a, _ = attn(x, x, x, attn_mask=blocked, need_weights=False)
                x = norm(x + a)
                x = fnorm(x + ffn(x)) * keep
        return self.last_norm(x)


class GRU4Rec(ItemScorer):
    """GRU4Rec (Hidasi et al.) for next-item prediction: embedding, GRU, dot product with item embeddings."""

    def __init__(self, n_items: int, hidden: int = 64, blocks: int = 1, dropout: float = 0.2, **_):
        super().__init__()
        self.n_items, self.hidden = n_items, hidden
        self.item_emb = nn.Embedding(n_items + 1, hidden, padding_idx=0)
        self.emb_dropout = nn.Dropout(dropout)
        self.gru = nn.GRU(hidden, hidden, num_layers=blocks, batch_first=True,
                          dropout=dropout if blocks > 1 else 0.0)
        _init_weights(self)

    def forward(self, seq: torch.Tensor) -> torch.Tensor:
        """(B, W) left-padded ids -> (B, W, hidden); the GRU sees each sequence from its first real item."""
        to_right, back = padding_rotation(seq)
        out, _ = self.gru(self.emb_dropout(self.item_emb(seq.gather(1, to_right))))
        return out.gather(1, back.unsqueeze(-1).expand(-1, -1, self.hidden)) * (seq != 0).unsqueeze(-1)


class Caser(ItemScorer):
    """Caser (Tang & Wang 2018): convolutions over the "image" of the last ``window`` item embeddings.

    Horizontal filters of heights 1..window (``n_h`` each, ReLU, max over time)
    catch union-level and point-level sequential patterns, ``n_v`` vertical
    filters take weighted sums over the window; a fully connected layer maps both
    to the state h_t. Applied at every position with the window ending at that
    position (left zero-padded), so it is causal and trains on every position
    like SASRec; no user embedding (test users are windows, not known users).
    """

    def __init__(self, n_items: int, hidden: int = 64, window: int = 5, n_h: int = 16, n_v: int = 4,
                 dropout: float = 0.2, **_):
        super().__init__()
        self.n_items, self.hidden, self.window = n_items, hidden, window
        self.item_emb = nn.Embedding(n_items + 1, hidden, padding_idx=0)
        self.conv_h = nn.ModuleList(nn.Conv2d(1, n_h, (h, hidden)) for h in range(1, window + 1))
        self.conv_v = nn.Conv2d(1, n_v, (window, 1))
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(n_h * window + n_v * hidden, hidden)
        _init_weights(self)

    def forward(self, seq: torch.Tensor) -> torch.Tensor:
        """(B, W) left-padded ids -> (B, W, hidden); position t sees items t-window+1..t."""
        B, W = seq.shape
        e = self.item_emb(seq)  # (B, W, d); padding embeds to 0
        e = nn.functional.pad(e, (0, 0, self.window - 1, 0))  # zero rows before the first item
        img = e.unfold(1, self.window, 1).permute(0, 1, 3, 2).reshape(B * W, 1, self.window, self.hidden)
        horiz = [torch.relu(conv(img)).squeeze(3).amax(2) for conv in self.conv_h]  # (B*W, n_h) each
        vert = self.conv_v(img).reshape(B * W, -1)  # (B*W, n_v * d)
        h = torch.relu(self.fc(self.dropout(torch.cat(horiz + [vert], 1))))
        return h.view(B, W, self.hidden) * (seq != 0).unsqueeze(-1)


INITS = ("xavier", "normal", "torch")


def _init_weights(model: nn.Module, init: str = "xavier") -> None:
    """Matrices: Xavier-normal (the reference SASRec code), N(0, 0.02) (RecBole) or PyTorch's own per-layer
    defaults ("torch"); the padding embedding zero."""
    for name, p in model.named_parameters():
        if p.dim() >= 2 and "norm" not in name:
            if init == "xavier":
                nn.init.xavier_normal_(p)
            elif init == "normal":
                nn.init.normal_(p, std=0.02)
    with torch.no_grad():
        model.item_emb.weight[0].zero_()


def build_model(cfg: dict, n_items: int) -> nn.Module:
    if cfg["model"] == "sasrec":
        return SASRec(n_items, cfg["hidden"], cfg["blocks"], cfg["heads"], cfg["dropout"], cfg["maxlen"],
                      norm=cfg.get("norm", "pre"), ffn_act=cfg.get("ffn_act", "relu"), ffn_mult=cfg.get("ffn_mult", 1),
                      emb_scale=cfg.get("emb_scale", True), init=cfg.get("init", "xavier"))
    if cfg["model"] == "caser":
        return Caser(n_items, cfg["hidden"], min(5, cfg["maxlen"]), dropout=cfg["dropout"])
    return GRU4Rec(n_items, cfg["hidden"], cfg["blocks"], cfg["dropout"])
