"""The chapter helpers of llmrec.analysis (trie sizes, weights, ATS roots) and the llmrec.widgets explorers.

Each helper is checked against an independent computation (loops over the trie's sequences, dense softmax,
the quadratic's own equation); the widgets are built headless, as papermill does.
"""

import math
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import torch

from llmrec import probes as A
from llmrec.core import losses as L
from llmrec import widgets as Wd
from llmrec.data import load_dataset
from llmrec.llm.trie import ItemTrie
from test_decode import biased_head  # the planted-preference model of the decoding tests


@pytest.fixture(scope="module")
def syn(tok):
    data = load_dataset("synthetic")
    return data, ItemTrie.from_titles(data.items, tok)


def dense_problem(N=30, V=60, seed=0, first_every=5):
    """Random dense logits, a valid mask holding the target (with singleton rows), ``first`` flags."""
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(N, V, generator=g) * 2
    targets = torch.randint(0, V, (N,), generator=g)
    valid = torch.rand(N, V, generator=g) < 0.25
    valid[torch.arange(N), targets] = True
    valid[3] = False
    valid[3, targets[3]] = True
    v = L.ValidLogits.from_dense(logits, valid, targets)
    v.first = torch.arange(N) % first_every == 0
    return logits, valid, targets, v


# ----------------------------------------------------------------------------- positions and the trie


def test_response_positions_count_from_each_first_token():
    first = torch.tensor([True, False, False, True, True, False, False, False])
    assert A.response_positions(first).tolist() == [0, 1, 2, 0, 0, 1, 2, 3]


def test_valid_set_sizes_match_the_trie_walk(syn):
    data, trie = syn
    ids = data.train.target.tolist()[:40]
    df = A.valid_set_sizes(trie, ids)
    expect = [(i, t, len(z)) for i in ids for t, z in enumerate(trie.valid_sets(trie.encode(data.items[i])))]
    assert list(df.itertuples(index=False, name=None)) == expect
    assert df.n_valid.mean() == pytest.approx(trie.avt(ids))


def test_items_below_is_a_prefix_filter(syn):
    data, trie = syn
    seqs = trie.sequences
    some = seqs[7]
    for k in (0, 1, 2, 4, len(some)):
        prefix = some[:k]
        brute = sorted(i for i, s in seqs.items() if s[:k] == prefix)
        assert A.items_below(trie, prefix) == brute
    assert len(A.items_below(trie, [])) == len(data.items)


def test_trie_costs_on_the_synthetic_catalogue(tok, syn):
    data, trie = syn
    c = A.trie_costs("synthetic", tok, repeats=1, batch_windows=4)
    positions = sum(len(trie.encode(t)) for t in data.items.values())
    assert c["items"] == len(data.items)
    assert c["AVT (train targets)"] == pytest.approx(
        np.mean([len(z) for i in data.train.target for z in trie.valid_sets(trie.encode(data.items[i]))]), rel=1e-5)
    assert c["dense catalogue masks MB"] == pytest.approx(positions * len(tok) / 2**20)
    assert c["build_s"] > 0 and math.isnan(c["paper_AVT"])


# ----------------------------------------------------------------------------- gradient weights


def test_weight_frame_matches_dense_softmax():
    logits, valid, targets, v = dense_problem()
    df = A.weight_frame(v)
    p_all = torch.softmax(logits, -1)[torch.arange(len(targets)), targets]
    p_val = torch.softmax(logits.masked_fill(~valid, -torch.inf), -1)[torch.arange(len(targets)), targets]
    assert np.allclose(df.w_lml, 1 - p_all.numpy(), atol=1e-5)
    assert np.allclose(df.w_msl, 1 - p_val.numpy(), atol=1e-5)
    assert df.n_valid.tolist() == valid.sum(-1).tolist()
    assert df.position.tolist() == [n % 5 for n in range(len(targets))]
    assert df.w_msl[3] == 0.0  # |Z_valid| = 1: P_valid = 1


def test_small_weight_table_counts_by_hand():
    frame = pd.DataFrame({"position": [0, 1, 2, 3, 4, 0, 5],
                          "n_valid": [1, 5, 5, 5, 1, 9, 9],
                          "w_lml": [0.9, 0.9, 0.9, 0.9, 0.9, 0.9, 0.05],
                          "w_msl": [0.0, 0.05, 0.5, 0.02, 0.0, 0.01, 0.5]})
    t = A.small_weight_table(frame).set_index(["weights", "tokens"])
    share = "share of small w in first 3"
    # MSL, all tokens: small at rows 0,1,3,4,5 -> 3 of 5 in the first three positions
    assert t.loc[("MSL", "all tokens"), "w < 0.1"] == 5
    assert t.loc[("MSL", "all tokens"), share] == pytest.approx(3 / 5)
    # |Z_valid| > 1 drops rows 0 and 4: small at 1,3,5 -> 2 of 3
    assert t.loc[("MSL", "|Z_valid| > 1"), share] == pytest.approx(2 / 3)
    assert t.loc[("LML", "all tokens"), share] == 0.0
    assert t.loc[("MSL", "all tokens"), "share of all tokens in first 3"] == pytest.approx(4 / 7)


