"""Constrained beam search over the trie of titles (the MSL paper's inference).

``num_beams`` beams; every token outside Z_valid(y_<t) is at -inf. Three engines
give the same titles and scores (tested): ``"hf"``, Hugging Face
``model.generate`` with a :class:`TrieLogitsProcessor` (the reference);
``"fast"``, the same search written out so that each prompt is prefilled once
instead of ``num_beams`` times, only live beams are forwarded, and the prompt's
K/V stay in one row per user: a beam attends to them through
:func:`llmrec.llm.decode.attention.shared_prompt_attention` instead of carrying
(and reordering every step) its own copy (run one user at a time, it is the
reference of the third); and ``"batched"`` (default), the fast engine's search
for many users at once (:func:`_batched_beams`: the prompts' shared template
prefilled once, every live beam of every user in one forward a step, users
leaving the batch as their search ends). The beams that reach EOS are the
recommended titles; their score is the sum of the response tokens'
log-probabilities under the model's *full* softmax (what HF beam search with a
prefix-allowed-tokens constraint returns), or with ``score="valid"`` the sum of
log P_valid (each step renormalised over Z_valid). Beam search is a heuristic:
the returned list is not always the true top ``num_beams``.

Beam states. Hugging Face reorders beams between steps and does not show the
logits processor which parent row each row came from, so the processor
recomputes each row's trie node from the generated suffix: ``trie.advance``
over the suffix columns, one vectorised op per generated token. This is
stateless, hence correct under any beam reordering, padding or batch layout.
Measured speeds are in docs/architecture.md.
"""

from __future__ import annotations

import math

import torch
from transformers import DynamicCache, GenerationConfig, LogitsProcessor, LogitsProcessorList

from ...core.tensors import eval_mode
from .attention import SharedPrompt, use_shared_prompt_attention
from .common import (DecodeError, _base, _check_mode, _device, _max_response_len, _pad_id, cache_argument,
                     prompt_batches, returned_cache)
from .prefill import prefill

class TrieLogitsProcessor(LogitsProcessor):
    """Masks every token outside Z_valid(y_<t) for each beam row (a ``transformers`` logits processor).

    ``prompt_len`` is the (padded) input length: the response starts there, so
    the state of every row is the root at the first generated step. The state
    of each row is recomputed from its generated suffix at every call (see the
    module doc); rows whose suffix left the trie (only possible for beams that
    already carry a -inf or finished score) get every token masked.

    HF beam search hands the processor log-softmax scores over the full
    vocabulary: masking keeps full-softmax log-probabilities (``score="full"``);
    ``score="valid"`` subtracts the log-sum-exp over Z_valid, giving log P_valid.
    """

    def __init__(self, trie, prompt_len: int, score: str = "full"):
        self.trie, self.prompt_len, self.score = trie, int(prompt_len), _check_mode(score)

    def states(self, input_ids: torch.Tensor) -> torch.Tensor:
        """Trie node of every row (-1 where the suffix is not a title prefix)."""
        suffix = input_ids[:, self.prompt_len:].to("cpu", torch.long)
        nodes = torch.zeros(len(suffix), dtype=torch.long)
        for j in range(suffix.shape[1]):
            nodes = self.trie.advance(nodes, suffix[:, j])
        return nodes

    def allowed(self, nodes: torch.Tensor, vocab: int, device=None) -> torch.Tensor:
        """Dense (rows, vocab) boolean mask of Z_valid, built from the CSR children by scatter."""
        alive = nodes >= 0
        toks, ok = self.trie.children(nodes.clamp_min(0))
        ok = ok & alive[:, None]
        if toks.numel() and int(toks.max()) >= vocab:
            raise DecodeError(f"trie token {int(toks.max())} outside the model's vocabulary ({vocab})")
        out = torch.zeros(len(nodes), vocab, dtype=torch.bool, device=device)
        return out.scatter_(1, toks.to(device), ok.to(device))

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        nodes = self.states(input_ids)
        allowed = self.allowed(nodes, scores.shape[-1], scores.device)
        out = scores.masked_fill(~allowed, -math.inf)
        if self.score == "valid":
            lse = torch.logsumexp(out, dim=-1, keepdim=True)
            out = torch.where(torch.isfinite(lse), out - lse, out)  # dead rows stay all -inf (no NaN)
        return out


