"""Analysis helpers for the chapters: gradient norms of L1 and L2, weights, logit statistics."""

from __future__ import annotations

import numpy as np
import torch

from . import losses as L


def component_grad_norms(l1: torch.Tensor, l2: torch.Tensor, params) -> dict[str, float]:
    """Norms of the gradients of L1 and L2 (eqs. 3-4) w.r.t. ``params`` (Figure 3).

    Two extra backward passes through the graph (kept for the main backward).
    """
    params = list(params)
    out = {}
    for name, comp in (("grad_norm_l1", l1), ("grad_norm_l2", l2)):
        grads = torch.autograd.grad(comp, params, retain_graph=True, allow_unused=True)
        out[name] = float(torch.sqrt(sum((g.float() ** 2).sum() for g in grads if g is not None)))
    return out


def weights_by_position(v: L.ValidLogits, positions: torch.Tensor, tau: float = 1.0) -> dict[str, np.ndarray]:
    """w(y_t) under LML (softmax over Z) and MSL (softmax over Z_valid), with each token's position t."""
    return {"lml": L.gradient_weights(v, over="all").cpu().numpy(),
            "msl": L.gradient_weights(v, tau=tau).cpu().numpy(),
            "position": positions.cpu().numpy()}


def small_weight_share(w: np.ndarray, position: np.ndarray, threshold: float = 0.1, first: int = 3) -> float:
    """Share of the weights below ``threshold`` that sit in the first ``first`` response tokens (paper: 61%)."""
    small = w < threshold
    return float((small & (position < first)).sum() / max(small.sum(), 1))


def valid_logit_sample(v: L.ValidLogits, standardize: bool = True) -> np.ndarray:
    """Valid-token logits of positions with |Z_valid| > 1, standardised per position (Figure 8)."""
    sel = v.keep & (v.n_valid > 1)
    f, m = v.logits.float()[sel], v.mask[sel]
    if standardize:
        mu = (f * m).sum(1, keepdim=True) / m.sum(1, keepdim=True)
        sd = torch.sqrt(((f - mu) ** 2 * m).sum(1, keepdim=True) / m.sum(1, keepdim=True)).clamp_min(1e-6)
        f = (f - mu) / sd
    return f[m].detach().cpu().numpy()


def normality(x: np.ndarray) -> dict[str, float]:
    """How Gaussian a sample is: skewness, excess kurtosis and the KS distance to the fitted normal."""
    from scipy import stats

    x = np.asarray(x, dtype=float)
    ks = stats.kstest((x - x.mean()) / x.std(), "norm")
    return {"n": int(len(x)), "mean": float(x.mean()), "std": float(x.std()), "skew": float(stats.skew(x)),
            "excess_kurtosis": float(stats.kurtosis(x)), "ks_distance": float(ks.statistic)}