def test_position_probs_and_pick_position():
    logits, valid, targets, v = dense_problem()
    row = A.pick_position(v, min_valid=5)
    assert v.n_valid[row] >= 5 and A.response_positions(v.first)[row] < 3
    df = A.position_probs(v, row, tau=2.0)
    ref = torch.softmax(logits[row][valid[row]] / 2.0, -1).sort(descending=True).values
    assert np.allclose(df.p_valid, ref.numpy(), atol=1e-6)
    assert df.is_target.sum() == 1
    assert df.logit[df.is_target].iloc[0] == pytest.approx(float(logits[row, targets[row]]))


# ----------------------------------------------------------------------------- ATS


def test_select_positions_and_mean_p_valid():
    logits, valid, targets, v = dense_problem()
    sub = A.select_positions(v, v.first)
    assert len(sub.logits) == int(v.first.sum()) and bool(sub.first.all())
    for tau in (0.5, 1.0, 3.0):
        p = torch.softmax((logits / tau).masked_fill(~valid, -torch.inf), -1)[torch.arange(len(targets)), targets]
        keep = valid.sum(-1) > 1
        assert A.mean_p_valid(v, tau) == pytest.approx(float(p[keep].mean()), rel=1e-5)


def test_both_roots_solve_the_gaussian_approximation():
    delta, sigma2, m = 4.0, 1.3, 40.0  # Delta^2 > 2 C sigma^2 for every eta: two real roots
    for eta in (0.1, 0.25, 0.5):
        for root in "+-":
            tau = L.ats_tau_from_stats(delta, sigma2, m, eta, root)
            assert A.gaussian_p_valid(delta, sigma2, m, tau) == pytest.approx(eta, rel=1e-6)


def test_ats_root_table_on_gaussian_logits():
    """Valid logits drawn from N(0, 1) and a target shifted up: the numeric root reaches eta, the '+' root
    lands near it and the '-' root far below it."""
    g = torch.Generator().manual_seed(1)
    N, K = 400, 60
    logits = torch.randn(N, K, generator=g)
    logits[:, 0] += 3.0
    v = L.ValidLogits(logits, torch.ones(N, K, dtype=torch.bool), torch.zeros(N, dtype=torch.long),
                      first=torch.arange(N) % 4 == 0)
    t = A.ats_root_table(v, etas=(0.25,)).set_index("statistics")
    assert set(t.index) == {"paper", "code"}
    r = t.loc["paper"]
    assert A.mean_p_valid(v, r["tau numeric"]) == pytest.approx(0.25, abs=1e-6)
    assert abs(r["(+) / numeric"] - 1) < 0.15
    assert r["(-) / numeric"] < 0.5
    assert t.loc["code", "n_positions"] == N // 4
    assert A.mean_p_valid(A.select_positions(v, v.first), t.loc["code", "tau numeric, same positions"]) == \
        pytest.approx(0.25, abs=1e-6)


def test_tokenwise_exact_roots_hit_eta_and_plus_is_closer():
    g = torch.Generator().manual_seed(2)
    N, K = 60, 80
    logits = torch.randn(N, K, generator=g) * 1.5
    logits[:, 0] = logits.max(1).values + 1.0 + torch.rand(N, generator=g) * 4  # y_t on top
    logits[:5, 0] = -3.0  # ... except at five positions: no exact root there
    v = L.ValidLogits(logits, torch.ones(N, K, dtype=torch.bool), torch.zeros(N, dtype=torch.long),
                      first=torch.arange(N) % 6 == 0)
    eta = 0.25
    d = A.ats_tokenwise(v, eta)
    assert d.position.tolist() == [n % 6 for n in range(N)]
    assert d["tau numeric"][:5].isna().all() and np.isfinite(d["tau numeric"][5:]).all()
    tau = torch.tensor(d["tau numeric"][5:].to_numpy())
    p = torch.softmax(logits[5:].double() / tau[:, None], -1)[:, 0]
    assert torch.allclose(p, torch.full_like(p, eta), atol=1e-6)
    assert np.allclose(d.sigma2, logits.double().var(1, unbiased=False).numpy())
    s = A.ats_tokenwise_summary(v, etas=(eta,)).iloc[0]
    assert s["with exact tau_t"] == N - 5 and s["two roots and exact"] > 10
    assert s["(+) closer"] > 0.9 and s["median |(+)/exact - 1|"] < 0.2 < s["median |(-)/exact - 1|"]


