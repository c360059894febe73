"""Analysis helpers for the chapters: gradient norms of L1 and L2, weights, logit statistics,
the trie's valid sets (chapter 01), gradient weights (03) and the ATS roots (04)."""

from __future__ import annotations

import numpy as np
import pandas as pd
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


# ============================================================================ chapters 01, 03, 04: trie, weights, ATS

# the paper's values quoted by the chapters (MSL paper, LLaMA3 tokenizer)
PAPER_AVT = {"toy": 54.38, "books": 70.90}  # Table 4
PAPER_TRIE_SECONDS = {"toy": 0.38, "books": 0.17}  # Table 7


def response_positions(first: torch.Tensor) -> torch.Tensor:
    """0-based position t of every response token inside its response, from the ``first`` flags."""
    idx = torch.arange(len(first), device=first.device)
    return idx - torch.cummax(torch.where(first, idx, 0), 0).values


def valid_set_sizes(trie, item_ids) -> pd.DataFrame:
    """|Z_valid(y_<t)| and position t of every response token of ``item_ids`` (repeats counted)."""
    nodes, sample = trie.response_nodes(list(item_ids))
    first = torch.ones(len(sample), dtype=torch.bool)
    first[1:] = sample[1:] != sample[:-1]
    return pd.DataFrame({"item": np.asarray(list(item_ids))[sample.numpy()],
                         "position": response_positions(first).numpy(), "n_valid": trie.degree(nodes).numpy()})


def items_below(trie, prefix_ids) -> list[int]:
    """Item ids whose response starts with ``prefix_ids`` (all items for the empty prefix)."""
    if not len(prefix_ids):
        return sorted(trie.sequences)
    return sorted(v[0] for _, v in trie.keys.items(trie._key(prefix_ids)))


def trie_costs(name: str, tok, repeats: int = 3, batch_windows: int = 8, seed: int = 0) -> dict:
    """Build time (tokenisation included, median of ``repeats``), AVT and mask memory of one dataset's trie.

    Dense masks hold one bool byte per (response position, vocabulary token); the compact form is the
    trie's CSR tensors, or for a batch the valid-token lists (int32 ids + an int64 offset per position).
    """
    from .data import load_dataset, sample_windows
    from .trie import ItemTrie

    ds = load_dataset(name)
    secs = []
    for _ in range(repeats):
        trie, s = ItemTrie.timed_build(ds.items, tok)
        secs.append(s)
    sizes = valid_set_sizes(trie, sample_windows(ds.train, batch_windows, seed=seed).target.tolist())
    positions = sum(len(s) for s in trie.sequences.values())
    return {"dataset": name, "items": len(ds.items), "build_s": float(np.median(secs)),
            "paper_build_s": PAPER_TRIE_SECONDS.get(name, np.nan),
            "AVT (train targets)": trie.avt(ds.train.target.tolist()), "AVT (each item once)": trie.avt(),
            "paper_AVT": PAPER_AVT.get(name, np.nan), "tokens per title": positions / len(trie.sequences),
            "vocab": trie.vocab_size, "dense catalogue masks MB": positions * trie.vocab_size / 2**20,
            "trie tensors MB": trie.compact_bytes() / 2**20,
            f"dense batch mask MB ({batch_windows} windows)": len(sizes) * trie.vocab_size / 2**20,
            f"valid lists batch MB ({batch_windows} windows)": (int(sizes.n_valid.sum()) * 4 + len(sizes) * 8) / 2**20}


