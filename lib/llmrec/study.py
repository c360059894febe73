"""What the chapters share: the canonical LLM runs of a profile, their evaluation, tables.

A chapter asks for ``llm_run(profile, "lml", dataset)``; the run cache (keyed by
the full configuration) makes every chapter that asks for the same run get the
same trained model, so nothing trains twice within a ``make figures`` batch.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from . import runs
from .profiles import profile as profile_sizes
from .profiles import train_config


def dataset_for(profile: str, dataset: str | None) -> str:
    """The dataset a profile runs on: ``smoke`` always uses the synthetic catalogue."""
    return "synthetic" if profile == "smoke" else (dataset or profile_sizes(profile)["dataset"])


def llm_config(profile: str, loss: str, dataset: str | None = None, device: str | None = None, **overrides) -> dict:
    return train_config(profile, loss=loss, dataset=dataset_for(profile, dataset), device=device, **overrides)


def llm_run(profile: str, loss: str, dataset: str | None = None, device: str | None = None, progress: bool = True,
            **overrides) -> Path:
    """Train (or find in the run cache) one LLM run of the profile; S-DPO starts from the profile's LML run."""
    from .train import train

    if loss == "sdpo" and "sdpo_ref" not in overrides:
        ref_over = {k: v for k, v in overrides.items() if k in ("seed", "lr", "n_train", "layers", "lora_layers")}
        overrides["sdpo_ref"] = str(llm_run(profile, "lml", dataset, device, progress, **ref_over))
    if loss == "sdpo" and "n_train" not in overrides:
        overrides["n_train"] = profile_sizes(profile)["sdpo_n_train"]  # S-DPO's extra windows (None: the profile's)
    return train(llm_config(profile, loss, dataset, device, **overrides), progress=progress)


def mechanism_run(profile: str, dataset: str | None, device: str | None = None, progress: bool = True,
                  **overrides) -> Path:
    """The LML run the mechanism figures (3, 4, 5, 8) read: the profile's canonical LML run on its own
    dataset; on any other dataset, a run of ``side_steps`` steps where the profile sets them (quick: 32)."""
    ds = dataset_for(profile, dataset)
    side = profile_sizes(profile)["side_steps"]
    if side and ds != dataset_for(profile, None):
        overrides.setdefault("max_steps", side)
    return llm_run(profile, "lml", ds, device, progress=progress, **overrides)


def valid_metric(profile: str) -> str:
    """The metric that chooses on validation: NDCG@10 with 10 validation beams, else NDCG@5 (quick: 5 beams)."""
    return "ndcg@10" if profile_sizes(profile)["valid_beams"] >= 10 else "ndcg@5"


def llm_eval(run: str | Path, profile: str, split: str = "test", mode: str = "beam", progress: bool = True) -> dict:
    """Evaluate a run at the profile's sizes (users, beams); cached in the run's metrics.json.

    Validation uses the profile's ``valid_beams`` (quick: 5, so it is judged by NDCG@5, see
    :func:`valid_metric`), the test and exact ranking ``eval_beams`` (10).
    """
    from .evaluate import evaluate_run

    p = profile_sizes(profile)
    n = p["exact_users"] if mode == "exact" else p["valid_users"] if split == "valid" else p["eval_users"]
    beams = p["valid_beams"] if split == "valid" and mode == "beam" else p["eval_beams"]
    return evaluate_run(run, mode=mode, split=split, n_users=n, beams=beams, progress=progress)


def row(name: str, run: str | Path, ev: dict) -> dict:
    done = runs.read_json(Path(run) / "done.json")
    return {"method": name, **ev["summary"], "n_users": ev["n_users"],
            "s/step": done["seconds_per_step"], "train_s": done["train_seconds"],
            "eval_s/user": ev["seconds_per_user"]}


def results_table(evals: dict[str, tuple[Path, dict]]) -> pd.DataFrame:
    """One row per method: NDCG/HR@5,10, MRR, seconds per training step and per evaluated user."""
    return pd.DataFrame([row(name, run, ev) for name, (run, ev) in evals.items()]).set_index("method")


