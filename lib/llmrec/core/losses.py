"""The loss family.

Two groups:

* **Token losses for an LLM recommender** (MSL paper, equation numbers as
  there). Each comes twice: a plain *dense* version that reads like the paper
  (full-vocabulary logits, a dense boolean mask of Z_valid, ``-inf`` outside it,
  softmax) for the notebooks, and a *fast* version used for training that only
  sees the logits of the valid tokens of every response position
  (:class:`ValidLogits`, built without ever materialising |response| x |V|).
  Tests check that both agree in value and gradient.
* **Item-score losses for classic sequential recommenders** (SCE paper):
  full-softmax CE, BCE, BPR, sampled softmax and Scaled Cross-Entropy.

Reductions: token losses return the mean over counted response positions
(``reduction="mean"``, as Hugging Face training and the authors' code do), the
sum (``"sum"``, the per-sample sums of the paper's equations when given one
sample) or per-position values (``"none"``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.distributed as dist
import torch.nn.functional as F
from scipy.optimize import brentq

__all__ = [
    "ValidLogits", "project_valid", "lml_loss", "lml_decomposition", "msl_loss", "ats_temperature", "ATSController",
    "solve_tau_numeric", "solve_tau_tokenwise", "gradient_weights", "sdpo_loss",
    "lml_loss_dense", "lml_decomposition_dense", "msl_loss_dense",
    "ce_loss", "bce_loss", "bpr_loss", "sampled_softmax_loss", "sce_loss",
]

NEG_INF = float("-inf")


def _reduce(per_pos: torch.Tensor, counted: torch.Tensor | None, reduction: str) -> torch.Tensor:
    if reduction == "none":
        return per_pos if counted is None else per_pos * counted
    if counted is None:
        counted = torch.ones_like(per_pos, dtype=torch.bool)
    total = (per_pos * counted).sum()
    if reduction == "sum":
        return total
    if reduction == "mean":
        return total / counted.sum().clamp_min(1)
    raise ValueError(f"reduction must be 'mean', 'sum' or 'none', got {reduction!r}")


# ============================================================================ dense (teaching) versions
# logits: (N, V) logits at N response positions; valid: (N, V) bool mask of Z_valid(y_<t);
# targets: (N,) the positive token y_t. Positions with target < 0 are padding.


def lml_loss_dense(logits, targets, tau: float = 1.0, reduction: str = "mean"):
    """Eq. (1), optionally tempered: -tau * log softmax_Z(f / tau)(y_t)."""
    keep = targets >= 0
    logp = torch.log_softmax(logits.float() / tau, dim=-1)
    nll = -tau * logp.gather(1, targets.clamp_min(0)[:, None])[:, 0]
    return _reduce(torch.where(keep, nll, 0.0), keep, reduction)


def lml_decomposition_dense(logits, valid, targets, reduction: str = "mean"):
    """Eqs. (3) and (4): L1 = -log(sum_valid e^f / sum_Z e^f), L2 = -log(e^f(y) / sum_valid e^f)."""
    keep = targets >= 0
    f = logits.float()
    lse_all = torch.logsumexp(f, dim=-1)
    lse_valid = torch.logsumexp(f.masked_fill(~valid, NEG_INF), dim=-1)
    f_y = f.gather(1, targets.clamp_min(0)[:, None])[:, 0]
    l1 = torch.where(keep, lse_all - lse_valid, 0.0)
    l2 = torch.where(keep, lse_valid - f_y, 0.0)
    return _reduce(l1, keep, reduction), _reduce(l2, keep, reduction)


def msl_loss_dense(logits, valid, targets, tau: float = 1.0, alpha: float | None = None,
                   drop_singletons: bool = True, reduction: str = "mean"):
    """Eq. (9): -tau * log softmax over Z_valid of f / tau, invalid tokens set to -inf.

    ``alpha`` (Table 6 "MSL + alpha") multiplies the negatives of the denominator:
    alpha = |Z| / |Z_valid| per position when ``alpha="auto"``.
    ``drop_singletons`` leaves positions with |Z_valid| = 1 out of the mean.
    """
    keep = targets >= 0
    f = logits.float() / tau
    f = f.masked_fill(~valid, NEG_INF)
    if alpha is not None:
        n_valid = valid.sum(-1, keepdim=True).float()
        a = (valid.shape[-1] / n_valid) if alpha == "auto" else torch.full_like(n_valid, float(alpha))
        is_neg = valid.clone()
        is_neg[torch.arange(len(f)), targets.clamp_min(0)] = False
        f = torch.where(is_neg, f + torch.log(a), f)
    logp = torch.log_softmax(f, dim=-1)
    nll = -tau * logp.gather(1, targets.clamp_min(0)[:, None])[:, 0]
    counted = keep & (valid.sum(-1) > 1) if drop_singletons else keep
    return _reduce(torch.where(keep, nll, 0.0), counted, reduction)


# ============================================================================ fast versions


@dataclass
class ValidLogits:
    """Logits of the valid tokens of N response positions, padded to K columns.

    ``logits[n, k]`` is f(z) for the k-th token of Z_valid(y_<t) at position n
    (``mask[n, k]`` False for padding columns), ``target_index[n]`` is the column
    of the positive token y_t (-1 for a padding position), ``lse_all[n]`` the
    logsumexp over the whole vocabulary (only needed by LML and L1; None when
    not computed), ``vocab_size`` is |Z|; ``lse_all_tau`` the logsumexp of f / tau over
    the whole vocabulary at the temperature ``full_tau`` (tempered LML; None when not computed).
    """

    logits: torch.Tensor
    mask: torch.Tensor
    target_index: torch.Tensor
    lse_all: torch.Tensor | None = None
    vocab_size: int | None = None
    first: torch.Tensor | None = None  # bool (N,): the first response token of its sample
    lse_all_tau: torch.Tensor | None = None
    full_tau: float = 1.0

    @property
    def keep(self) -> torch.Tensor:
        return self.target_index >= 0

    @property
    def n_valid(self) -> torch.Tensor:
        return self.mask.sum(-1)

    def target_logit(self) -> torch.Tensor:
        return self.logits.gather(1, self.target_index.clamp_min(0)[:, None])[:, 0]

    def masked(self, tau: float | torch.Tensor = 1.0) -> torch.Tensor:
        return (self.logits.float() / tau).masked_fill(~self.mask, NEG_INF)

    def rows(self, sel: torch.Tensor) -> "ValidLogits":
        """The positions ``sel`` (a boolean mask or indices over the N positions) alone."""
        pick = lambda t: None if t is None else t[sel]
        return ValidLogits(self.logits[sel], self.mask[sel], self.target_index[sel], pick(self.lse_all),
                           self.vocab_size, pick(self.first), pick(self.lse_all_tau), self.full_tau)

    @classmethod
    def from_dense(cls, logits, valid, targets) -> "ValidLogits":
        """Compact form of a dense (N, V) problem (for tests and notebooks)."""
        K = int(valid.sum(-1).max())
        order = torch.argsort((~valid).to(torch.int8), dim=-1, stable=True)[:, :K]  # valid ids first, ascending
        mask = valid.gather(1, order)
        tgt = torch.where((order == targets.clamp_min(0)[:, None]) & mask, 1, 0).argmax(-1)
        tgt = torch.where(targets >= 0, tgt, -1)
        return cls(logits.gather(1, order), mask, tgt, torch.logsumexp(logits.float(), -1), logits.shape[-1])


def lml_decomposition(v: ValidLogits, reduction: str = "mean"):
    """Fast eqs. (3)-(4) from valid logits and the full-vocabulary logsumexp."""
    if v.lse_all is None:
        raise ValueError("lml_decomposition needs ValidLogits.lse_all (project with full=True)")
    keep = v.keep
    lse_valid = torch.logsumexp(v.masked(), -1)
    l1 = torch.where(keep, v.lse_all.float() - lse_valid, 0.0)
    l2 = torch.where(keep, lse_valid - v.target_logit().float(), 0.0)
    return _reduce(l1, keep, reduction), _reduce(l2, keep, reduction)


def lml_loss(v: ValidLogits, tau: float = 1.0, reduction: str = "mean"):
    """Fast eq. (1), optionally tempered as :func:`lml_loss_dense`: tau * (lse_Z(f / tau) - f(y_t) / tau).

    At tau = 1 it needs ``v.lse_all`` (project with ``full=True``); at another tau
    ``v.lse_all_tau`` computed at that temperature (``project_valid(..., full_tau=tau)``).
    """
    if tau == 1.0:
        lse = v.lse_all
    else:
        lse = v.lse_all_tau if v.lse_all_tau is not None and v.full_tau == tau else None
    if lse is None:
        raise ValueError(f"lml_loss at tau={tau} needs the whole vocabulary's logsumexp at that temperature "
                         f"(project_valid with full=True{'' if tau == 1.0 else f', full_tau={tau}'})")
    keep = v.keep
    nll = tau * (lse.float() - v.target_logit().float() / tau)
    return _reduce(torch.where(keep, nll, 0.0), keep, reduction)


def msl_loss(v: ValidLogits, tau: float | torch.Tensor = 1.0, alpha: float | str | None = None,
             drop_singletons: bool = True, reduction: str = "mean"):
    """Fast eq. (9) (eq. (5) at tau = 1) on the valid logits only; ``alpha`` as in :func:`msl_loss_dense`."""
    keep = v.keep
    f = v.masked(tau)
    if alpha is not None:
        if alpha == "auto":
            if v.vocab_size is None:
                raise ValueError("alpha='auto' needs ValidLogits.vocab_size")
            a = v.vocab_size / v.n_valid.float()
        else:
            a = torch.full((len(f),), float(alpha), device=f.device)
        is_neg = v.mask.clone()
        is_neg[torch.arange(len(f)), v.target_index.clamp_min(0)] = False
        f = torch.where(is_neg, f + torch.log(a)[:, None], f)
    nll = tau * (torch.logsumexp(f, -1) - f.gather(1, v.target_index.clamp_min(0)[:, None])[:, 0])
    counted = keep & (v.n_valid > 1) if drop_singletons else keep
    return _reduce(torch.where(keep, nll, 0.0), counted, reduction)


def gradient_weights(v: ValidLogits, tau: float = 1.0, over: str = "valid") -> torch.Tensor:
    """Eq. (7)/(10): w(y_t) = 1 - P(y_t) over Z_valid (MSL) or over Z (``over="all"``, LML)."""
    with torch.no_grad():
        if over == "valid":
            lse = torch.logsumexp(v.masked(tau), -1)
        elif over == "all":
            if tau != 1.0 or v.lse_all is None:
                raise ValueError("over='all' needs lse_all and tau = 1")
            lse = v.lse_all.float()
        else:
            raise ValueError(f"over must be 'valid' or 'all', got {over!r}")
        p = torch.exp(v.target_logit().float() / tau - lse)
        return torch.where(v.keep, 1.0 - p, torch.nan)


# ============================================================================ Adaptive Temperature Strategy


def _gather_sums(sums: torch.Tensor) -> torch.Tensor:
    """Sum statistics over processes when torch.distributed is initialised."""
    if dist.is_available() and dist.is_initialized():
        sums = sums.clone()
        dist.all_reduce(sums)
    return sums


def ats_statistics(v: ValidLogits, positions: str = "paper") -> dict[str, float]:
    """mu, sigma^2 of valid-token logits, Delta = mean f(y_t) - mu, and m = mean |Z_valid|.

    ``positions="paper"``: all response positions with |Z_valid| > 1 (eq. 12's
    definition). ``"code"``: the first response token of each sample only (the
    authors' code), marked by ``v.first``.
    """
    with torch.no_grad():
        sel = v.keep & (v.n_valid > 1)
        if positions == "code":
            if v.first is None:
                raise ValueError("positions='code' needs ValidLogits.first (bool per position)")
            sel = sel & v.first
        elif positions != "paper":
            raise ValueError(f"positions must be 'paper' or 'code', got {positions!r}")
        f = v.logits.float()
        m = v.mask & sel[:, None]
        sums = torch.stack([
            m.sum().float(), (f * m).sum(), (f * f * m).sum(),
            sel.sum().float(), (v.target_logit().float() * sel).sum(), (v.n_valid.float() * sel).sum(),
        ])
        n_tok, s1, s2, n_pos, sy, sm = _gather_sums(sums).tolist()
    if n_pos == 0:
        return {"n_positions": 0}
    mu = s1 / n_tok
    var = max(s2 / n_tok - mu * mu, 0.0)
    return {"mu": mu, "sigma2": var, "delta": sy / n_pos - mu, "m": sm / n_pos, "n_positions": int(n_pos)}


def ats_tau_from_stats(delta: float, sigma2: float, m: float, eta: float = 0.25, root: str = "+") -> float:
    """Solve eq. (12), C tau^2 - Delta tau + sigma^2/2 = 0 with C = log(m eta).

    ``root="+"`` is the authors' code, ``"-"`` the root printed in the paper.
    Guards: a negative discriminant is clamped at 0 (as in the code); for C <= 0
    (m eta <= 1) the quadratic has at most one positive root, which is returned
    (C = 0 gives tau = sigma^2 / (2 Delta)); ``nan`` when no positive root exists.
    """
    if root not in {"+", "-"}:
        raise ValueError(f"root must be '+' or '-', got {root!r}")
    C = math.log(m * eta) if m * eta > 0 else -math.inf
    if abs(C) < 1e-12:
        return sigma2 / (2 * delta) if delta > 0 else math.nan
    if not math.isfinite(C):
        return math.nan
    disc = max(delta * delta - 2 * C * sigma2, 0.0)
    sq = math.sqrt(disc)
    if C > 0:
        tau = (delta + sq) / (2 * C) if root == "+" else (delta - sq) / (2 * C)
        return tau if tau > 0 else math.nan
    # C < 0: disc > delta^2, so exactly one root is positive: (delta - sq) / (2C)
    tau = (delta - sq) / (2 * C)
    return tau if tau > 0 else math.nan


def ats_temperature(v: ValidLogits, eta: float = 0.25, root: str = "+", positions: str = "paper",
                    clamp: tuple[float, float] | None = (1.5, 5.0)) -> tuple[float, dict]:
    """ATS (eqs. 11-12, Lemma 2): the global tau that brings P_valid(y_t) near eta.

    Returns (tau, statistics). ``clamp`` bounds tau as the authors' code does
    (None to disable); a nan solution (``statistics["tau_raw"]`` None) falls back to the upper clamp bound (or 1).
    Statistics are all-reduced across processes under torch.distributed.
    """
    st = ats_statistics(v, positions)
    if st["n_positions"] == 0:
        return (clamp[1] if clamp else 1.0), st
    tau = ats_tau_from_stats(st["delta"], st["sigma2"], st["m"], eta, root)
    st["tau_raw"] = None if math.isnan(tau) else tau  # None: no positive root (null in a run's log: JSON has no NaN)
    if math.isnan(tau):
        tau = clamp[1] if clamp else 1.0
    if clamp is not None:
        tau = min(max(tau, clamp[0]), clamp[1])
    return tau, st


class ATSController:
    """Stateful ATS for training: recompute tau every step and smooth it with an EMA.

    tau <- (1 - ema) * tau + ema * tau_hat (``ema=0.05`` as in the authors' code;
    ``ema=1`` uses each step's value). The first step takes tau_hat directly.
    """

    def __init__(self, eta=0.25, root="+", positions="paper", clamp=(1.5, 5.0), ema=0.05):
        self.eta, self.root, self.positions, self.clamp, self.ema = eta, root, positions, clamp, ema
        self.tau: float | None = None
        self.last: dict = {}

    def step(self, v: ValidLogits) -> float:
        tau_hat, self.last = ats_temperature(v, self.eta, self.root, self.positions, self.clamp)
        self.tau = tau_hat if self.tau is None else (1 - self.ema) * self.tau + self.ema * tau_hat
        return self.tau

    def state_dict(self):
        return {"tau": self.tau}

    def load_state_dict(self, s):
        self.tau = s["tau"]


def solve_tau_numeric(v: ValidLogits, eta: float = 0.25, lo: float = 1e-3, hi: float = 1e3) -> float:
    """tau with mean over positions (|Z_valid| > 1) of P_valid(y_t) = eta, by Brent's method.

    ``nan`` when no tau in [lo, hi] reaches eta (e.g. the positive is not the
    largest logit, so P_valid never rises to eta).
    """
    sel = v.keep & (v.n_valid > 1)
    if not bool(sel.any()):
        return math.nan
    f = v.logits.float()[sel].double()
    mask = v.mask[sel]
    ty = v.target_index[sel]

    def gap(tau):
        z = (f / tau).masked_fill(~mask, NEG_INF)
        p = torch.exp(z.gather(1, ty[:, None])[:, 0] - torch.logsumexp(z, -1))
        return float(p.mean()) - eta

    a, b = gap(lo), gap(hi)
    if a * b > 0:
        return math.nan
    return float(brentq(gap, lo, hi, xtol=1e-8))


# ============================================================================ S-DPO


def solve_tau_tokenwise(v: ValidLogits, eta: float = 0.25, iters: int = 60) -> dict[str, torch.Tensor]:
    """Eq. (11) position by position: each position's own |Z_valid|, mu_t, sigma_t^2, Delta_t, and the exact
    tau_t with P_valid(y_t) = eta (bisection on log tau), for the positions with more than one valid token.

    The exact root exists when y_t has the largest valid logit (P_valid falls
    from 1 to 1/|Z_valid| as tau grows) and eta > 1/|Z_valid|; it is nan
    otherwise (``top`` says whether y_t is the largest). ``selected``: the
    positions described, as a mask over ``v``'s rows.
    """
    sel = v.keep & (v.n_valid > 1)
    f, m = v.logits.double()[sel], v.mask[sel]
    n = m.sum(1).double()
    mu = (f * m).sum(1) / n
    var = (((f - mu[:, None]) ** 2) * m).sum(1) / n
    fy = f.gather(1, v.target_index[sel][:, None])[:, 0]
    top = fy >= f.masked_fill(~m, -torch.inf).max(1).values
    ok = top & (eta > 1 / n)
    gap = (f[ok] - fy[ok, None]).masked_fill(~m[ok], -torch.inf)  # <= 0 where a root exists
    lo = torch.full((int(ok.sum()),), math.log(1e-4), dtype=f.dtype)
    hi = torch.full_like(lo, math.log(1e4))
    for _ in range(iters):  # P_valid = 1 / sum exp(gap / tau) falls as tau grows where y_t is the top token
        mid = (lo + hi) / 2
        above = -torch.logsumexp(gap / torch.exp(mid)[:, None], 1) > math.log(eta)
        lo, hi = torch.where(above, mid, lo), torch.where(above, hi, mid)
    tau = torch.full_like(n, torch.nan)
    tau[ok] = torch.exp((lo + hi) / 2)
    return {"selected": sel, "n_valid": n, "mu": mu, "sigma2": var, "delta": fy - mu, "top": top, "tau": tau}


def sdpo_loss(pos_logratio: torch.Tensor, neg_logratios: torch.Tensor, beta: float = 1.0,
              reduction: str = "mean") -> torch.Tensor:
    """S-DPO (Chen et al. 2024): -log sigmoid(-log sum_j exp(beta (r_j - r_p))).

    ``pos_logratio`` (B,) and ``neg_logratios`` (B, J) are r = log pi(y|x) -
    log pi_ref(y|x) of whole item titles. With J = 1 this is DPO.
    """
    z = torch.logsumexp(beta * (neg_logratios - pos_logratio[:, None]), dim=-1)
    per = -F.logsigmoid(-z)
    return _reduce(per, None, reduction)


# ============================================================================ item-score losses (SCE paper)


def ce_loss(scores: torch.Tensor, target: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
    """Full softmax cross-entropy over all items: -s_p + logsumexp_i s_i (PyTorch's fused kernel)."""
    return _reduce(F.cross_entropy(scores.float(), target, reduction="none"), None, reduction)


def sampled_softmax_loss(pos: torch.Tensor, neg: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
    """-log(e^{s_p} / (e^{s_p} + sum_k e^{s_k})) with K sampled negatives ``neg`` (B, K)."""
    return sce_loss(pos, neg, alpha=1.0, reduction=reduction)


def sce_loss(pos: torch.Tensor, neg: torch.Tensor, alpha: float = 100.0, reduction: str = "mean") -> torch.Tensor:
    """Scaled Cross-Entropy: the sampled normalising term multiplied by alpha (log alpha added to negatives)."""
    if alpha <= 0:
        raise ValueError(f"alpha must be positive, got {alpha}")
    logits = torch.cat([pos.float()[:, None], neg.float() + math.log(alpha)], dim=1)
    per = torch.logsumexp(logits, -1) - pos.float()
    return _reduce(per, None, reduction)


def bce_loss(pos: torch.Tensor, neg: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
    """Binary cross-entropy: -log sigmoid(s_p) - sum_k log(1 - sigmoid(s_k))."""
    per = -F.logsigmoid(pos.float()) - F.logsigmoid(-neg.float()).reshape(len(pos), -1).sum(-1)
    return _reduce(per, None, reduction)


def bpr_loss(pos: torch.Tensor, neg: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
    """Bayesian personalised ranking: -mean_k log sigmoid(s_p - s_k)."""
    per = -F.logsigmoid(pos.float()[:, None] - neg.float().reshape(len(pos), -1)).mean(-1)
    return _reduce(per, None, reduction)


# ============================================================================ the fast projection


def project_valid(hidden: torch.Tensor, weight: torch.Tensor, tokens: torch.Tensor, mask: torch.Tensor,
                  target_index: torch.Tensor, full: bool = False, first: torch.Tensor | None = None,
                  full_tau: float = 1.0) -> ValidLogits:
    """Logits of valid tokens only: ``hidden`` (N, d) response states, ``weight`` (|V|, d) the output embedding.

    Gathers the rows of the output embedding for the distinct valid tokens of
    the batch (U of them, U << |V|) and projects onto those alone: N x U work
    instead of N x |V|. ``full=True`` also computes the whole-vocabulary
    logsumexp (LML and L1 need it; MSL does not); with ``full_tau`` != 1 also
    the logsumexp of the logits / ``full_tau`` (tempered LML).
    """
    uniq, inv = torch.unique(tokens[mask], return_inverse=True)
    sub = hidden @ weight[uniq].to(hidden.dtype).T  # (N, U)
    cols = torch.zeros_like(tokens)
    cols[mask] = inv
    logits = sub.gather(1, cols)
    lse_all = lse_tau = None
    if full:
        everything = (hidden @ weight.to(hidden.dtype).T).float()
        lse_all = torch.logsumexp(everything, -1)
        lse_tau = torch.logsumexp(everything / full_tau, -1) if full_tau != 1.0 else None
    return ValidLogits(logits, mask, target_index, lse_all, weight.shape[0], first, lse_tau, float(full_tau))
