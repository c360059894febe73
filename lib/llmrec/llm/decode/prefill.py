"""Many users' prompts prefilled at once: the prefix they all share run once, the rest grouped by length.

Every prompt of a dataset starts with the same template (Toy: 73 of about
200 tokens, the instruction up to the first title's opening quote). The
batched decoders (:func:`llmrec.llm.decode.beam.beam_search_batch` with
``engine="batched"``, :func:`llmrec.llm.decode.exact.score_all_items_batch`)
run that prefix once, keep its K/V once for every user, and run each user's
suffix on top of it, users sorted by suffix length into forwards of at most
``tokens_per_forward`` padded tokens (so little padding is computed). The
result (:class:`PromptKV`) is what a user's beams or trie nodes attend to.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from transformers import DynamicCache

from .common import cache_argument, returned_cache


@dataclass
class PromptKV:
    """Prompt K/V of ``U`` users: one shared prefix and a left-padded suffix per user.

    ``prefix_keys[l]`` / ``prefix_values[l]``: layer ``l``'s K/V of the shared
    prefix, (1, kv heads, c, d) (empty lists when ``c == 0``); ``keys[l]`` /
    ``values[l]``: the suffixes, (U, kv heads, S, d), left-padded; ``pad``:
    (U, S), True at padding; ``lens``: (U,) whole prompt lengths (``c`` +
    suffix); ``last``: (U, hidden) the final hidden state at each prompt's last
    token (what predicts the first response token); ``tail[u]``: (n_u, hidden)
    the final hidden states at the last ``n_u`` positions of prompt ``u`` when
    asked for (else None).
    """

    prefix_keys: list
    prefix_values: list
    keys: list
    values: list
    pad: torch.Tensor
    lens: torch.Tensor
    last: torch.Tensor
    tail: list | None = None


def shared_prefix_len(prompts: list[list[int]]) -> int:
    """Length of the longest prefix all ``prompts`` share, leaving at least one token of each outside it."""
    n = min(len(p) for p in prompts) - 1
    first = prompts[0]
    for p in prompts[1:]:
        k = 0
        while k < n and p[k] == first[k]:
            k += 1
        n = k
    return max(n, 0)


def length_groups(lengths: list[int], tokens_per_forward: int) -> list[list[int]]:
    """Indices sorted by length, cut into consecutive groups of at most ``tokens_per_forward`` padded tokens
    (a group holds at least one index)."""
    order = sorted(range(len(lengths)), key=lambda i: lengths[i])
    groups, cur = [], []
    for i in order:
        if cur and (len(cur) + 1) * lengths[i] > tokens_per_forward:
            groups.append(cur)
            cur = []
        cur.append(i)
    return groups + [cur] if cur else groups


def default_tokens_per_forward(device) -> int:
    """Padded tokens per prefill forward: enough rows for a CPU's matrix products, more for a GPU's."""
    return 2048 if torch.device(device).type == "cpu" else 16384


@torch.no_grad()
def prefill(body, prompts: list[list[int]], tokens_per_forward: int | None = None, tails: list[int] | None = None,
            keep_kv: bool = True) -> PromptKV:
    """Run ``prompts`` (non-empty lists of token ids) through the decoder ``body``: see the module doc.

    ``tails[u]``: also return the hidden states of the last ``tails[u]``
    positions of prompt ``u`` (the shared prefix then stops before the first of
    them); ``keep_kv=False``: do not keep the suffixes' K/V (``keys`` and
    ``values`` are empty lists).
    """
    emb = body.get_input_embeddings().weight
    dev, dt = emb.device, emb.dtype
    neg = torch.finfo(dt).min
    cache_arg = cache_argument(body)
    tokens_per_forward = tokens_per_forward or default_tokens_per_forward(dev)
    c = shared_prefix_len(prompts)
    if tails is not None:
        if any(not 0 < t <= len(p) for p, t in zip(prompts, tails, strict=True)):
            raise ValueError("each tail must be between 1 and its prompt's length")
        c = min([c] + [len(p) - t for p, t in zip(prompts, tails)])
    pk, pv = [], []
    if c:
        out = body(input_ids=torch.as_tensor([prompts[0][:c]], device=dev),
                   position_ids=torch.arange(c, device=dev)[None], use_cache=True)
        pk, pv = [l.keys for l in returned_cache(out).layers], [l.values for l in returned_cache(out).layers]
    suffixes = [list(map(int, p[c:])) for p in prompts]
    U, S = len(prompts), max(map(len, suffixes))
    keys, values, pad, last = None, None, torch.ones((U, S), dtype=torch.bool, device=dev), None
    tail = [None] * U if tails is not None else None
    for group in length_groups([len(s) for s in suffixes], tokens_per_forward):
        n, Sg = len(group), max(len(suffixes[i]) for i in group)
        ids = torch.zeros((n, Sg), dtype=torch.long)
        valid = torch.zeros((n, Sg), dtype=torch.bool)
        for r, i in enumerate(group):
            ids[r, Sg - len(suffixes[i]):] = torch.as_tensor(suffixes[i])
            valid[r, Sg - len(suffixes[i]):] = True
        # each suffix token sees the whole prefix, the real suffix tokens before it, and itself (a pad row is
        # never all masked: no NaN in its K/V)
        allow = torch.tril(torch.ones(Sg, Sg, dtype=torch.bool))[None] & (valid[:, None, :] | torch.eye(Sg, dtype=torch.bool))
        mask = torch.zeros((n, 1, Sg, c + Sg), dtype=dt)
        mask[:, 0, :, c:] = torch.where(allow, 0.0, neg).to(dt)
        pos = c + (valid.long().cumsum(1) - 1).clamp_min(0)
        cache = DynamicCache(config=body.config)
        for layer, (k, v) in enumerate(zip(pk, pv)):
            cache.update(k.expand(n, -1, -1, -1), v.expand(n, -1, -1, -1), layer)
        out = body(input_ids=ids.to(dev), attention_mask=mask.to(dev), position_ids=pos.to(dev),
                   **({cache_arg: cache} if c else {}), use_cache=True)
        layers, h = returned_cache(out).layers, out.last_hidden_state
        if last is None:
            kv, d = layers[0].keys.shape[1], layers[0].keys.shape[3]
            keys = [torch.zeros((U, kv, S, d), dtype=dt, device=dev) for _ in layers] if keep_kv else []
            values = [torch.zeros((U, kv, S, d), dtype=dt, device=dev) for _ in layers] if keep_kv else []
            last = torch.zeros((U, h.shape[-1]), dtype=h.dtype, device=dev)
        rows = torch.as_tensor(group, device=dev)
        for l, layer in enumerate(layers if keep_kv else []):
            keys[l][rows, :, S - Sg:] = layer.keys[:, :, c:]
            values[l][rows, :, S - Sg:] = layer.values[:, :, c:]
        pad[rows, S - Sg:] = ~valid.to(dev)
        last[rows] = h[:, -1]
        for r, i in enumerate(group if tail is not None else []):
            tail[i] = h[r, Sg - tails[i]:]
        del out, layers, cache, h
    lens = torch.as_tensor([len(p) for p in prompts], device=dev)
    return PromptKV(pk, pv, keys, values, pad, lens, last, tail)