def _generation_config(num_beams: int, max_new_tokens: int, eos: int, pad: int, length_penalty: float = 0.0):
    return GenerationConfig(
        num_beams=num_beams, num_return_sequences=num_beams, do_sample=False, length_penalty=length_penalty,
        early_stopping=False, max_new_tokens=max_new_tokens, min_new_tokens=None, min_length=0,
        eos_token_id=eos, pad_token_id=pad, repetition_penalty=1.0, no_repeat_ngram_size=0,
        bad_words_ids=None, suppress_tokens=None, begin_suppress_tokens=None, forced_bos_token_id=None,
        forced_eos_token_id=None, output_scores=True, return_dict_in_generate=True, use_cache=True)


def _parse_beams(seqs: torch.Tensor, scores: torch.Tensor, trie) -> list[tuple[list[int], float]]:
    """Finished catalogue responses among one user's returned rows, best first, one entry per title."""
    eos = trie.eos_id
    pairs = [(s, tuple(row[:row.index(eos) + 1])) for row, s in zip(seqs.tolist(), scores.tolist())
             if math.isfinite(s) and s > -1e8 and eos in row]  # HF's placeholder for "no finished beam" is -1e9
    return _distinct_titles(pairs, trie)


def _distinct_titles(pairs, trie) -> list[tuple[list[int], float]]:
    """``(score, response ids)`` pairs -> ``(item ids, score)`` per distinct catalogue title, best first."""
    out, seen = [], set()
    for s, resp in sorted(pairs, key=lambda e: -e[0]):
        items = trie.items_for(resp)
        if items and resp not in seen:
            seen.add(resp)
            out.append((items, float(s)))
    return out


ENGINES = ("batched", "fast", "hf")
BATCH_SIZE = {"batched": 32, "fast": 4, "hf": 4}  # users per call when batch_size is not given


@torch.no_grad()
def beam_search_batch(model, prompts: list[list[int]], trie, num_beams: int = 10, batch_size: int | None = None,
                      max_new_tokens: int | None = None, score: str = "full", engine: str = "batched",
                      length_penalty: float = 0.0) -> list[list[tuple[list[int], float]]]:
    """Constrained beam search for several users: one result list per prompt (see :func:`beam_search`).

    The three engines return the same titles and scores (tested). ``"batched"``
    (default, :func:`_batched_beams`): ``batch_size`` users (default 32) decoded
    together, their shared prompt prefix run once, each user leaving the batch
    when its search is over. ``"fast"`` (the per-user reference; it takes
    left-padded batches of ``batch_size`` users, default 4, but is measured one
    user at a time): each prompt is prefilled once and its K/V kept once per
    user for all of its beams (:func:`shared_prompt_attention`), the LM head
    runs on the last position only, and only the trie children of each beam are
    scored. ``"hf"`` is ``model.generate`` with the :class:`TrieLogitsProcessor`
    (it copies every prompt ``num_beams`` times before the prefill, and keeps
    the full-vocabulary scores of every step: ~80 MB per user for 10 beams, 40
    steps, 49k tokens).

    ``length_penalty`` (HF's: a finished title's score is its summed
    log-probability divided by its length to that power; the MSL authors'
    default is 1) is supported by the ``"hf"`` engine; the others are HF's
    search with ``length_penalty=0``, this project's default.
    """
    _check_mode(score)
    if engine not in ENGINES:
        raise DecodeError(f"unknown beam-search engine {engine!r}; choose one of {ENGINES}")
    if length_penalty and engine != "hf":
        raise DecodeError(f"length_penalty != 0 needs engine='hf' (engine {engine!r} is HF's search with 0)")
    if num_beams < 1:
        raise DecodeError(f"num_beams must be >= 1, got {num_beams}")
    if engine == "hf" and num_beams < 2:
        raise DecodeError("engine 'hf' needs num_beams >= 2 (one beam is greedy search there); use engine 'batched'")
    if any(len(p) == 0 for p in prompts):
        raise DecodeError("every prompt needs at least one token")
    batch_size = int(batch_size or BATCH_SIZE[engine])
    if batch_size < 1:
        raise DecodeError(f"batch_size must be >= 1, got {batch_size}")
    max_new = int(max_new_tokens or _max_response_len(trie))
    pad = _pad_id(model, trie)
    dev = _device(model)
    results = []
    with eval_mode(model):
        if engine == "batched":
            for b in range(0, len(prompts), batch_size):
                results += _batched_beams(model, [list(map(int, p)) for p in prompts[b:b + batch_size]], trie,
                                          num_beams, max_new, score)
            return results
        for chunk, ids, mask in prompt_batches(prompts, batch_size, pad, dev):
            if engine == "fast":
                results += _fast_beams(model, ids, mask, trie, num_beams, max_new, score)
                continue
            proc = TrieLogitsProcessor(trie, ids.shape[1], score)
            out = model.generate(input_ids=ids, attention_mask=mask,
                                 generation_config=_generation_config(num_beams, max_new, trie.eos_id, pad,
                                                                      length_penalty),
                                 logits_processor=LogitsProcessorList([proc]))
            seqs = out.sequences[:, ids.shape[1]:].cpu()
            sc = out.sequences_scores.float().cpu()
            del out
            for u in range(len(chunk)):
                rows = slice(u * num_beams, (u + 1) * num_beams)
                results.append(_parse_beams(seqs[rows], sc[rows], trie)[:num_beams])
    return results