def plot_valid_set_sizes(sizes: dict[str, pd.DataFrame], max_position: int = 20):
    """Figure for chapter 01: mean and median |Z_valid| by response position, and the cumulative share of
    token instances with |Z_valid| <= k (log x)."""
    import matplotlib.pyplot as plt

    fig, (a, b) = plt.subplots(1, 2, figsize=(11, 4))
    for k, (name, df) in enumerate(sizes.items()):
        by = df[df.position < max_position].groupby("position").n_valid
        a.plot(by.mean().index, by.mean().values, marker="o", color=f"C{k}", label=f"{name}: mean")
        a.plot(by.median().index, by.median().values, ls="--", color=f"C{k}", alpha=0.7, label=f"{name}: median")
        x = np.sort(df.n_valid.to_numpy())
        b.step(x, np.arange(1, len(x) + 1) / len(x), where="post", lw=2, color=f"C{k}",
               label=f"{name} (AVT {x.mean():.1f}, {(x == 1).mean():.0%} singletons)")
    a.set(yscale="log", xlabel="response position t (0 = opening quote)", ylabel="|Z_valid(y_<t)|",
          title="Valid next tokens by position", xticks=range(0, max_position, 2))
    b.set(xscale="log", ylim=(0, 1.02), xlabel="|Z_valid(y_<t)|", ylabel="share of token instances with ≤ x",
          title="Over all training-target tokens")
    a.legend(fontsize=8)
    b.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    return fig


def run_valid_logits(run, n_windows: int, split: str = "train", seed: int = 0):
    """``(rec, batch, v)``: valid-token logits (with the full-vocabulary logsumexp) of a trained run on
    ``n_windows`` seeded windows of ``split``; the model is dropped afterwards.

    With LoRA on the top blocks only, the frozen blocks' output comes from the
    run's :class:`~llmrec.train.FrozenPrefix` cache (training windows of the run's
    seed are a subset of what it trained on, so they are there already).
    """
    from . import study
    from .train import FrozenPrefix

    rec, model = study.load_trained(run)
    batch = study.real_batch(rec, n_windows, split, seed)
    frozen = FrozenPrefix.of(model, rec.cfg)
    if frozen is not None:
        frozen.attach(batch)
    v = study.valid_logits_of(model, batch.to(next(model.parameters()).device), full=True)
    del model
    return rec, batch, L.ValidLogits(*(x.cpu() if torch.is_tensor(x) else x for x in
                                       (v.logits, v.mask, v.target_index, v.lse_all, v.vocab_size, v.first)))


def weight_frame(v: L.ValidLogits, tau: float = 1.0) -> pd.DataFrame:
    """One row per response token: position t, |Z_valid|, w(y_t) under LML (over Z) and MSL (over Z_valid)."""
    w = weights_by_position(v, response_positions(v.first), tau)
    df = pd.DataFrame({"position": w["position"], "n_valid": v.n_valid.cpu().numpy(), "w_lml": w["lml"],
                       "w_msl": w["msl"]})
    return df[v.keep.cpu().numpy()].reset_index(drop=True)


def small_weight_table(frame: pd.DataFrame, threshold: float = 0.1, first: int = 3) -> pd.DataFrame:
    """For LML and MSL weights, all tokens and tokens with |Z_valid| > 1: how many weights are below
    ``threshold`` and which share of them sits in the first ``first`` response tokens
    (:func:`small_weight_share`; the paper's 61%), next to the share of all tokens that sit there."""
    rows = []
    for subset, df in (("all tokens", frame), ("|Z_valid| > 1", frame[frame.n_valid > 1])):
        for loss in ("lml", "msl"):
            w, pos = df[f"w_{loss}"].to_numpy(), df.position.to_numpy()
            rows.append({"weights": loss.upper(), "tokens": subset, "n": len(w),
                         f"w < {threshold}": int((w < threshold).sum()),
                         f"share of small w in first {first}": small_weight_share(w, pos, threshold, first),
                         f"share of all tokens in first {first}": float((pos < first).mean()) if len(w) else np.nan,
                         "mean w": float(np.mean(w)) if len(w) else np.nan})
    return pd.DataFrame(rows)


