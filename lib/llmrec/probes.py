"""Probes of trained runs: the trie's valid sets (chapter 01), the LML decomposition and gradient norms
(02), gradient weights (03), valid-logit statistics and the ATS roots (04)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import torch
from scipy import stats

from . import runs
from .core import losses as L
from .core.rundir import read_log
from .data import load_dataset, sample_windows
from .llm.frozen import FrozenBlocks
from .llm.objectives import collate, output_weight, response_hidden, valid_logits
from .llm.trie import ItemTrie


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


def run_valid_logits(run, n_windows: int, split: str = "train", seed: int = 0):
    """``(rec, batch, v)``: valid-token logits (with the full-vocabulary logsumexp) of a trained run on
    ``n_windows`` seeded windows of ``split``; the model is dropped afterwards.

    With LoRA on the top blocks only, the frozen blocks' output comes from the
    run's :class:`~llmrec.llm.frozen.FrozenBlocks` cache (training windows of the run's
    seed are a subset of what it trained on, so they are there already).
    """
    rec = runs.load(run)
    model = rec.model
    batch = real_batch(rec, n_windows, split, seed)
    frozen = FrozenBlocks.of(model, rec.cfg)
    if frozen is not None:
        frozen.attach(batch)
    v = valid_logits_of(model, batch.to(next(model.parameters()).device), full=True)
    rec.model = None
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


def ats_tokenwise(v: L.ValidLogits, eta: float = 0.25, iters: int = 60) -> pd.DataFrame:
    """Eq. (11) position by position (:func:`llmrec.core.losses.solve_tau_tokenwise`) as a table, with both
    roots of the quadratic from each position's own statistics beside the exact tau_t."""
    t = L.solve_tau_tokenwise(v, eta, iters)
    df = pd.DataFrame({"position": response_positions(v.first)[t["selected"]].numpy() if v.first is not None else -1,
                       "n_valid": t["n_valid"].numpy().astype(int), "mu": t["mu"].numpy(),
                       "sigma2": t["sigma2"].numpy(), "delta": t["delta"].numpy(), "top": t["top"].numpy(),
                       "tau numeric": t["tau"].numpy()})
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


# ============================================================================ chapter 02: LML = L1 + L2


def real_batch(rec, n: int = 8, split: str = "train", seed: int = 0):
    """A collated batch of ``n`` seeded windows of ``split``."""
    df = sample_windows(rec.ds.split(split), n, seed=seed)
    return collate(rec.encoder.encode_frame(df), rec.trie, rec.tok.pad_token_id)


def valid_logits_of(model, batch, full: bool = True):
    """Valid-token logits (and the full-vocabulary logsumexp) of a batch, without gradients."""
    with torch.no_grad():
        return valid_logits(model, batch, full=full)


def decomposition_table(rec, model, batch) -> pd.DataFrame:
    """LML, L1, L2 on one batch: the dense teaching version (full logits, -inf mask) beside the fast path."""
    with torch.no_grad():
        h = response_hidden(model, batch)
        logits = h @ output_weight(model).T  # (N, |V|): what the dense version needs
        nodes, _ = rec.trie.response_nodes(batch.items.tolist())
        valid = rec.trie.dense_mask(nodes)[:, : logits.shape[1]]
        dense_lml = L.lml_loss_dense(logits, batch.targets)
        d1, d2 = L.lml_decomposition_dense(logits, valid, batch.targets)
        v = valid_logits_of(model, batch, full=True)
        f1, f2 = L.lml_decomposition(v)
        rows = [("LML (eq. 1)", dense_lml, L.lml_loss(v)), ("L1 (eq. 3)", d1, f1), ("L2 (eq. 4)", d2, f2),
                ("L1 + L2", d1 + d2, f1 + f2), ("MSL, tau = 1", L.msl_loss_dense(logits, valid, batch.targets, drop_singletons=False),
                                               L.msl_loss(v, drop_singletons=False))]
    return pd.DataFrame([{"quantity": n, "dense": float(a), "fast": float(b)} for n, a, b in rows]).set_index("quantity")


def log_frame(run: str | Path) -> pd.DataFrame:
    """The per-step training log of a run as a DataFrame (epoch-end records dropped)."""
    return pd.DataFrame([r for r in read_log(run) if "loss" in r])


def grad_norm_summary(curves: dict[str, Path]) -> pd.DataFrame:
    """Mean gradient norms of L1 and L2 and their ratio per run (Figure 3 in numbers)."""
    out = []
    for name, run in curves.items():
        every = log_frame(run)
        df = every.dropna(subset=["grad_norm_l1", "grad_norm_l2"])
        out.append({"run": name, "logged steps": len(df), "of steps": int(every["step"].max()),
                    "mean |grad L1|": df["grad_norm_l1"].mean(),
                    "mean |grad L2|": df["grad_norm_l2"].mean(),
                    "ratio L1/L2": (df["grad_norm_l1"] / df["grad_norm_l2"]).median()})
    return pd.DataFrame(out).set_index("run")


# ============================================================================ chapter 06: ATS during training


def ats_trace(run) -> tuple[pd.DataFrame, dict]:
    """How ATS set tau in an ``msl-ats`` run, step by step, from its log: the smoothed ``tau`` that trained,
    eq. (12)'s raw root (``nan`` when the quadratic has no positive root), and the batch statistics.

    Returns the per-step frame and a summary: steps without a root (and why: Delta <= 0 means the target's
    logit is below the valid logits' mean, so no temperature brings P_valid up to eta), the first step with
    a root, roots below the lower clamp, and tau at a few steps.
    """
    df = log_frame(run)
    cols = [c for c in ("step", "tau", "ats_tau_raw", "ats_delta", "ats_sigma2", "ats_m", "loss") if c in df]
    df = df[cols].copy()
    raw = df["ats_tau_raw"] = df["ats_tau_raw"].astype(float)  # no root: null in the log (NaN in older logs)
    cfg = runs.config_of(run)
    lo = (cfg.get("ats_clamp") or [np.nan, np.nan])[0]
    has = raw.notna()
    summary = {"steps": len(df), "steps without a root": int((~has).sum()),
               "of which Delta <= 0": int((~has & (df["ats_delta"] <= 0)).sum()) if "ats_delta" in df else None,
               "first step with a root": int(df.loc[has, "step"].iloc[0]) if has.any() else None,
               "roots below the lower clamp": int((raw < lo).sum()), "median raw root": float(raw.median()),
               "ema": cfg.get("ats_ema"), "clamp": cfg.get("ats_clamp"),
               **{f"tau at step {s}": float(df.loc[df["step"] == s, "tau"].iloc[0])
                  for s in (1, len(df) // 4, len(df) // 2, len(df)) if (df["step"] == s).any()}}
    return df, summary
