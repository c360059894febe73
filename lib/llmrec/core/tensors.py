"""Padding ragged id sequences into one batch, running a model in eval mode, and the digest of a model's
weights: each written once here."""

from __future__ import annotations

import hashlib
from contextlib import contextmanager

import torch


def pad_sequences(seqs, value: int = 0, side: str = "right", width: int | None = None,
                  dtype: torch.dtype = torch.long) -> tuple[torch.Tensor, torch.Tensor]:
    """``(ids, mask)``: (n, width) ``ids`` padded with ``value`` on ``side`` and the 0/1 ``mask`` of real entries.

    ``width`` defaults to the longest sequence; a longer sequence keeps its last
    ``width`` entries (its most recent items).
    """
    if side not in ("left", "right"):
        raise ValueError(f"side must be 'left' or 'right', got {side!r}")
    seqs = [list(s) for s in seqs]
    W = max((len(s) for s in seqs), default=0) if width is None else width
    ids = torch.full((len(seqs), W), value, dtype=dtype)
    mask = torch.zeros((len(seqs), W), dtype=torch.long)
    for r, s in enumerate(seqs):
        s = s[len(s) - W:] if len(s) > W else s
        if not s:
            continue
        cols = slice(W - len(s), W) if side == "left" else slice(0, len(s))
        ids[r, cols] = torch.as_tensor(s, dtype=dtype)
        mask[r, cols] = 1
    return ids, mask


def padding_rotation(seq: torch.Tensor, pad: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """``(to_right, back)``: (B, W) gather indices that move a left-padded batch's padding to the right end
    (``seq.gather(1, to_right)``: each sequence starts at column 0) and back again. A model that reads a sequence
    from its first real entry (a GRU, a causal LM with positions from 0) runs on the rotated batch."""
    B, W = seq.shape
    pads = (seq == pad).sum(1, keepdim=True)
    ar = torch.arange(W, device=seq.device)[None]
    return (ar + pads) % W, (ar - pads) % W


@contextmanager
def eval_mode(model):
    """``model`` in eval mode inside the block (no dropout); its earlier mode is restored after, even on error."""
    was = model.training
    model.eval()
    try:
        yield model
    finally:
        model.train(was)


def state_digest(model: torch.nn.Module) -> str:
    """The sha256 of a model's state: every entry's name, dtype, shape and bytes, in name order."""
    h = hashlib.sha256()
    for name, t in sorted(model.state_dict().items()):
        t = t.detach().cpu().contiguous()
        h.update(f"{name}\0{t.dtype}\0{tuple(t.shape)}\0".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy())
    return h.hexdigest()