def plot_sorted_weights(frame: pd.DataFrame, threshold: float = 0.1, first: int = 3):
    """Figure 5: the weights of a batch sorted in descending order, LML vs MSL; and MSL's by position."""
    import matplotlib.pyplot as plt

    fig, (a, b) = plt.subplots(1, 2, figsize=(11, 4))
    for loss in ("lml", "msl"):
        w = np.sort(frame[f"w_{loss}"].to_numpy())[::-1]
        a.plot(np.arange(len(w)), w, lw=2, label=f"{loss.upper()} (mean {w.mean():.2f})")
    a.axhline(threshold, color="grey", ls=":", lw=1)
    a.set(xlabel="response tokens of the batch, sorted", ylabel="w(y_t) = 1 - P(y_t)", ylim=(-0.02, 1.02),
          title="Gradient weights of one batch (Figure 5)")
    a.legend()
    multi = frame[frame.n_valid > 1]
    top = int(min(multi.position.max() + 1 if len(multi) else 1, 12))
    data = [multi.w_msl[multi.position == t].to_numpy() for t in range(top)]
    b.boxplot([d if len(d) else [np.nan] for d in data], positions=range(top), widths=0.6, showfliers=False)
    for t, d in enumerate(data):
        b.scatter(np.full(len(d), t) + np.random.default_rng(t).uniform(-0.2, 0.2, len(d)), d, s=6, alpha=0.4)
    b.axhline(threshold, color="grey", ls=":", lw=1)
    b.axvspan(-0.5, first - 0.5, color="C1", alpha=0.08)
    b.set(xlabel="response position t (|Z_valid| > 1 only)", ylabel="MSL w(y_t)", ylim=(-0.02, 1.02),
          title="MSL weights by position")
    fig.tight_layout()
    return fig


def pick_position(v: L.ValidLogits, min_valid: int = 5, first: int = 3) -> int:
    """Row of the smallest MSL weight among the first ``first`` tokens with |Z_valid| >= ``min_valid``
    (falls back to any position with the largest |Z_valid|)."""
    w = L.gradient_weights(v).cpu()
    sel = v.keep.cpu() & (v.n_valid.cpu() >= min_valid) & (response_positions(v.first.cpu()) < first)
    if not bool(sel.any()):
        return int(torch.where(v.keep.cpu(), v.n_valid.cpu(), -1).argmax())
    return int(torch.where(sel, w, torch.inf).argmin())


def position_probs(v: L.ValidLogits, row: int, tau: float = 1.0) -> pd.DataFrame:
    """The valid tokens of one position: column, logit, P_valid at ``tau`` and whether it is y_t (by logit)."""
    m = v.mask[row].cpu()
    f = v.logits[row].float().cpu()[m]
    p = torch.softmax(f / tau, -1)
    col = torch.arange(len(m))[m]
    df = pd.DataFrame({"column": col.numpy(), "logit": f.numpy(), "p_valid": p.numpy(),
                       "is_target": (col == int(v.target_index[row])).numpy()})
    return df.sort_values("logit", ascending=False).reset_index(drop=True)


# ---------------------------------------------------------------------------- ATS (chapter 04)


def select_positions(v: L.ValidLogits, sel: torch.Tensor) -> L.ValidLogits:
    """The rows ``sel`` (bool or indices) of a ValidLogits."""
    pick = (lambda x: x[sel] if x is not None else None)
    return L.ValidLogits(v.logits[sel], v.mask[sel], v.target_index[sel], pick(v.lse_all), v.vocab_size, pick(v.first))


def mean_p_valid(v: L.ValidLogits, tau: float) -> float:
    """Mean over positions with |Z_valid| > 1 of P_valid(y_t) at temperature ``tau`` (what ATS targets)."""
    sel = v.keep & (v.n_valid > 1)
    return float((1.0 - L.gradient_weights(v, tau=tau))[sel].double().mean())


def gaussian_p_valid(delta: float, sigma2: float, m: float, tau) -> np.ndarray:
    """The Gaussian approximation behind eq. (12): P_valid(y_t) ~ exp(Delta/tau - sigma^2/(2 tau^2)) / m."""
    tau = np.asarray(tau, dtype=float)
    return np.exp(delta / tau - sigma2 / (2 * tau ** 2)) / m