def _batched_beams(model, prompts: list[list[int]], trie, K: int, max_new: int, score: str,
                   tokens_per_forward: int | None = None) -> list[list[tuple[list[int], float]]]:
    """:func:`_fast_beams`' search for many users at once, every live beam of every user in one forward a step.

    The prompts are prefilled by :func:`llmrec.llm.decode.prefill.prefill`
    (the prefix all of them share run once and kept once, the rest sorted by
    length into forwards with little padding); each beam attends to the shared
    prefix, its user's prompt and its own response (:func:`shared_prompt_attention`).
    The selection of every step is one set of tensor operations over all users
    (``(users, 2K)`` candidates: EOS among the first ``K`` finishes a title, the
    first ``K`` others stay live). Besides the users whose search is over
    (``K`` titles finished and no live beam above the worst of them), a beam
    that scores no higher than its user's ``K``-th finished title is dropped:
    scores only fall, so neither it nor any descendant can enter the list, and
    every beam above it keeps its place, hence the same lists as the reference
    (tested). Users whose search is over leave the batch: their prompt K/V are
    dropped once at most half of the users held are still searching.
    """
    body, head = _base(model).get_decoder(), _base(model).get_output_embeddings()
    kv = prefill(body, prompts, tokens_per_forward)
    dev, U = kv.last.device, len(prompts)
    prompt = SharedPrompt(kv.keys, kv.values, kv.pad, K, prefix_keys=kv.prefix_keys, prefix_values=kv.prefix_values)
    users, lens, h = torch.arange(U), kv.lens.cpu(), kv.last  # prompt index and length of each user held
    del kv
    cache = DynamicCache(config=body.config)  # the beams' response tokens only
    slot_row = torch.full((U * K,), -1, dtype=torch.long)  # row of each beam slot u * K + j in h (-1: none)
    slot_row[::K] = torch.arange(U)
    nodes = torch.zeros(U * K, dtype=torch.long)
    seqs = torch.zeros((U * K, 0), dtype=torch.long)
    beam_score = torch.full((U, K), -math.inf)
    beam_score[:, 0] = 0.0  # one live beam (the empty response) per user at the start
    fin_score = torch.full((U, K), -math.inf)  # each user's best finished titles so far, best first ...
    fin_id = torch.full((U, K), -1, dtype=torch.long)  # ... as indices into titles
    titles: list[tuple] = []
    results: list = [None] * U

    def finish(held):
        for u in held.tolist():
            results[int(users[u])] = _distinct_titles(
                [(s, titles[i]) for s, i in zip(fin_score[u].tolist(), fin_id[u].tolist()) if i >= 0], trie)

    attn, cache_arg = body.config._attn_implementation, cache_argument(body)
    body.config._attn_implementation = use_shared_prompt_attention()
    try:
        for step in range(max_new):
            Uh, live = len(users), slot_row >= 0
            t_live, ok = trie.children(nodes[live])  # live rows come in slot order
            toks = torch.zeros((Uh * K, t_live.shape[1]), dtype=torch.long)
            toks[live] = t_live
            z = head(h).float()  # one row per live beam
            zc = z.gather(1, t_live.to(dev))  # the logits of its trie children only
            if score == "full":  # their log-softmax over the vocabulary
                zc = zc - torch.logsumexp(z, dim=-1, keepdim=True)
            zc = zc.cpu().masked_fill(~ok, -math.inf)
            del z
            if score == "valid":
                lse = torch.logsumexp(zc, dim=-1, keepdim=True)
                zc = torch.where(torch.isfinite(lse), zc - lse, zc)
            C = zc.shape[1]
            cand = torch.full((Uh * K, C), -math.inf)
            cand[live] = zc
            top_s, top_i = (beam_score.reshape(-1, 1) + cand).reshape(Uh, K * C).topk(min(2 * K, K * C), dim=1)
            slot = torch.arange(Uh)[:, None] * K + top_i // C
            tok = toks[slot, top_i % C]
            real = top_s > -math.inf
            eos = real & (tok == trie.eos_id)
            ends = eos & (torch.arange(top_s.shape[1]) < K)[None]  # EOS among the first K: a finished title
            grow = real & ~eos
            order = grow.cumsum(1) - 1
            dst = torch.where(grow & (order < K), order, K)  # the first K others stay live (column K: dropped)
            new_score = torch.full((Uh, K + 1), -math.inf).scatter_(1, dst, top_s)[:, :K]
            parents = torch.zeros((Uh, K + 1), dtype=torch.long).scatter_(1, dst, slot)[:, :K]
            new_tok = torch.zeros((Uh, K + 1), dtype=torch.long).scatter_(1, dst, tok)[:, :K]
            if bool(ends.any()):
                new_id = torch.full(ends.shape, -1, dtype=torch.long)
                new_id[ends] = torch.arange(len(titles), len(titles) + int(ends.sum()))
                titles += [tuple(r) + (trie.eos_id,) for r in seqs[slot[ends]].tolist()]
                merged, pick = torch.cat([fin_score, top_s.masked_fill(~ends, -math.inf)], 1).sort(
                    dim=1, descending=True, stable=True)  # ties: the earlier title first, as a stable sort
                fin_score, fin_id = merged[:, :K], torch.cat([fin_id, new_id], 1).gather(1, pick[:, :K])
            worst = fin_score[:, -1:]  # -inf until K titles are finished
            best = new_score.max(1, keepdim=True).values
            over = (best <= worst) | (best == -math.inf)
            new_score = new_score.masked_fill(over | (new_score <= worst), -math.inf)
            keep = torch.isfinite(new_score.reshape(-1))
            if not bool(keep.any()):
                break
            flat = parents.reshape(-1)
            rows = slot_row[flat[keep]].to(dev)  # the row of each surviving beam's parent
            inp = new_tok.reshape(-1)[keep]
            seqs = torch.cat([seqs[flat], new_tok.reshape(-1, 1)], dim=1)
            nodes = trie.advance(nodes[flat], new_tok.reshape(-1))
            beam_score = new_score
            held = keep.reshape(Uh, K).any(1)
            if 2 * int(held.sum()) <= Uh:  # at most half still searching: the others leave the batch
                finish((~held).nonzero().squeeze(1))
                sel = held.nonzero().squeeze(1)
                slots = (sel[:, None] * K + torch.arange(K)).reshape(-1)
                users, lens, beam_score, fin_score, fin_id = (x[sel] for x in (users, lens, beam_score, fin_score,
                                                                               fin_id))
                nodes, seqs, keep = nodes[slots], seqs[slots], keep[slots]
                prompt.keep_users(sel)
            if step > 0:  # before the first forward the response cache is empty
                cache.reorder_cache(rows)
            slot_row = torch.full((len(users) * K,), -1, dtype=torch.long)
            slot_row[keep] = torch.arange(int(keep.sum()))
            prompt.slots = keep.nonzero().squeeze(1).to(dev)
            pos = (lens.repeat_interleave(K)[keep] + step).to(dev)
            h = body(input_ids=inp.reshape(-1, 1).to(dev), position_ids=pos[:, None], **{cache_arg: cache},
                     use_cache=True, shared_prompt=prompt).last_hidden_state[:, -1]
    finally:
        body.config._attn_implementation = attn
    finish(torch.arange(len(users)))
    return results


