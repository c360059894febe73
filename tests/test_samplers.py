"""Negative samplers: distributions, exclusion of seen items, seeding, shapes."""

import numpy as np
import pandas as pd
import pytest
import torch
from scipy.stats import chisquare

from llmrec.core import samplers
from llmrec.core.tensors import pad_sequences


def _freq(x: torch.Tensor, n: int) -> np.ndarray:
    return np.bincount(x.reshape(-1).numpy(), minlength=n + 1)


@pytest.mark.parametrize("gen", [torch.Generator().manual_seed(0), np.random.default_rng(0), 0])
def test_uniform_shape_range_and_distribution(gen):
    x = samplers.uniform(20, (400, 250), gen)
    assert x.shape == (400, 250) and x.dtype == torch.long
    assert int(x.min()) >= 1 and int(x.max()) <= 20
    f = _freq(x, 20)
    assert f[0] == 0
    assert chisquare(f[1:]).pvalue > 1e-3


def test_uniform_seeds_reproduce():
    a = samplers.uniform(1000, (3, 7), torch.Generator().manual_seed(5))
    b = samplers.uniform(1000, (3, 7), torch.Generator().manual_seed(5))
    c = samplers.uniform(1000, (3, 7), torch.Generator().manual_seed(6))
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert torch.equal(samplers.uniform(50, 9, 3), samplers.uniform(50, (9,), 3))
    n1 = samplers.uniform(50, (4, 4), np.random.default_rng(1))
    n2 = samplers.uniform(50, (4, 4), np.random.default_rng(1))
    assert torch.equal(n1, n2)


@pytest.mark.parametrize("as_sets", [False, True])
def test_unseen_never_returns_seen_items(as_sets):
    n = 30
    rng = np.random.default_rng(0)
    hist = [rng.choice(np.arange(1, n + 1), size=int(rng.integers(1, 25)), replace=False) for _ in range(64)]
    inp = [set(h.tolist()) for h in hist] if as_sets else pad_sequences(hist)[0]
    neg = samplers.unseen(inp, n, 40, torch.Generator().manual_seed(1))
    assert neg.shape == (64, 40)
    assert int(neg.min()) >= 1 and int(neg.max()) <= n
    for h, row in zip(hist, neg.numpy()):
        assert not set(row.tolist()) & set(h.tolist())


def test_unseen_is_uniform_over_the_complement():
    n = 12
    hist = torch.tensor([[1, 2, 3, 0], [5, 7, 0, 0]])
    neg = samplers.unseen(hist, n, 30000, torch.Generator().manual_seed(2))
    for row, seen in zip(neg, ({1, 2, 3}, {5, 7})):
        f = _freq(row, n)[1:]
        free = [i - 1 for i in range(1, n + 1) if i not in seen]
        assert f[[i - 1 for i in seen]].sum() == 0
        assert chisquare(f[free]).pvalue > 1e-3


def test_unseen_almost_full_history_and_errors():
    n = 6
    hist = torch.tensor([[1, 2, 3, 4, 5], [2, 3, 4, 5, 6]])  # one free item each: 6 and 1
    neg = samplers.unseen(hist, n, 50, 0, max_rounds=2)  # forces the exact fallback too
    assert (neg[0] == 6).all() and (neg[1] == 1).all()
    with pytest.raises(ValueError):
        samplers.unseen(torch.tensor([[1, 2, 3, 4, 5, 6]]), n, 3, 0)


def test_unseen_seeds_reproduce():
    hist = torch.tensor([[1, 2, 3, 0], [4, 5, 6, 7]])
    a = samplers.unseen(hist, 10, 8, torch.Generator().manual_seed(3))
    b = samplers.unseen(hist, 10, 8, torch.Generator().manual_seed(3))
    c = samplers.unseen(hist, 10, 8, np.random.default_rng(3))
    d = samplers.unseen(hist, 10, 8, np.random.default_rng(3))
    assert torch.equal(a, b) and torch.equal(c, d)


def test_popularity_proportional_to_counts():
    counts = np.array([0, 10, 0, 30, 60, 0])  # index = item id; items 2 and 5 never drawn
    x = samplers.popularity(counts, (50000,), torch.Generator().manual_seed(0))
    assert x.shape == (50000,)
    f = _freq(x, 5)
    assert f[0] == f[2] == f[5] == 0
    expected = counts[[1, 3, 4]] / counts.sum() * len(x)
    assert chisquare(f[[1, 3, 4]], expected).pvalue > 1e-3
    y = samplers.popularity(counts, (2, 3), torch.Generator().manual_seed(0))
    assert y.shape == (2, 3)
    assert torch.equal(samplers.popularity(counts, 20, np.random.default_rng(4)),
                       samplers.popularity(counts, 20, np.random.default_rng(4)))
    with pytest.raises(ValueError):
        samplers.popularity(np.zeros(4), 3, 0)


def test_item_counts():
    df = pd.DataFrame({"history": [[1, 2], [2, 3]], "target": [3, 4]})
    assert samplers.item_counts(df, 5).tolist() == [0, 1, 2, 2, 1, 0]
    assert samplers.item_counts(df, 5, include_history=False).tolist() == [0, 0, 0, 1, 1, 0]
