"""What the chapters run: the canonical runs of a profile (any family), their evaluation, the tables.

A chapter asks for ``llm_run(profile, "lml", dataset)``; the run cache (keyed by
the full configuration) makes every chapter that asks for the same run get the
same trained model, so nothing trains twice within a ``make figures`` batch.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from . import runs
from .core.io import read_json
from .core.metrics import paired_bootstrap, summarize
from .core.profiles import dataset_for
from .core.profiles import profile as profile_sizes
from .core.profiles import sce_grid as sce_grid_values
from .core.profiles import train_config
from .seqrec import MODELS, Popularity


def llm_config(profile: str, loss: str, dataset: str | None = None, device: str | None = None, **overrides) -> dict:
    return train_config(profile, "llm", loss=loss, dataset=dataset_for(profile, dataset), device=device, **overrides)


def llm_run(profile: str, loss: str, dataset: str | None = None, device: str | None = None, progress: bool = True,
            **overrides) -> Path:
    """Train (or find in the run cache) one LLM run of the profile; S-DPO starts from the profile's LML run."""
    if loss == "sdpo" and "sdpo_ref" not in overrides:
        ref_over = {k: v for k, v in overrides.items() if k in ("seed", "lr", "n_train", "layers", "lora_layers")}
        overrides["sdpo_ref"] = str(llm_run(profile, "lml", dataset, device, progress, **ref_over))
    if loss == "sdpo" and "n_train" not in overrides:
        overrides["n_train"] = profile_sizes(profile)["sdpo_n_train"]  # S-DPO's extra windows (None: the profile's)
    return runs.train(llm_config(profile, loss, dataset, device, **overrides), progress=progress)


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
    """Evaluate an LLM run at the profile's sizes (users, beams); cached in the run's metrics.json.

    Validation uses the profile's ``valid_beams`` (quick: 5, so it is judged by NDCG@5, see
    :func:`valid_metric`), the test ``eval_beams`` (10); exact full ranking (``mode="full"``) runs on
    ``exact_users``.
    """
    p = profile_sizes(profile)
    n = p["exact_users"] if mode == "full" else p["valid_users"] if split == "valid" else p["eval_users"]
    beams = p["valid_beams"] if split == "valid" and mode == "beam" else p["eval_beams"]
    return runs.evaluate(run, split=split, mode=mode, n_users=n, k=beams, progress=progress)


def row(name: str, run: str | Path, ev: dict) -> dict:
    done = read_json(Path(run) / "done.json")
    return {"method": name, **ev["summary"], "n_users": ev["n_users"],
            "s/step": done["seconds_per_step"], "train_s": done["train_seconds"],
            "eval_s/user": ev["seconds_per_user"]}


def results_table(evals: dict[str, tuple[Path, dict]]) -> pd.DataFrame:
    """One row per method: NDCG/HR@5,10, MRR, seconds per training step and per evaluated user."""
    return pd.DataFrame([row(name, run, ev) for name, (run, ev) in evals.items()]).set_index("method")


def paired_table(evals: dict[str, tuple[Path, dict]], baseline: str,
                 metrics=("ndcg@5", "ndcg@10", "hr@5", "hr@10")) -> pd.DataFrame:
    """Paired-bootstrap 95% intervals of (method - baseline) on the same users."""
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


def beam_vs_exact(run: str | Path, profile: str, split: str = "test", progress: bool = True) -> pd.DataFrame:
    """Per-user ranks of constrained beam search vs exact full-catalogue ranking on the same users."""
    p = profile_sizes(profile)
    beam = runs.evaluate(run, split, "beam", p["exact_users"], k=p["eval_beams"], progress=progress)
    exact = runs.evaluate(run, split, "full", p["exact_users"], progress=progress)
    return pd.DataFrame({"user_id": beam["user_ids"], "beam rank": beam["ranks"], "exact rank": exact["ranks"],
                         "beam s/user": beam["seconds_per_user"], "exact s/user": exact["seconds_per_user"]})


# ============================================================================ chapter 07: classic models, across families


def seqrec_config(profile: str, dataset: str | None = None, **overrides) -> dict:
    return train_config(profile, "seqrec", dataset=dataset_for(profile, dataset), **overrides)


def run_seqrec(config: dict, split: str = "test", progress: bool = False) -> dict:
    """Train (or find in the run cache) and evaluate one classic configuration on every window: a result row."""
    run = runs.train(config, progress=progress)
    ev = runs.evaluate(run, split, "full", progress=False)
    done = read_json(run / "done.json")
    cfg = runs.config_of(run)
    row = {k: cfg[k] for k in ("dataset", "model", "loss")}
    if cfg["loss"] in ("sampled-softmax", "sce"):
        row.update(K=cfg["negatives"], alpha=cfg["alpha"] if cfg["loss"] == "sce" else 1.0)
    row.update(ev["summary"])
    row.update({k: done.get(k) for k in ("best_epoch", "epochs_run", "seconds_per_epoch", "peak_memory_mb",
                                         "score_matrix_mb")})
    row["run_dir"] = str(run)
    return row


def compare_losses(profile: str, dataset: str, models=MODELS, losses=("ce", "bce", "bpr"), split: str = "test",
                   progress: bool = False, **overrides) -> pd.DataFrame:
    """One row per (model, loss): test metrics, best epoch, seconds per epoch, peak memory."""
    return pd.DataFrame([run_seqrec(seqrec_config(profile, dataset, model=m, loss=l, **overrides), split, progress)
                         for m in models for l in losses])


def sce_grid(profile: str, dataset: str, Ks=None, alphas=None, model: str = "sasrec", split: str = "test",
             progress: bool = False, **overrides) -> pd.DataFrame:
    """SCE over K x alpha (alpha = 1 is sampled softmax); one row per cell."""
    grid = sce_grid_values(profile)
    return pd.DataFrame([run_seqrec(seqrec_config(profile, dataset, model=model, loss="sce", negatives=int(K),
                                                  alpha=float(a), **overrides), split, progress)
                         for K in (Ks or grid["K"]) for a in (alphas or grid["alpha"])])


def popularity_summary(dataset: str, split: str = "test") -> dict:
    """NDCG/HR@5,10 and MRR of ranking every item by its training interactions (the same for every user)."""
    pop = Popularity(dataset)
    df = pop.ds.split(split)
    return summarize(pop.rank(df["history"].tolist(), df["target"].tolist(), "full"))


def cross_family_table(llm: dict[str, Path], seq: dict[str, Path], profile: str, baseline: str,
                       split: str = "test") -> tuple[pd.DataFrame, pd.DataFrame]:
    """LLM runs and classic runs on the LLM runs' users: metrics, and paired intervals vs ``baseline``.

    Every run is evaluated by :func:`llmrec.runs.evaluate` on the same seeded
    users (the LLM runs by beam search, the classic runs by full ranking).
    """
    evals = {name: (run, llm_eval(run, profile, split)) for name, run in llm.items()}
    n = profile_sizes(profile)["eval_users"]
    evals.update({name: (run, runs.evaluate(run, split, "full", n, progress=False)) for name, run in seq.items()})
    table = pd.DataFrame([{"method": m, **ev["summary"], "n_users": ev["n_users"]} for m, (_, ev) in evals.items()])
    return table.set_index("method"), paired_table(evals, baseline)