def ats_root_table(v: L.ValidLogits, etas=(0.1, 0.25, 0.5)) -> pd.DataFrame:
    """Both roots of eq. (12) under the paper's statistics (all positions with |Z_valid| > 1) and the
    authors' code variant (first response tokens only), against the numerical root; the mean P_valid
    (all positions with |Z_valid| > 1) each tau actually gives. Unclamped."""
    tau_num = {eta: L.solve_tau_numeric(v, eta) for eta in etas}
    first_only = select_positions(v, v.first)
    rows = []
    for positions in ("paper", "code"):
        st = L.ats_statistics(v, positions)
        if st["n_positions"] == 0:
            continue
        for eta in etas:
            plus = L.ats_tau_from_stats(st["delta"], st["sigma2"], st["m"], eta, "+")
            minus = L.ats_tau_from_stats(st["delta"], st["sigma2"], st["m"], eta, "-")
            num = tau_num[eta]
            rows.append({"statistics": positions, "eta": eta, "n_positions": st["n_positions"], "mu": st["mu"],
                         "sigma2": st["sigma2"], "delta": st["delta"], "m": st["m"],
                         "C = log(m eta)": np.log(st["m"] * eta),
                         "discriminant": st["delta"] ** 2 - 2 * np.log(st["m"] * eta) * st["sigma2"],
                         "tau (+)": plus, "tau (-)": minus, "tau numeric": num,
                         "tau numeric, same positions":
                             num if positions == "paper" else L.solve_tau_numeric(first_only, eta),
                         "(+) / numeric": plus / num, "(-) / numeric": minus / num,
                         "P_valid at (+)": mean_p_valid(v, plus) if np.isfinite(plus) else np.nan,
                         "P_valid at (-)": mean_p_valid(v, minus) if np.isfinite(minus) else np.nan})
    return pd.DataFrame(rows)


