"""What every decoding path shares: score modes, the PEFT base model, device, dtype and pad id of a model."""

from __future__ import annotations

import inspect

import torch

from ...core.tensors import pad_sequences
from ..model import base_model as _base, model_device as _device  # noqa: F401  (used by the decoders)

SCORE_MODES = ("full", "valid")


class DecodeError(ValueError):
    pass


def _check_mode(mode: str) -> str:
    if mode not in SCORE_MODES:
        raise DecodeError(f"unknown score mode {mode!r}; choose one of {SCORE_MODES}")
    return mode


def _dtype(model) -> torch.dtype:
    return next(model.parameters()).dtype


def _pad_id(model, trie) -> int:
    pad = getattr(_base(model).generation_config, "pad_token_id", None)
    if isinstance(pad, (list, tuple)):
        pad = pad[0] if pad else None
    return int(pad) if pad is not None else int(trie.eos_id)


def _max_response_len(trie) -> int:
    n = getattr(trie, "_decode_max_len", None)
    if n is None:
        n = max(len(s) for s in trie.sequences.values())
        trie._decode_max_len = n
    return n


def returned_cache(out):
    """The KV cache a forward returned: ``out.cache`` in recent transformers, ``out.past_key_values`` before."""
    cache = getattr(out, "cache", None)
    return cache if cache is not None else out.past_key_values


def cache_argument(body) -> str:
    """The name under which ``body``'s forward takes a KV cache: ``cache`` (``past_key_values`` before
    transformers renamed it), so decoding passes no deprecated argument."""
    return "cache" if "cache" in inspect.signature(body.forward).parameters else "past_key_values"


def prompt_batches(prompts: list[list[int]], batch_size: int, pad: int, device):
    """``(chunk, ids, mask)`` for consecutive groups of ``batch_size`` prompts, left-padded with ``pad`` on
    ``device`` (generation appends to the right)."""
    for b in range(0, len(prompts), batch_size):
        chunk = [list(map(int, p)) for p in prompts[b:b + batch_size]]
        ids, mask = pad_sequences(chunk, pad, side="left")
        yield chunk, ids.to(device), mask.to(device)
