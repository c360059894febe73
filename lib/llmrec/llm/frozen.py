"""The output of the frozen lower blocks, computed once per training sequence and kept on disk."""

from __future__ import annotations

import hashlib
import os
import time
from pathlib import Path

import numpy as np
import torch

from ..core.io import cache_root, save_torch
from ..core.tensors import eval_mode, pad_sequences
from .config import TrainConfig
from .model import blocks, weights_fingerprint
from .objectives import Batch


class FrozenBlocks:
    """The output of the frozen lower blocks for every training sequence, computed once and kept on disk.

    With LoRA on the last ``k`` blocks only, the blocks below see no adapter,
    so their output for a token sequence never changes: it is computed once
    (no gradients, ``batch`` sequences per forward) and stored by content
    (sha1 of the model tag with its weights' fingerprint, the split block and the token ids) under
    ``$LLMREC_FROZEN`` (default ``cache_root()/frozen``), so every run on the same windows (every loss, every
    tau) reuses it. Each file is written atomically.
    """

    def __init__(self, model, cfg: "TrainConfig", batch: int = 8):
        body = model.get_decoder()
        self.model, self.body, self.batch = model, body, batch
        self.split = len(body.layers) - cfg.lora_layers
        below = [n for n, _ in body.layers[: self.split].named_parameters() if "lora_" in n]
        if below:
            raise ValueError(f"lora_layers={cfg.lora_layers}, but the adapter has LoRA weights in the lower blocks "
                             f"({below[0]}, ...): their output is not frozen")
        tag = f"{cfg.model}-w{weights_fingerprint(cfg.model, seed=cfg.seed)}-{cfg.dtype}-layers{cfg.layers or 'all'}"
        self.tag = f"{tag}-below{self.split}"
        root = Path(os.environ.get("LLMREC_FROZEN") or cache_root() / "frozen")
        self.dir = root / hashlib.sha1(self.tag.encode()).hexdigest()[:16]
        self.seconds = 0.0

    @classmethod
    def of(cls, model, cfg: "TrainConfig") -> "FrozenBlocks | None":
        """The frozen pass of a model whose LoRA covers only its top ``cfg.lora_layers`` blocks; None if all train."""
        n = len(model.get_decoder().layers)
        return cls(model, cfg) if cfg.lora_layers and cfg.lora_layers < n else None

    def _path(self, ids) -> Path:
        h = hashlib.sha1(np.asarray(ids, dtype=np.int64).tobytes()).hexdigest()
        return self.dir / h[:2] / f"{h}.pt"

    @torch.no_grad()
    def _compute(self, seqs: list[list[int]]) -> list[torch.Tensor]:
        out = []
        for b in range(0, len(seqs), self.batch):
            chunk = seqs[b:b + self.batch]
            ids, att = pad_sequences(chunk)
            dev = next(self.model.parameters()).device
            got = []
            hook = self.body.layers[self.split - 1].register_forward_hook(lambda m, i, o: got.append(o))
            try:
                with blocks(self.body, 0, self.split):
                    self.body(input_ids=ids.to(dev), attention_mask=att.to(dev), use_cache=False)
            finally:
                hook.remove()
            hs = got[0][0] if isinstance(got[0], tuple) else got[0]  # output of block split-1, before the final norm
            out += [hs[r, :len(q)].float().cpu() for r, q in enumerate(chunk)]
        return out

    def states(self, seqs: list[list[int]]) -> list[torch.Tensor]:
        """Frozen hidden states (len(seq), d) of each sequence, from disk or computed now (and stored)."""
        t0 = time.perf_counter()
        paths = [self._path(q) for q in seqs]
        missing = [i for i, p in enumerate(paths) if not p.exists()]
        got: dict[int, torch.Tensor] = {}
        if missing:
            with eval_mode(self.model):
                for i, h in zip(missing, self._compute([seqs[i] for i in missing])):
                    save_torch(paths[i], h)
                    got[i] = h
        for i, p in enumerate(paths):
            if i not in got:
                got[i] = torch.load(p, weights_only=True)
        self.seconds += time.perf_counter() - t0
        return [got[i] for i in range(len(seqs))]

    def attach(self, batch: Batch) -> Batch:
        """Put the frozen states of the batch's sequences (right-padded with zeros) on ``batch``."""
        lens = batch.attention_mask.sum(1).tolist()
        seqs = [batch.input_ids[r, :n].tolist() for r, n in enumerate(lens)]
        hs = self.states(seqs)
        dtype = next(self.body.parameters()).dtype  # stored in float32, fed to the blocks in the model's dtype
        out = torch.zeros((len(seqs), batch.input_ids.shape[1], hs[0].shape[1]), dtype=dtype)
        for r, h in enumerate(hs):
            out[r, :len(h)] = h
        batch.frozen, batch.frozen_from = out, self.split
        return batch
