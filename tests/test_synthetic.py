"""The synthetic dataset: deterministic, realistic titles, real protocol, learnable structure."""

import time
from collections import Counter, defaultdict

import pandas as pd
import pytest

from llmrec.data import SPLITS, load_dataset
from llmrec.data.synthetic import make_synthetic


@pytest.fixture(scope="module")
def ds():
    return make_synthetic()


def test_deterministic_by_seed(ds):
    again = make_synthetic()
    other = make_synthetic(seed=1)
    assert again.items == ds.items
    for s in SPLITS:
        pd.testing.assert_frame_equal(again.split(s), ds.split(s))
    assert other.items != ds.items or not other.train.equals(ds.train)


def test_counts_and_dtypes(ds):
    assert sorted(ds.items) == list(range(1, 301))
    assert ds.name == "synthetic" and ds.domain == "generic"
    n = {s: len(ds.split(s)) for s in SPLITS}
    assert 300 <= n["train"] <= 900
    total = sum(n.values())
    assert n["train"] == total * 8 // 10 and n["train"] + n["valid"] == total * 9 // 10
    for s in SPLITS:
        df = ds.split(s)
        assert list(df.columns) == ["user_id", "history", "target", "timestamp"]
        for col in ("user_id", "target", "timestamp"):
            assert df[col].dtype == "int64"
        assert df["user_id"].between(1, 200).all()


def test_windows_and_titles_are_valid(ds):
    for s in SPLITS:
        df = ds.split(s)
        assert df["history"].map(len).between(1, 10).all()
        for h, t in zip(df["history"], df["target"]):
            assert t in ds.items and all(i in ds.items for i in h)
    assert all(t.strip() for t in ds.items.values())


def test_split_is_chronological(ds):
    last_train = ds.train["timestamp"].max()
    assert ds.valid["timestamp"].min() >= last_train
    assert ds.test["timestamp"].min() >= ds.valid["timestamp"].max()
    for s in SPLITS:
        assert ds.split(s)["timestamp"].is_monotonic_increasing


def test_windows_slide_over_user_sequences(ds):
    # consecutive windows of one user overlap by all but one item (step-1 sliding window)
    full = pd.concat([ds.split(s) for s in SPLITS]).sort_values("timestamp", kind="stable")
    slid = 0
    for _, g in full.groupby("user_id", sort=False):
        seqs = [list(h) + [t] for h, t in zip(g["history"], g["target"])]
        for a, b in zip(seqs, seqs[1:]):
            assert len(b) == 11 and b[:-1] == a[-10:]
            slid += 1
    assert slid > 100


def test_titles_share_prefixes_and_some_titles_repeat(ds):
    titles = list(ds.items.values())
    two = Counter(" ".join(t.split()[:2]) for t in titles)
    assert sum(1 for t in titles if two[" ".join(t.split()[:2])] >= 2) >= 0.9 * len(titles)
    assert any(t.endswith("Edition") for t in titles)
    counts = Counter(titles)
    assert sorted(c for c in counts.values() if c > 1) == [2, 2]
    assert len(counts) == len(titles) - 2


def test_load_dataset_synthetic():
    ds = load_dataset("synthetic")
    assert ds.name == "synthetic" and len(ds.items) == 300
    small = load_dataset("synthetic", n_items=50, n_users=30, seed=3)
    assert len(small.items) == 50 and len(small.train) > 0


def test_fast():
    t0 = time.perf_counter()
    make_synthetic(seed=7)
    assert time.perf_counter() - t0 < 0.5


def test_structure_is_learnable(ds):
    """A bigram (last item -> next item) model from train beats popularity by far on test."""
    pop, nxt = Counter(), defaultdict(Counter)
    for h, t in zip(ds.train["history"], ds.train["target"]):
        seq = list(h) + [t]
        pop.update(seq)
        for a, b in zip(seq, seq[1:]):
            nxt[a][b] += 1
    top = [i for i, _ in pop.most_common(10)]
    hit_pop = hit_bigram = 0
    for h, t in zip(ds.test["history"], ds.test["target"]):
        guess = [i for i, _ in nxt[h[-1]].most_common(10)]
        guess += [i for i in top if i not in guess]
        hit_pop += t in top
        hit_bigram += t in guess[:10]
    assert hit_bigram >= 0.45 * len(ds.test)
    assert hit_bigram >= 2.5 * hit_pop