def paired_table(evals: dict[str, tuple[Path, dict]], baseline: str,
                 metrics=("ndcg@5", "ndcg@10", "hr@5", "hr@10")) -> pd.DataFrame:
    """Paired-bootstrap 95% intervals of (method - baseline) on the same users."""
    from .metrics import paired_bootstrap

    base = evals[baseline][1]
    out = []
    for name, (_, ev) in evals.items():
        if name == baseline:
            continue
        if ev["user_ids"] != base["user_ids"]:
            raise ValueError(f"{name} and {baseline} were evaluated on different users")
        for m in metrics:
            b = paired_bootstrap(base["ranks"], ev["ranks"], m)
            out.append({"method": name, "vs": baseline, "metric": m, "diff": b["diff"], "lo": b["lo"], "hi": b["hi"]})
    return pd.DataFrame(out)


def load_trained(run: str | Path):
    """``(rec, model)`` for a finished run: the Recommender (data, trie, prompts) and the model with its adapter."""
    from .train import Recommender, TrainConfig

    cfg = TrainConfig.from_dict(runs.read_json(Path(run) / "config.json"))
    rec = Recommender(cfg)
    model = rec.load_model(Path(run) / "adapter")
    model.eval()
    return rec, model


def real_batch(rec, n: int = 8, split: str = "train", seed: int = 0):
    """A collated batch of ``n`` seeded windows of ``split``."""
    from .data import sample_windows
    from .train import collate

    df = sample_windows(rec.ds.split(split), n, seed=seed)
    return collate(rec.encoder.encode_frame(df), rec.trie, rec.tok.pad_token_id)


def valid_logits_of(model, batch, full: bool = True):
    """Valid-token logits (and the full-vocabulary logsumexp) of a batch, without gradients."""
    import torch

    from .train import valid_logits

    with torch.no_grad():
        return valid_logits(model, batch, full=full)


# ============================================================================ chapter 02: LML = L1 + L2


def decomposition_table(rec, model, batch) -> pd.DataFrame:
    """LML, L1, L2 on one batch: the dense teaching version (full logits, -inf mask) beside the fast path."""
    import torch

    from . import losses as L
    from .train import output_weight, response_hidden

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
    return pd.DataFrame([r for r in runs.read_log(run) if "loss" in r])


