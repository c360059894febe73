"""Exact full-catalogue ranking: the score of every item in one pass that shares title prefixes.

log P_valid(y^v|x) = sum_t log P_valid(y^v_t | x, y^v_<t) (Lemma 1's ranking),
or the full-softmax log P(y^v|x), for every item v, through "tree attention":
the prompt is run once and its KV cache kept; then trie nodes are packed, in
depth-first order, into chunks of ``chunk`` tokens placed after the prompt, with
a custom 4-D attention mask by which each node attends to the prompt and to its
own ancestors only, and position id = prompt length + depth - 1. Each node is
forwarded exactly once (plus, per chunk, the ancestors of the chunk's first
node, recomputed so that the chunk is self-contained). The hidden state at node
n gives the next-token distribution after prompt + prefix(n); the
log-probability of each trie edge is read off it and item scores are sums
along trie paths.

Cost, in forwarded tokens: one forward per item costs sum_v |y^v| tokens (Toy:
187,646); ``mode="full"`` every non-terminal node except the root (Toy:
113,949); ``mode="valid"`` only nodes on the path to a *branching* node: below
the last branching point a title is the only completion of its prefix and
P_valid = 1 (Toy: 8,375 nodes, 22x fewer than one forward per item).

Ranks are 0-based and pessimistic (:mod:`llmrec.core.metrics`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import torch
from transformers import DynamicCache

from ...core.metrics import rank_of_target
from ...core.tensors import eval_mode, pad_sequences
from .common import DecodeError, _base, _check_mode, _device, _dtype, cache_argument
from .prefill import prefill

def _ranges(starts: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """concat(arange(s, s + c) for s, c in zip(starts, counts)), vectorised."""
    counts = np.asarray(counts, dtype=np.int64)
    total = int(counts.sum())
    if total == 0:
        return np.zeros(0, dtype=np.int64)
    offs = np.repeat(np.asarray(starts, dtype=np.int64) - (np.cumsum(counts) - counts), counts)
    return offs + np.arange(total, dtype=np.int64)


class TriePlan:
    """Everything the exact pass needs about a trie, computed once (vectorised, level by level).

    ``depth``, ``tok_in`` (token on the edge into each node), ``levels`` (node
    ids per depth), a depth-first preorder, the nodes to forward for each mode
    and the terminal node of every item.
    """

    def __init__(self, trie):
        self.n = n = int(trie.n_nodes)
        self.ptr = trie.child_ptr.numpy().astype(np.int64)
        self.ctok = trie.child_tok.numpy().astype(np.int64)
        self.cnode = trie.child_node.numpy().astype(np.int64)
        self.parent = trie.parent.numpy().astype(np.int64)
        self.deg = np.diff(self.ptr)
        self.tok_in = np.full(n, -1, dtype=np.int64)
        self.tok_in[self.cnode] = self.ctok
        # levels, top-down
        self.depth = np.zeros(n, dtype=np.int64)
        levels = [np.array([0], dtype=np.int64)]
        while True:
            f = levels[-1]
            kids = self.cnode[_ranges(self.ptr[f], self.deg[f])]
            if not len(kids):
                break
            self.depth[kids] = len(levels)
            levels.append(kids)
        self.levels = levels
        # subtree sizes (bottom-up), then preorder positions (top-down), children in token order
        size = np.ones(n, dtype=np.int64)
        for lv in reversed(levels[1:]):
            np.add.at(size, self.parent[lv], size[lv])
        pre = np.zeros(n, dtype=np.int64)
        for lv in levels[:-1]:
            lv = lv[self.deg[lv] > 0]
            idx = _ranges(self.ptr[lv], self.deg[lv])
            if not len(idx):
                continue
            kid_sizes = size[self.cnode[idx]]
            excl = np.cumsum(kid_sizes) - kid_sizes
            seg_first = np.repeat(excl[np.cumsum(self.deg[lv]) - self.deg[lv]], self.deg[lv])
            pre[self.cnode[idx]] = np.repeat(pre[lv], self.deg[lv]) + 1 + (excl - seg_first)
        self.preorder = np.argsort(pre, kind="stable")
        # nodes to forward: full = all non-terminal non-root nodes; valid = ancestors-or-self of branching nodes
        need_full = self.deg > 0
        need_valid = self.deg > 1
        for lv in reversed(levels[1:]):
            hit = lv[need_valid[lv]]
            need_valid[self.parent[hit]] = True
        need_full[0] = need_valid[0] = False
        self.forward_nodes = {m: self.preorder[need[self.preorder]] for m, need in
                              (("full", need_full), ("valid", need_valid))}
        # item id -> terminal node
        self.item_ids = np.asarray(list(trie.sequences), dtype=np.int64)
        self.terminal = np.asarray([trie.path(i)[-1] for i in self.item_ids], dtype=np.int64)
        self._column = {int(i): k for k, i in enumerate(self.item_ids)}
        self._pos = np.full(n, -1, dtype=np.int64)  # scratch: node -> local index in a packed chunk

    def columns(self, item_ids) -> np.ndarray:
        """The score column of each item id (the trie's item order)."""
        try:
            return np.asarray([self._column[int(i)] for i in item_ids], dtype=np.int64)
        except KeyError as e:
            raise DecodeError(f"item {e.args[0]} is not in the trie") from None

    def ancestors(self, node: int) -> np.ndarray:
        """Non-root strict ancestors of ``node``, root side first."""
        out = []
        p = int(self.parent[node])
        while p > 0:
            out.append(p)
            p = int(self.parent[p])
        return np.asarray(out[::-1], dtype=np.int64)

    def chunks(self, mode: str, chunk: int):
        """(ancestor context, chunk nodes) pairs covering the mode's forward nodes in preorder.

        Because nodes come in preorder, every ancestor of a chunk node outside
        the chunk is an ancestor of the chunk's first node.
        """
        fwd = self.forward_nodes[mode]
        i = 0
        while i < len(fwd):
            anc = self.ancestors(int(fwd[i]))
            c = max(1, chunk - len(anc))
            yield anc, fwd[i:i + c]
            i += c

    def tree_mask(self, packed: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(allowed (M, M) bool: j is an ancestor-or-self of i, local parent index per packed node)."""
        M = len(packed)
        pos = self._pos
        pos[packed] = np.arange(M)
        try:
            lp = pos[self.parent[packed]]  # -1 for children of the root (the root is the prompt)
        finally:
            pos[packed] = -1
        d = self.depth[packed]
        if np.any((lp < 0) & (d > 1)) or np.any(lp >= np.arange(M)):
            raise DecodeError("internal error: a packed chunk is not ancestor-closed in preorder")
        allowed = np.eye(M, dtype=bool)
        for dd in np.unique(d):
            rows = np.nonzero((d == dd) & (lp >= 0))[0]
            if len(rows):
                allowed[rows] |= allowed[lp[rows]]
        return allowed, lp


def trie_plan(trie) -> TriePlan:
    """The (cached) :class:`TriePlan` of a trie."""
    plan = getattr(trie, "_decode_plan", None)
    if plan is None:
        plan = TriePlan(trie)
        trie._decode_plan = plan
    return plan


@dataclass
class ExactStats:
    mode: str
    users: int = 0
    nodes_forwarded: int = 0  # distinct trie nodes run through the model (per user)
    tokens_forwarded: int = 0  # packed positions incl. recomputed chunk ancestors (per user)
    chunks: int = 0
    prompt_tokens: int = 0
    item_tokens: int = 0  # sum of response lengths: the cost of one forward per item
    extra: dict = field(default_factory=dict)


def _logit_head(model):
    """(lm_head module, weight or None if gathering rows is not exact, bias, post-processing)."""
    base = _base(model)
    head = base.get_output_embeddings()
    W = head.weight if type(head) is torch.nn.Linear else None
    bias = getattr(head, "bias", None) if W is not None else None
    cfg = base.config
    cap = getattr(cfg, "final_logit_softcapping", None)
    scale = getattr(cfg, "logits_scaling", None)

    def post(z):
        if scale:
            z = z / scale
        if cap:
            z = torch.tanh(z / cap) * cap
        return z

    return head, W, bias, post


@torch.no_grad()
def score_all_items_batch(model, prompts: list[list[int]], trie, mode: str = "valid", chunk: int = 256,
                          stats: ExactStats | None = None) -> np.ndarray:
    """Exact scores of every catalogue item for several users: (users, items) float64, columns in
    ``trie_plan(trie).item_ids`` order (the trie's item order).

    ``mode="valid"``: log P_valid(y^v|x); ``mode="full"``: log P(y^v|x) under the
    full softmax. ``chunk``: trie nodes (packed tokens) per forward and user;
    memory grows with users x chunk x (prompt + chunk). Pass an
    :class:`ExactStats` to collect the cost.
    """
    _check_mode(mode)
    if not prompts or any(len(p) == 0 for p in prompts):
        raise DecodeError("score_all_items needs non-empty prompts")
    plan = trie_plan(trie)
    base = _base(model)
    body = base.get_decoder()
    head, W, bias, post = _logit_head(model)
    dev, dt = _device(model), _dtype(model)
    neg = torch.finfo(dt).min
    U = len(prompts)
    with eval_mode(model):
        kv = prefill(body, [list(map(int, p)) for p in prompts])
        c = kv.prefix_keys[0].shape[2] if kv.prefix_keys else 0
        cache, cache_arg = DynamicCache(config=body.config), cache_argument(body)
        for layer, (pk, pv, k, v) in enumerate(zip(kv.prefix_keys or [None] * len(kv.keys),
                                                   kv.prefix_values or [None] * len(kv.keys), kv.keys, kv.values)):
            if pk is not None:  # every user's copy of the shared prefix, then its own prompt
                k, v = torch.cat([pk.expand(U, -1, -1, -1), k], 2), torch.cat([pv.expand(U, -1, -1, -1), v], 2)
            cache.update(k, v, layer)
        pvalid = torch.cat([torch.ones((U, c), dtype=torch.bool, device=dev), ~kv.pad], 1)
        plens, P = kv.lens, pvalid.shape[1]
        logp = np.zeros((U, plan.n), dtype=np.float64)  # log-prob of the edge into each node

        def score_nodes(h: torch.Tensor, nodes: np.ndarray):
            """h: (U, len(nodes), d) hidden states after prompt + prefix(node); fill logp of their edges."""
            keep = plan.deg[nodes] > (1 if mode == "valid" else 0)
            if not keep.any():
                return
            nodes, h = nodes[keep], h[:, torch.as_tensor(np.nonzero(keep)[0], device=dev)]
            deg = plan.deg[nodes]
            eidx = _ranges(plan.ptr[nodes], deg)
            row = torch.as_tensor(np.repeat(np.arange(len(nodes)), deg), device=dev)
            tok = torch.as_tensor(plan.ctok[eidx], device=dev)
            child = plan.cnode[eidx]
            if mode == "full" or W is None:
                z = post(head(h).float())  # (U, n, V)
                lse_full = torch.logsumexp(z, dim=-1)
                zt = z[:, row, tok]  # (U, E)
                if mode == "full":
                    lp = zt - lse_full[:, row]
                    logp[:, child] = lp.double().cpu().numpy()
                    return
            else:
                zt = post((h[:, row].float() * W[tok].float()[None]).sum(-1)
                          + (bias[tok].float()[None] if bias is not None else 0.0))  # (U, E)
            seg = row[None].expand(U, -1)
            mx = torch.full((U, len(nodes)), -math.inf, device=dev).scatter_reduce(1, seg, zt, "amax")
            se = torch.zeros((U, len(nodes)), device=dev).index_add_(1, row, torch.exp(zt - mx[:, row]))
            lse = mx + torch.log(se)
            logp[:, child] = (zt - lse[:, row]).double().cpu().numpy()

        score_nodes(kv.last[:, None], np.array([0]))
        del kv
        n_fwd = n_tok = n_chunks = 0
        for anc, nodes in plan.chunks(mode, chunk):
            packed = np.concatenate([anc, nodes])
            M = len(packed)
            allowed, _ = plan.tree_mask(packed)
            mask = torch.zeros((U, 1, M, P + M), dtype=dt, device=dev)
            mask[:, 0, :, :P] = torch.where(pvalid[:, None, :], 0.0, neg).to(dt)
            mask[:, 0, :, P:] = torch.where(torch.as_tensor(allowed, device=dev), 0.0, neg).to(dt)[None]
            toks = torch.as_tensor(plan.tok_in[packed], device=dev)[None].expand(U, -1)
            pos = plens[:, None] + torch.as_tensor(plan.depth[packed] - 1, device=dev)[None]
            h = body(input_ids=toks, attention_mask=mask, position_ids=pos, **{cache_arg: cache},
                     use_cache=True).last_hidden_state
            cache.crop(-M)
            score_nodes(h[:, len(anc):], nodes)
            n_fwd += len(nodes)
            n_tok += M
            n_chunks += 1
        # accumulate down the trie, level by level
        total = np.zeros((U, plan.n), dtype=np.float64)
        for lv in plan.levels[1:]:
            total[:, lv] = total[:, plan.parent[lv]] + logp[:, lv]
        if stats is not None:
            stats.mode, stats.users = mode, stats.users + U
            stats.nodes_forwarded, stats.tokens_forwarded, stats.chunks = n_fwd, n_tok, n_chunks
            stats.prompt_tokens = int(plens.sum())
            stats.item_tokens = int(sum(len(s) for s in trie.sequences.values()))
        return total[:, plan.terminal]


def score_all_items(model, prompt_ids: list[int], trie, mode: str = "valid", chunk: int = 256,
                    item_ids=None, stats: ExactStats | None = None):
    """Exact score of every catalogue item for one prompt, in one prefix-sharing pass.

    Returns ``{item_id: score}``, or with ``item_ids`` an array aligned with it.
    ``mode="valid"`` ranks by P_valid(y^v|x) (MSL Lemma 1), ``"full"`` by the
    full-softmax P(y^v|x).
    """
    s = score_all_items_batch(model, [prompt_ids], trie, mode, chunk, stats)[0]
    plan = trie_plan(trie)
    if item_ids is None:
        return dict(zip(plan.item_ids.tolist(), s.tolist()))
    return s[plan.columns(item_ids)]


@torch.no_grad()
def score_items(model, prompt_ids: list[int], trie, item_ids, mode: str = "valid", batch_size: int = 32) -> np.ndarray:
    """log P_valid (or full log P) of chosen items by one plain forward of prompt + response each.

    The straightforward reference for :func:`score_all_items` (no prefix
    sharing; the prompt is recomputed in every row), and a cheap way to score a
    few candidates.
    """
    _check_mode(mode)
    prompt = list(map(int, prompt_ids))
    P = len(prompt)
    dev = _device(model)
    out = np.zeros(len(item_ids), dtype=np.float64)
    with eval_mode(model):
        for b in range(0, len(item_ids), batch_size):
            batch = [int(i) for i in item_ids[b:b + batch_size]]
            resps = [trie.sequences[i] for i in batch]
            ids, att = pad_sequences([prompt + list(resp) for resp in resps], trie.eos_id)
            logits = model(input_ids=ids.to(dev), attention_mask=att.to(dev)).logits.float().cpu()
            for r, (iid, resp) in enumerate(zip(batch, resps)):
                z = logits[r, P - 1:P - 1 + len(resp)]  # predicts resp[t] at row t
                tgt = torch.as_tensor(resp)
                if mode == "full":
                    lp = z.log_softmax(-1).gather(1, tgt[:, None])[:, 0]
                else:
                    nodes = torch.from_numpy(np.asarray(trie.path(iid)[:-1], dtype=np.int64))
                    toks, ok = trie.children(nodes)
                    zv = z.gather(1, toks).masked_fill(~ok, -math.inf)
                    lp = z.gather(1, tgt[:, None])[:, 0] - torch.logsumexp(zv, -1)
                out[b + r] = float(lp.double().sum())
    return out


def exact_ranks(model, prompts: list[list[int]], targets, trie, mode: str = "valid", chunk: int = 256,
                users_per_pass: int = 1) -> np.ndarray:
    """Exact 0-based pessimistic ranks of ``targets`` over the whole catalogue, one prefix-sharing pass per
    ``users_per_pass`` users (>1 pays off on a GPU)."""
    cols = trie_plan(trie).columns(targets)
    out = [rank_of_target(score_all_items_batch(model, prompts[b:b + users_per_pass], trie, mode, chunk),
                          cols[b:b + users_per_pass]) for b in range(0, len(prompts), users_per_pass)]
    return np.concatenate(out).astype(np.float64) if out else np.zeros(0)
