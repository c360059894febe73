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
    token (what predicts the first response token).
    """

    prefix_keys: list
    prefix_values: list
    keys: list
    values: list
    pad: torch.Tensor
    lens: torch.Tensor
    last: torch.Tensor


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


@torch.no_grad()
def prefill(body, prompts: list[list[int]], tokens_per_forward: int = 4096) -> PromptKV:
    """Run ``prompts`` (non-empty lists of token ids) through the decoder ``body``: see the module doc."""
    emb = body.get_input_embeddings().weight
    dev, dt = emb.device, emb.dtype
    neg = torch.finfo(dt).min
    cache_arg = cache_argument(body)
    c = shared_prefix_len(prompts)
    pk, pv = [], []
    if c:
        out = body(input_ids=torch.as_tensor([prompts[0][:c]], device=dev),
                   position_ids=torch.arange(c, device=dev)[None], use_cache=True)
        pk, pv = [l.keys for l in returned_cache(out).layers], [l.values for l in returned_cache(out).layers]
    suffixes = [list(map(int, p[c:])) for p in prompts]
    U, S = len(prompts), max(map(len, suffixes))
    keys, values, pad, last = None, None, torch.ones((U, S), dtype=torch.bool, device=dev), None
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
        layers = returned_cache(out).layers
        if keys is None:
            kv, d = layers[0].keys.shape[1], layers[0].keys.shape[3]
            keys = [torch.zeros((U, kv, S, d), dtype=dt, device=dev) for _ in layers]
            values = [torch.zeros((U, kv, S, d), dtype=dt, device=dev) for _ in layers]
            last = torch.zeros((U, out.last_hidden_state.shape[-1]), dtype=out.last_hidden_state.dtype, device=dev)
        rows = torch.as_tensor(group, device=dev)
        for l, layer in enumerate(layers):
            keys[l][rows, :, S - Sg:] = layer.keys[:, :, c:]
            values[l][rows, :, S - Sg:] = layer.values[:, :, c:]
        pad[rows, S - Sg:] = ~valid.to(dev)
        last[rows] = out.last_hidden_state[:, -1]
        del out, layers, cache
    lens = torch.as_tensor([len(p) for p in prompts], device=dev)
    return PromptKV(pk, pv, keys, values, pad, lens, last)