def _fast_beams(model, ids: torch.Tensor, mask: torch.Tensor, trie, K: int, max_new: int,
                score: str) -> list[list[tuple[list[int], float]]]:
    """HF's beam search (``length_penalty=0``, ``early_stopping=False``) over the trie, prefilling each prompt once.

    Per step and user: the top ``2K`` children of the live beams by summed
    log-probability; EOS among the top ``K`` of them finishes a title, the best
    ``K`` others stay live. A user is done when ``K`` titles are finished and no
    live beam scores above the worst of them (scores only fall), or at
    ``max_new`` tokens. Only live beams are forwarded (``slot_row`` maps the
    ``U x K`` beam slots to rows). The prompt's K/V stay in one row per user
    (:class:`SharedPrompt`, :func:`shared_prompt_attention`); only the beams'
    response K/V are reordered between steps.
    """
    body, head = _base(model).get_decoder(), _base(model).get_output_embeddings()
    U, dev = len(ids), ids.device
    pos = (mask.cumsum(-1) - 1).clamp_min(0)
    out = body(input_ids=ids, attention_mask=mask, position_ids=pos, use_cache=True)
    h = out.last_hidden_state[:, -1]  # one row per user (its single, empty beam)
    layers, cache_arg = returned_cache(out).layers, cache_argument(body)
    prompt = SharedPrompt([l.keys for l in layers], [l.values for l in layers], pad=(mask == 0), K=K)
    del out, layers
    cache = DynamicCache(config=body.config)  # the beams' response tokens only
    pos = pos[:, -1]
    slot_row = torch.full((U * K,), -1, dtype=torch.long)
    slot_row[::K] = torch.arange(U)
    nodes = torch.zeros(U * K, dtype=torch.long)
    beam_score = torch.full((U, K), -math.inf)
    beam_score[:, 0] = 0.0  # one live beam (the empty response) per user at the start
    seqs = torch.zeros((U * K, 0), dtype=torch.long)
    finished: list[list[tuple[float, tuple]]] = [[] for _ in range(U)]
    done = torch.zeros(U, dtype=torch.bool)
    attn = body.config._attn_implementation
    body.config._attn_implementation = use_shared_prompt_attention()
    try:
        for step in range(max_new):
            live = slot_row >= 0
            z = head(h).float().cpu()  # one row per live beam
            if score == "full":
                z = torch.log_softmax(z, dim=-1)
            toks, ok = trie.children(nodes.clamp_min(0))
            cand = torch.full(toks.shape, -math.inf)
            cand[live] = z.gather(1, toks[live])
            cand = cand.masked_fill(~(ok & (nodes >= 0)[:, None]), -math.inf)
            if score == "valid":
                lse = torch.logsumexp(cand, dim=-1, keepdim=True)
                cand = torch.where(torch.isfinite(lse), cand - lse, cand)
            C = cand.shape[1]
            total = (beam_score.reshape(-1, 1) + cand).reshape(U, K * C)
            top_s, top_i = total.topk(min(2 * K, K * C), dim=1)
            parents = torch.zeros((U, K), dtype=torch.long)
            new_tok = torch.zeros((U, K), dtype=torch.long)
            new_score = torch.full((U, K), -math.inf)
            for u in range(U):
                if done[u]:
                    continue
                n_live = 0
                for rank, (s_, i_) in enumerate(zip(top_s[u].tolist(), top_i[u].tolist())):
                    if s_ == -math.inf:
                        break
                    slot, c = u * K + i_ // C, i_ % C
                    tok = int(toks[slot, c])
                    if tok == trie.eos_id:
                        if rank < K:
                            finished[u].append((s_, tuple(seqs[slot].tolist()) + (tok,)))
                        continue
                    if n_live < K:
                        parents[u, n_live], new_tok[u, n_live], new_score[u, n_live] = slot, tok, s_
                        n_live += 1
                finished[u] = sorted(finished[u], key=lambda e: -e[0])[:K]
                best_live = float(new_score[u].max())
                if len(finished[u]) == K and best_live <= finished[u][-1][0] or best_live == -math.inf:
                    done[u] = True
            new_score[done] = -math.inf
            keep = torch.isfinite(new_score.reshape(-1))
            if not bool(keep.any()):
                break
            flat = parents.reshape(-1)
            seqs = torch.cat([seqs[flat], new_tok.reshape(-1, 1)], dim=1)
            nodes = trie.advance(nodes[flat], new_tok.reshape(-1))
            beam_score = new_score
            rows = slot_row[flat[keep]].to(dev)  # the row of each surviving beam's parent
            if step > 0:  # before the first forward the response cache is empty
                cache.reorder_cache(rows)
            pos = pos[rows] + 1
            slot_row = torch.full((U * K,), -1, dtype=torch.long)
            slot_row[keep] = torch.arange(int(keep.sum()))
            prompt.slots = keep.nonzero().squeeze(1).to(dev)
            h = body(input_ids=new_tok.reshape(-1)[keep].reshape(-1, 1).to(dev), position_ids=pos[:, None],
                     **{cache_arg: cache}, use_cache=True, shared_prompt=prompt).last_hidden_state[:, -1]
    finally:
        body.config._attn_implementation = attn
    return [_distinct_titles(f, trie) for f in finished]