def plot_ats_roots(vs: dict[str, L.ValidLogits], tables: dict[str, pd.DataFrame], eta: float = 0.25,
                   taus=np.logspace(-1.3, 2.3, 60)):
    """Mean P_valid(y_t) against tau (exact, and eq. 12's Gaussian approximation) with eq. 12's roots."""
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(vs), figsize=(5.5 * len(vs), 4), squeeze=False)
    for ax, (name, v) in zip(axes[0], vs.items()):
        multi = select_positions(v, v.keep & (v.n_valid > 1))
        ax.plot(taus, [mean_p_valid(multi, t) for t in taus], lw=2, color="k", label="exact mean P_valid")
        t = tables[name]
        for k, positions in enumerate(t.statistics.unique()):
            rows = t[t.statistics == positions]
            r = rows.iloc[int(np.argmin(np.abs(rows.eta.to_numpy() - eta)))]
            ax.plot(taus, gaussian_p_valid(r["delta"], r["sigma2"], r["m"], taus), ls="--", color=f"C{k}",
                    label=f"Gaussian approx. ({positions} statistics)")
            real = r["discriminant"] >= 0
            for root, mk in (("+", "o"), ("-", "x")):
                tr = r[f"tau ({root})"]
                if np.isfinite(tr):
                    ax.plot([tr], [eta], marker=mk, ms=9, ls="none", color=f"C{k}", mew=2, alpha=1 if real else 0.5,
                            label=f"{positions} root ({root}) = {tr:.2f}" + ("" if real else " (discriminant < 0)"))
        num = t["tau numeric"].iloc[int(np.argmin(np.abs(t.eta.to_numpy() - eta)))]
        if np.isfinite(num):
            ax.axvline(num, color="k", ls=":", label=f"numeric root = {num:.2f}")
        ax.axhline(eta, color="grey", lw=1)
        ax.set(xscale="log", ylim=(0, 1), xlabel="tau", ylabel="mean P_valid(y_t)", title=f"{name}: eta = {eta}")
        ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def plot_logit_histograms(samples: dict[str, np.ndarray], bins: int = 80):
    """Figure 8: standardised valid-token logits with the fitted Gaussian, one panel per dataset."""
    import matplotlib.pyplot as plt
    from scipy import stats

    fig, axes = plt.subplots(1, len(samples), figsize=(5.5 * len(samples), 4), squeeze=False)
    for ax, (name, x) in zip(axes[0], samples.items()):
        mu, sd = stats.norm.fit(x)
        nm = normality(x)
        ax.hist(x, bins=bins, density=True, alpha=0.6, label=f"{len(x):,} valid-token logits")
        grid = np.linspace(x.min(), x.max(), 300)
        ax.plot(grid, stats.norm.pdf(grid, mu, sd), lw=2, color="C3",
                label=f"N({mu:.2f}, {sd:.2f}²)\nskew {nm['skew']:.2f}, ex. kurt. {nm['excess_kurtosis']:.2f}\n"
                      f"KS distance {nm['ks_distance']:.3f}")
        ax.set(xlabel="logit, standardised per position", ylabel="density", title=name)
        ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def ats_tokenwise(v: L.ValidLogits, eta: float = 0.25, iters: int = 60) -> pd.DataFrame:
    """Eq. (11) position by position: each position's own mu_t, sigma_t^2, Delta_t and |Z_valid|, both
    roots, and the exact tau_t with P_valid(y_t) = eta (bisection on log tau). The exact root exists when
    y_t has the largest valid logit (P_valid falls from 1 to 1/|Z_valid| as tau grows) and
    eta > 1/|Z_valid|; it is nan otherwise."""
    sel = v.keep & (v.n_valid > 1)
    f, m = v.logits.double()[sel], v.mask[sel]
    n = m.sum(1).double()
    mu = (f * m).sum(1) / n
    var = (((f - mu[:, None]) ** 2) * m).sum(1) / n
    fy = f.gather(1, v.target_index[sel][:, None])[:, 0]
    top = fy >= f.masked_fill(~m, -torch.inf).max(1).values
    ok = top & (eta > 1 / n)
    gap = (f[ok] - fy[ok, None]).masked_fill(~m[ok], -torch.inf)  # <= 0 where a root exists
    lo = torch.full((int(ok.sum()),), np.log(1e-4), dtype=f.dtype)
    hi = torch.full_like(lo, np.log(1e4))
    for _ in range(iters):  # P_valid = 1 / sum exp(gap / tau) falls as tau grows where y_t is the top token
        mid = (lo + hi) / 2
        above = -torch.logsumexp(gap / torch.exp(mid)[:, None], 1) > np.log(eta)
        lo, hi = torch.where(above, mid, lo), torch.where(above, hi, mid)
    tau_num = torch.full_like(n, torch.nan)
    tau_num[ok] = torch.exp((lo + hi) / 2)
    df = pd.DataFrame({"position": response_positions(v.first)[sel].numpy() if v.first is not None else -1,
                       "n_valid": n.numpy().astype(int), "mu": mu.numpy(), "sigma2": var.numpy(),
                       "delta": (fy - mu).numpy(), "top": top.numpy(),
                       "tau numeric": tau_num.numpy()})
    C = np.log(df.n_valid * eta)
    df["discriminant"] = df.delta ** 2 - 2 * C * df.sigma2
    for root in "+-":
        df[f"tau ({root})"] = [L.ats_tau_from_stats(d, s2, k, eta, root)
                               for d, s2, k in zip(df.delta, df.sigma2, df.n_valid.astype(float))]
    return df


def ats_tokenwise_summary(v: L.ValidLogits, etas=(0.1, 0.25, 0.5)) -> pd.DataFrame:
    """Per eta: positions with an exact tau_t, those where eq. (11) has two distinct positive roots, and on
    positions with both, how far each root is from the exact tau_t (median |tau / tau_exact - 1|) and how
    often the '+' root is the closer one."""
    rows = []
    for eta in etas:
        d = ats_tokenwise(v, eta)
        both = d[np.isfinite(d["tau numeric"]) & (d.discriminant > 0) & np.isfinite(d["tau (-)"])
                 & (np.log(d.n_valid * eta) > 0)]
        err = {r: np.abs(both[f"tau ({r})"] / both["tau numeric"] - 1) for r in "+-"}
        rows.append({"eta": eta, "positions": len(d), "with exact tau_t": int(np.isfinite(d["tau numeric"]).sum()),
                     "two roots and exact": len(both),
                     "median |(+)/exact - 1|": float(np.median(err["+"])) if len(both) else np.nan,
                     "median |(-)/exact - 1|": float(np.median(err["-"])) if len(both) else np.nan,
                     "(+) closer": float((err["+"] < err["-"]).mean()) if len(both) else np.nan})
    return pd.DataFrame(rows)
