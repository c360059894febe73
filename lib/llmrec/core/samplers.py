"""Negative samplers for the classic sequential recommenders (seeded, vectorised).

Item ids are ``1..n_items``; ``0`` is padding and is never sampled.

Every sampler takes a ``generator``: a :class:`torch.Generator` (the fast path
used in training), a :class:`numpy.random.Generator`, an ``int`` seed or
``None`` (torch's global RNG). The same generator state gives the same draws.
Results are ``torch.long`` tensors (on the generator's device for a torch
generator, else on CPU).

* :func:`uniform`: uniform over all items (what the SCE authors use for the
  sampled softmax / SCE negatives; a negative may equal the positive).
* :func:`unseen`: uniform over the items a user has *not* interacted with
  (history + target), by vectorised rejection resampling (BCE / BPR as in the
  original SASRec code).
* :func:`popularity`: proportional to training counts (:func:`item_counts`).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch

from .tensors import pad_sequences

__all__ = ["uniform", "unseen", "popularity", "item_counts", "as_generator", "sample_rows"]

Gen = torch.Generator | np.random.Generator | int | None


def as_generator(generator: Gen, device: str | torch.device = "cpu") -> torch.Generator | np.random.Generator | None:
    """An ``int`` becomes a seeded :class:`torch.Generator`; other values pass through."""
    if isinstance(generator, (int, np.integer)) and not isinstance(generator, bool):
        g = torch.Generator(device=device)
        g.manual_seed(int(generator))
        return g
    if generator is None or isinstance(generator, (torch.Generator, np.random.Generator)):
        return generator
    raise TypeError(f"generator must be a torch.Generator, numpy Generator, int seed or None, got {type(generator)}")


def _device(gen) -> torch.device:
    return gen.device if isinstance(gen, torch.Generator) else torch.device("cpu")


def _randint(low: int, high: int, shape, gen) -> torch.Tensor:
    """Integers in [low, high) drawn from ``gen``."""
    shape = tuple(shape) if isinstance(shape, (tuple, list, torch.Size)) else (int(shape),)
    if isinstance(gen, np.random.Generator):
        return torch.from_numpy(gen.integers(low, high, size=shape, dtype=np.int64))
    return torch.randint(low, high, shape, generator=gen, device=_device(gen) if gen is not None else "cpu")


def _rand(shape, gen) -> torch.Tensor:
    """Float64 uniforms in [0, 1) drawn from ``gen``."""
    shape = tuple(shape) if isinstance(shape, (tuple, list, torch.Size)) else (int(shape),)
    if isinstance(gen, np.random.Generator):
        return torch.from_numpy(gen.random(size=shape))
    return torch.rand(shape, generator=gen, dtype=torch.float64, device=_device(gen) if gen is not None else "cpu")


# ----------------------------------------------------------------------------- uniform


def uniform(n_items: int, shape, generator: Gen = None) -> torch.Tensor:
    """Items drawn uniformly from ``1..n_items`` (with replacement), of the given shape."""
    if n_items < 1:
        raise ValueError(f"n_items must be >= 1, got {n_items}")
    return _randint(1, n_items + 1, shape, as_generator(generator))


# ----------------------------------------------------------------------------- unseen


def _as_matrix(histories) -> torch.Tensor:
    """A (B, L) long tensor from a padded tensor/array, or a sequence of lists/sets right-padded with 0."""
    if isinstance(histories, torch.Tensor):
        return histories.long()
    if isinstance(histories, np.ndarray) and histories.dtype != object:
        return torch.from_numpy(histories.astype(np.int64, copy=False))
    ids, _ = pad_sequences([sorted(h) if isinstance(h, (set, frozenset)) else list(h) for h in histories], 0)
    return ids if ids.shape[1] else torch.zeros((len(ids), 1), dtype=torch.long)


def _is_member(sorted_hist: torch.Tensor, cand: torch.Tensor) -> torch.Tensor:
    """cand[b, j] in sorted_hist[b, :] (rows sorted ascending), by batched binary search."""
    pos = torch.searchsorted(sorted_hist, cand)
    return sorted_hist.gather(1, pos.clamp_max(sorted_hist.shape[1] - 1)) == cand


def unseen(histories, n_items: int, k: int, generator: Gen = None, max_rounds: int = 64) -> torch.Tensor:
    """(B, k) items drawn uniformly from the items *not* in each row of ``histories``.

    ``histories``: a (B, L) tensor/array padded with 0 (pass history + target),
    or a sequence of B lists/sets of item ids. Draws uniformly over all items,
    then redraws only the rejected entries (all at once) until none is left;
    after ``max_rounds`` rounds the few remaining entries (users who have seen
    almost the whole catalogue) are drawn exactly from their complement.
    Raises ``ValueError`` when a user has seen every item.
    """
    gen = as_generator(generator)
    hist = _as_matrix(histories)
    dev = _device(gen) if isinstance(gen, torch.Generator) else hist.device
    hist = hist.to(dev)
    B = hist.shape[0]
    if B == 0:
        return torch.zeros((0, k), dtype=torch.long, device=dev)
    sorted_hist = torch.sort(hist, dim=1).values
    # number of distinct seen items per row (ids in 1..n_items)
    valid = (sorted_hist >= 1) & (sorted_hist <= n_items)
    distinct = valid.clone()
    distinct[:, 1:] &= sorted_hist[:, 1:] != sorted_hist[:, :-1]
    if bool((distinct.sum(1) >= n_items).any()):
        raise ValueError("a user has interacted with every item: no unseen negative exists")
    out = uniform(n_items, (B, k), gen).to(dev)
    bad = _is_member(sorted_hist, out)
    rounds = 0
    while bool(bad.any()) and rounds < max_rounds:
        rows, cols = bad.nonzero(as_tuple=True)
        cand = uniform(n_items, (len(rows),), gen).to(dev)
        out[rows, cols] = cand
        bad[rows, cols] = _is_member(sorted_hist[rows], cand[:, None])[:, 0]
        rounds += 1
    if bool(bad.any()):  # rare: exact draw from the complement of each affected row
        for r in bad.any(1).nonzero()[:, 0].tolist():
            seen = torch.zeros(n_items + 1, dtype=torch.bool, device=dev)
            seen[sorted_hist[r][valid[r]]] = True
            seen[0] = True
            free = (~seen).nonzero()[:, 0]
            cols = bad[r].nonzero()[:, 0]
            out[r, cols] = free[_randint(0, len(free), (len(cols),), gen).to(dev)]
    return out


# ----------------------------------------------------------------------------- popularity


def item_counts(frames, n_items: int, include_history: bool = True) -> np.ndarray:
    """Interaction counts indexed by item id (length ``n_items + 1``, ``counts[0] = 0``).

    ``frames``: one window DataFrame or several; counts every target and, with
    ``include_history``, every history entry (windows of one user overlap, so
    an interaction is counted once per window that contains it).
    """
    if isinstance(frames, pd.DataFrame):
        frames = [frames]
    counts = np.zeros(n_items + 1, dtype=np.int64)
    for df in frames:
        counts += np.bincount(df["target"].to_numpy(np.int64), minlength=n_items + 1)[: n_items + 1]
        if include_history and len(df):
            flat = np.concatenate([np.asarray(h, dtype=np.int64) for h in df["history"]])
            counts += np.bincount(flat, minlength=n_items + 1)[: n_items + 1]
    counts[0] = 0
    return counts


def popularity(counts, shape, generator: Gen = None, smoothing: float = 0.0) -> torch.Tensor:
    """Items drawn with probability proportional to ``counts[i] + smoothing`` (index = item id).

    ``counts`` has length ``n_items + 1``; entry 0 (padding) is ignored. Inverse
    CDF sampling (float64 cumulative sums + binary search): items with zero
    weight are never drawn.
    """
    gen = as_generator(generator)
    w = torch.as_tensor(np.asarray(counts, dtype=np.float64) if not isinstance(counts, torch.Tensor) else counts,
                        dtype=torch.float64).clone()
    if w.ndim != 1 or len(w) < 2:
        raise ValueError("counts must be a 1-D array indexed by item id (length n_items + 1)")
    if bool((w < 0).any()):
        raise ValueError("counts must be non-negative")
    w[1:] += smoothing
    w[0] = 0.0
    total = float(w.sum())
    if total <= 0:
        raise ValueError("counts are all zero: nothing to sample")
    cdf = torch.cumsum(w, 0)
    u = _rand(shape, gen) * total
    cdf = cdf.to(u.device)
    idx = torch.searchsorted(cdf, u.reshape(-1), right=True).clamp_max(len(w) - 1)
    return idx.reshape(u.shape).long()


# ----------------------------------------------------------------------------- rows


def sample_rows(n_total: int, n: int | None, seed: int = 0) -> np.ndarray:
    """Sorted positions of a reproducible sample of ``n`` of ``n_total`` rows (all when ``n`` is None or too large).

    The first ``n`` of one seeded permutation: samples of one seed are nested, so
    a smaller sample reuses a larger one's cached work (frozen states, users).
    """
    if n is None or n >= n_total:
        return np.arange(n_total)
    if n <= 0:
        raise ValueError(f"sample size must be positive, got n={n}")
    return np.sort(np.random.default_rng(seed).permutation(n_total)[:n])