def beam_search(model, prompt_ids: list[int], trie, num_beams: int = 10, max_new_tokens: int | None = None,
                score: str = "full", engine: str = "batched") -> list[tuple[list[int], float]]:
    """Up to ``num_beams`` distinct catalogue titles as ``(item_ids, score)``, best first.

    ``item_ids`` lists the items sharing the generated title (sorted; usually
    one). ``score`` is log P(title | prompt) under the full softmax
    (``"full"``, HF's beam score with ``length_penalty=0``) or log P_valid
    (``"valid"``). Fewer than ``num_beams`` entries come back only when fewer
    titles could be completed.
    """
    return beam_search_batch(model, [prompt_ids], trie, num_beams, 1, max_new_tokens, score, engine)[0]


def rank_from_beams(results: list[tuple[list[int], float]], target: int, miss_rank: float = math.inf,
                    ties: str = "pessimistic") -> float:
    """Rank of ``target`` in a beam-search list of ``(item_ids, score)`` groups (``miss_rank`` if absent).

    ``ties="pessimistic"``: every other listed item scoring >= the target's
    group counts above (shared-title mates included), as in :func:`llmrec.core.metrics.rank_of_target`;
    ``ties="list"``: list order, shared titles expanded in item-id order (the
    convention of :func:`llmrec.core.metrics.ranks_from_lists`).
    """
    for k, (items, s) in enumerate(results):
        if target in items:
            if ties == "list":
                return float(sum(len(g) for g, _ in results[:k]) + sorted(items).index(target))
            if ties != "pessimistic":
                raise DecodeError(f"unknown ties rule {ties!r}")
            return float(sum(len(g) for g, sc in results if sc >= s) - 1)
    return miss_rank