# ----------------------------------------------------------------------------- widgets (headless)


def test_explore_prefix_and_longest_prefix(tok, syn):
    data, trie = syn
    seq = trie.sequences[11]
    info = Wd.explore_prefix(trie, tok, seq[:2], data.items, max_items=3)
    assert [t for t, _, _ in sorted(info["valid"])] == trie.valid_next(seq[:2])
    assert sum(n for _, _, n in info["valid"]) == info["n_items"] == len(A.items_below(trie, seq[:2]))
    assert len(info["titles"]) == min(3, info["n_items"])
    assert all(data.items[i] == t for i, t in info["titles"])
    assert Wd.explore_prefix(trie, tok, [5, 5, 5])["n_items"] == 0
    assert Wd.longest_prefix(trie, seq[:3] + [999_999]) == seq[:3]


def test_widgets_build_headless(tok, syn):
    import ipywidgets as W

    data, trie = syn
    ex = Wd.trie_explorer(trie, data.items, tok)
    assert isinstance(ex, W.VBox)
    ex.children[0].value = data.items[11][:8]  # typing walks the trie
    assert "items below" in ex.children[-1].value
    _, _, _, v = dense_problem()
    box = Wd.tau_slider(v, A.pick_position(v))
    slider, image = box.children
    before = image.value
    assert isinstance(box, W.VBox) and before[:8] == b"\x89PNG\r\n\x1a\n"
    slider.value = 4.0  # a move redraws the position at the new tau
    assert image.value[:8] == b"\x89PNG\r\n\x1a\n" and image.value != before


@pytest.fixture(scope="module")
def tiny_rec(tok, syn):
    from llmrec.llm.model import load_llm
    from llmrec.llm.prompts import PromptEncoder

    data, trie = syn
    model, _ = load_llm("tiny")
    rec = SimpleNamespace(ds=data, trie=trie, tok=tok, encoder=PromptEncoder(tok, trie, data.items, max_history=3))
    return rec, model.eval()


def test_recommend_finds_a_planted_target(tiny_rec):
    rec, model = tiny_rec
    row = 0
    target = int(rec.ds.test.target.iloc[row])
    biased = biased_head(model, rec.trie.sequences[target])
    r = Wd.recommend(rec, {"plain": model, "planted": biased}, row, "test", num_beams=4)
    assert r["target"] == rec.ds.items[target] and r["table"].shape == (4, 2)
    assert r["table"]["planted"].iloc[0] == rec.ds.items[target] and r["hit"]["planted"] == 0
    assert set(r["table"]["plain"]) <= set(rec.ds.items.values())


def test_user_explorer_computes_only_on_click(tiny_rec):
    rec, _ = tiny_rec
    widget = Wd.user_explorer(rec, {"broken": object()}, num_beams=2)  # building must not touch the model
    widget.children[0].children[1].click()
    assert "Error" in widget.children[1].value


def test_every_control_changes_its_explorers_output(tiny_rec):
    """What `make check-widgets` does in a browser, here in Python: each control worked once changes the output."""
    import matplotlib

    matplotlib.use("Agg")
    rec, model = tiny_rec
    ex = Wd.trie_explorer(rec.trie, rec.ds.items, rec.tok)
    text, (back, reset), select, out = ex.children[0], ex.children[1].children, ex.children[2], ex.children[3]
    seen = [out.value]
    text.value = rec.ds.items[min(rec.ds.items)][:8]  # type a title's start
    seen.append(out.value)
    select.value = select.options[0][1]  # pick a next token
    seen.append(out.value)
    back.click()
    seen.append(out.value)
    reset.click()
    seen.append(out.value)
    assert all(a != b for a, b in zip(seen, seen[1:])) and seen[-1] == seen[0]
    # the tau slider redraws through plot_position: another tau, another P_valid(y_t) in the title
    _, _, _, v = dense_problem()
    row = A.pick_position(v)
    titles = [Wd.plot_position(v, row, tau).get_title() for tau in (1.0, 3.0)]
    assert titles[0] != titles[1] and titles[1].startswith("τ = 3.00")
    # the user explorer: a row, then the button
    user = Wd.user_explorer(rec, {"tiny": model}, num_beams=2)
    (pick, go), html = user.children[0].children, user.children[1]
    before = html.value
    pick.value = 1
    assert html.value == before  # nothing computed until the button
    go.click()
    assert html.value != before and "<b>history</b>" in html.value and "Error" not in html.value
