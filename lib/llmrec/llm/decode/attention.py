"""Shared-prompt attention for beam search: each user's prompt K/V kept once and read by all its beams.

Registered with transformers' ``AttentionInterface`` under :data:`SHARED_PROMPT`
the first time beam search needs it (:func:`use_shared_prompt_attention`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

SHARED_PROMPT = "llmrec-shared-prompt"


@dataclass
class SharedPrompt:
    """Beam search's attention context: each user's prompt K/V, computed once, and the user slot of each beam row.

    ``keys[l]``, ``values[l]``: layer ``l``'s prompt keys/values, one row per
    user (U, kv heads, P, d); ``pad``: (U, P), True at left padding;
    ``slots``: (R,) the slot ``u * K + j`` of each live beam row;
    ``prefix_keys[l]``, ``prefix_values[l]``: (1, kv heads, c, d), a prefix
    that comes before every user's prompt, kept once for all users (the
    batched engine's shared template, :mod:`.prefill`; none by default).
    """

    keys: list
    values: list
    pad: torch.Tensor
    K: int
    slots: torch.Tensor | None = None
    prefix_keys: list | None = None
    prefix_values: list | None = None

    def keep_users(self, users: torch.Tensor) -> None:
        """Keep the prompts of ``users`` only (ascending indices), without the padding columns none of them needs."""
        users = users.to(self.pad.device)
        width = int((~self.pad[users]).sum(1).max())  # prompts are left-padded
        self.keys = [k[users, :, -width:] for k in self.keys]
        self.values = [v[users, :, -width:] for v in self.values]
        self.pad = self.pad[users, -width:]


def shared_prompt_attention(module, query, key, value, attention_mask=None, scaling=None, dropout=0.0,
                            shared_prompt: SharedPrompt | None = None, **kwargs):
    """Attention of one new token per beam row over [its user's prompt ; its own response so far].

    The prompt part is one matmul per user for all of the user's beams against
    the prompt K/V kept once per user (a beam never copies it: no per-step
    ``index_select``/``cat`` of the prompt cache, which is most of the memory
    traffic of a KV-cached beam search); the response part (``key``/``value``:
    this row's own response tokens, from the small per-beam cache) is ordinary
    attention. One softmax runs over both parts (three with a shared prefix,
    which every row reads with one broadcast matmul). ``attention_mask`` is
    unused: the prompt's padding is ``shared_prompt.pad`` and a response is
    never padded (all live beams have the same length).
    """
    R, H, _, d = query.shape
    kv = key.shape[1]
    G, K = H // kv, shared_prompt.K
    Kp, Vp = shared_prompt.keys[module.layer_idx], shared_prompt.values[module.layer_idx]
    U, P = Kp.shape[0], Kp.shape[2]
    slots = shared_prompt.slots

    def to_users(x):  # (R, kv, G, n) rows -> (U, kv, K * G, n), zeros at empty slots
        full = x.new_zeros((U * K, *x.shape[1:]))
        full[slots] = x
        return full.reshape(U, K, kv, G, -1).transpose(1, 2).reshape(U, kv, K * G, -1)

    def to_rows(x):  # (U, kv, K * G, n) -> (R, kv, G, n)
        return x.reshape(U, kv, K, G, -1).transpose(1, 2).reshape(U * K, kv, G, -1)[slots]

    q = query[:, :, 0].reshape(R, kv, G, d) * scaling  # query head h reads kv head h // G (HF's repeat_kv)
    s_prompt = to_rows((to_users(q) @ Kp.transpose(-1, -2)).float()
                       .masked_fill(shared_prompt.pad[:, None, None, :], -math.inf))
    s_resp = (q @ key.transpose(-1, -2)).float()  # (R, kv, G, t)
    if not shared_prompt.prefix_keys:
        w = torch.softmax(torch.cat([s_prompt, s_resp], dim=-1), dim=-1).to(query.dtype)
        out = to_rows(to_users(w[..., :P]) @ Vp) + w[..., P:] @ value
        return out.reshape(R, 1, H, d), None
    Kc, Vc = shared_prompt.prefix_keys[module.layer_idx][0], shared_prompt.prefix_values[module.layer_idx][0]
    c = Kc.shape[1]

    def flat(x):  # (R, kv, G, n) -> (kv, R * G, n): every row against the one prefix in a single matmul per kv head
        return x.transpose(0, 1).reshape(kv, R * G, -1)

    s_prefix = (flat(q) @ Kc.transpose(-1, -2)).float().reshape(kv, R, G, c).transpose(0, 1)
    w = torch.softmax(torch.cat([s_prefix, s_prompt, s_resp], dim=-1), dim=-1).to(query.dtype)
    out_prefix = (flat(w[..., :c]) @ Vc).reshape(kv, R, G, d).transpose(0, 1)
    out = out_prefix + to_rows(to_users(w[..., c:c + P]) @ Vp) + w[..., c + P:] @ value
    return out.reshape(R, 1, H, d), None


_registered = False


def use_shared_prompt_attention() -> str:
    """Register :func:`shared_prompt_attention` with transformers (once) and return its name."""
    global _registered
    if not _registered:
        from transformers import AttentionInterface  # transformers' registries, needed only by beam search
        from transformers.masking_utils import AttentionMaskInterface

        AttentionInterface.register(SHARED_PROMPT, shared_prompt_attention)
        AttentionMaskInterface.register(SHARED_PROMPT, lambda *args, **kwargs: None)  # masks: shared_prompt.pad
        _registered = True
    return SHARED_PROMPT