def plot_log_curves(curves: dict[str, Path], columns, smooth: int = 5, title: str = "", logy: bool = False):
    """Step curves of logged columns (e.g. grad_norm_l1/l2, l2, tau) for several runs, with a rolling mean."""
    import matplotlib.pyplot as plt

    columns = [columns] if isinstance(columns, str) else list(columns)
    fig, axes = plt.subplots(1, len(curves), figsize=(5 * len(curves), 3.6), squeeze=False, sharey=False)
    for ax, (name, run) in zip(axes[0], curves.items()):
        df = log_frame(run)
        for c in columns:
            if c in df:  # a column logged every k steps only: its own steps
                d = df[["step", c]].dropna()
                ax.plot(d["step"], d[c].rolling(smooth, min_periods=1).mean(), label=c)
        ax.set(title=name, xlabel="training step")
        if logy:
            ax.set_yscale("log")
        ax.legend()
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def plot_overlay(curves: dict[str, Path], column: str, smooth: int = 5, title: str = ""):
    """One logged column of several runs on one axis (Figure 4: L2 under LML vs L2-only training)."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.5, 3.6))
    for name, run in curves.items():
        df = log_frame(run)
        ax.plot(df["step"], df[column].rolling(smooth, min_periods=1).mean(), label=name)
    ax.set(xlabel="training step", ylabel=column, title=title)
    ax.legend()
    fig.tight_layout()
    return fig


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


# ============================================================================ chapter 05: tau sweep and ablation


def evaluated(profile: str, loss: str, dataset: str | None, device: str | None, splits=("valid", "test"),
              progress: bool = True, **overrides) -> dict:
    """Train (or reuse) a run and evaluate it on ``splits``: {"run", split: evaluation}."""
    run = llm_run(profile, loss, dataset, device, progress=progress, **overrides)
    return {"run": run, **{s: llm_eval(run, profile, s, progress=progress) for s in splits}}


def tau_sweep(profile: str, datasets, taus, device: str | None = None, seed: int = 0,
              progress: bool = True) -> pd.DataFrame:
    """MSL at fixed temperatures (Figure 6), one row per (dataset, tau, split).

    ``score`` is the split's judging metric (``metric``): :func:`valid_metric` on
    valid, NDCG@10 on test; the other columns are the split's full summary.
    """
    out = []
    for ds in datasets:
        for tau in taus:
            e = evaluated(profile, "msl", ds, device, tau=float(tau), seed=seed, progress=progress)
            for split in ("valid", "test"):
                m = valid_metric(profile) if split == "valid" else "ndcg@10"
                out.append({"dataset": ds, "tau": float(tau), "split": split, "metric": m,
                            "score": e[split]["summary"][m], **e[split]["summary"], "run": str(e["run"])})
    return pd.DataFrame(out)


def plot_tau_sweep(sweep: pd.DataFrame, paper: dict | None = None):
    """Figure 6: each split's judging metric against tau, one panel per dataset; the paper's best tau marked."""
    import matplotlib.pyplot as plt

    dss = list(dict.fromkeys(sweep["dataset"]))
    fig, axes = plt.subplots(1, len(dss), figsize=(5 * len(dss), 3.6), squeeze=False)
    for ax, ds in zip(axes[0], dss):
        for split, g in sweep[sweep["dataset"] == ds].groupby("split"):
            ax.plot(g["tau"], g["score"], marker="o", label=f"{split} ({g['metric'].iloc[0].upper()})")
        if paper and ds in paper:
            ax.axvline(paper[ds], color="grey", ls=":", label=f"paper's best tau ({paper[ds]})")
        ax.set(title=ds, xlabel="tau", ylabel="NDCG")
        ax.legend()
    fig.tight_layout()
    return fig


def best_on_valid(sweep: pd.DataFrame, dataset: str, key: str = "tau"):
    """The value of ``key`` with the best validation score (ties: the smallest)."""
    v = sweep[(sweep["dataset"] == dataset) & (sweep["split"] == "valid")].sort_values(["score", key],
                                                                                        ascending=[False, True])
    return v[key].iloc[0]


def ablation_table(profile: str, dataset: str, device: str | None, sweep: pd.DataFrame, lml_taus=(2.0,),
                   lr_factors=(3.0,), seed: int = 0, progress: bool = True) -> pd.DataFrame:
    """Table 6: every variant's score on valid (:func:`valid_metric`) and NDCG@10 on test; tuned values
    are chosen on valid.

    Candidates that lose on validation are not evaluated on test (their test
    cell is empty); rows that choose nothing (MSL + alpha, MSL + ATS) are not
    evaluated on validation.
    """
    from .profiles import train_config

    base_lr = train_config(profile)["lr"]
    vm = valid_metric(profile)
    rows = []

    def add(name, e, note=""):
        rows.append({"method": name, f"valid {vm}": e["valid"]["summary"][vm] if "valid" in e else None,
                     "test ndcg@10": e["test"]["summary"]["ndcg@10"], "test hr@10": e["test"]["summary"]["hr@10"],
                     "chosen": note, "run": str(e["run"])})

    def chosen(cands):
        """The candidate (value, evaluation) best on valid (ties: the first), then evaluated on test."""
        v, e = max(cands, key=lambda c: c[1]["valid"]["summary"][vm])
        if "test" not in e:
            e = {**e, "test": llm_eval(e["run"], profile, "test", progress=progress)}
        return v, e

    lml = evaluated(profile, "lml", dataset, device, seed=seed, progress=progress)
    add("LML", lml)
    t, e = chosen([(1.0, lml)] + [(t, evaluated(profile, "lml-tau", dataset, device, splits=("valid",), tau=float(t),
                                                seed=seed, progress=progress)) for t in lml_taus])
    add("LML + tuning tau", e, f"tau={t}")
    msl1 = evaluated(profile, "msl", dataset, device, tau=1.0, seed=seed, progress=progress)
    add("MSL (w/o tau)", msl1)
    lr, e = chosen([(base_lr, msl1)] + [(base_lr * f, evaluated(profile, "msl", dataset, device, splits=("valid",),
                                                                tau=1.0, lr=base_lr * f, seed=seed, progress=progress))
                                        for f in lr_factors])
    add("MSL + tuning lr", e, f"lr={lr:g}")
    # rows that choose nothing need no validation run
    add("MSL + alpha", evaluated(profile, "msl-alpha", dataset, device, splits=("test",), seed=seed,
                                 progress=progress), "alpha=|Z|/|Z_valid|")
    tau = best_on_valid(sweep, dataset)
    add("MSL + tuning tau", evaluated(profile, "msl", dataset, device, tau=float(tau), seed=seed, progress=progress),
        f"tau={tau}")
    add("MSL (w/ ATS)", evaluated(profile, "msl-ats", dataset, device, splits=("test",), seed=seed,
                                  progress=progress))
    return pd.DataFrame(rows).set_index("method")


# ============================================================================ chapter 06: comparison


def compare_methods(profile: str, dataset: str | None, device: str | None, methods: dict[str, str],
                    seed: int = 0, split: str = "test", progress: bool = True) -> dict[str, tuple[Path, dict]]:
    """{name: (run, evaluation)} for ``methods`` = {name: loss}, all evaluated on the same users."""
    out = {}
    for name, loss in methods.items():
        run = llm_run(profile, loss, dataset, device, progress=progress, seed=seed)
        out[name] = (run, llm_eval(run, profile, split, progress=progress))
    return out


def plot_accuracy_vs_time(evals: dict[str, tuple[Path, dict]], metric: str = "ndcg@10", title: str = ""):
    """Figure 7: the metric against training seconds, with a 95% bootstrap interval per method."""
    import matplotlib.pyplot as plt
    import numpy as np

    from .metrics import per_user

    fig, ax = plt.subplots(figsize=(5.5, 3.8))
    rng = np.random.default_rng(0)
    for name, (run, ev) in evals.items():
        v = per_user(ev["ranks"], metric)
        boots = v[rng.integers(0, len(v), (2000, len(v)))].mean(1)
        lo, hi = np.quantile(boots, [0.025, 0.975])
        t = runs.read_json(Path(run) / "done.json")["train_seconds"]
        ax.errorbar([t], [v.mean()], yerr=[[v.mean() - lo], [hi - v.mean()]], fmt="o", capsize=4, label=name)
    ax.set(xlabel="training time (s)", ylabel=metric, title=title)
    ax.legend()
    fig.tight_layout()
    return fig


def beam_vs_exact(run: str | Path, profile: str, split: str = "test", progress: bool = True) -> pd.DataFrame:
    """Per-user ranks of constrained beam search vs exact full-catalogue ranking on the same users."""
    from .evaluate import evaluate_run
    from .profiles import profile as sizes

    p = sizes(profile)
    n = p["exact_users"]
    beam = evaluate_run(run, mode="beam", split=split, n_users=n, beams=p["eval_beams"], progress=progress)
    exact = evaluate_run(run, mode="exact", split=split, n_users=n, beams=p["eval_beams"], progress=progress)
    return pd.DataFrame({"user_id": beam["user_ids"], "beam rank": beam["ranks"], "exact rank": exact["ranks"],
                         "beam s/user": beam["seconds_per_user"], "exact s/user": exact["seconds_per_user"]})


# ============================================================================ chapter 07: across families


def cross_family_table(llm: dict[str, Path], seq: dict[str, Path], profile: str, baseline: str,
                       split: str = "test") -> tuple[pd.DataFrame, pd.DataFrame]:
    """LLM runs and SASRec-style runs on the LLM runs' users: metrics, and paired intervals vs ``baseline``.

    Sequential models are evaluated on every window of the split; their per-user
    ranks are restricted to the rows the LLM evaluation sampled.
    """
    import numpy as np

    from .metrics import summarize
    from .seqrec import evaluate_seqrec

    evals = {name: (run, llm_eval(run, profile, split)) for name, run in llm.items()}
    rows = next(iter(evals.values()))[1]["rows"]
    for name, run in seq.items():
        full = evaluate_seqrec(run, split=split)
        ranks = np.asarray(full["ranks"], dtype=float)[rows]
        evals[name] = (run, {"ranks": ranks.tolist(), "user_ids": [full["user_ids"][r] for r in rows],
                             "summary": summarize(ranks), "n_users": len(rows)})
    table = pd.DataFrame([{"method": n, **ev["summary"], "n_users": ev["n_users"]} for n, (_, ev) in evals.items()])
    return table.set_index("method"), paired_table(evals, baseline)


def plot_table(table: pd.DataFrame, columns, title: str = ""):
    """Horizontal grouped bars of some numeric columns of a method-indexed table."""
    import matplotlib.pyplot as plt

    ax = table[list(columns)][::-1].plot.barh(figsize=(6.5, 0.45 * len(table) + 1.5))
    ax.set(title=title, xlabel=", ".join(columns) if len(columns) == 1 else "value")
    ax.figure.tight_layout()
    return ax.figure
