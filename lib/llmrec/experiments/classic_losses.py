"""Which loss wins for the classic models (SASRec, GRU4Rec, Caser) on the profile's schedule, and what each
costs (chapter 07): CE against BCE and BPR, sampled softmax and SCE over K x α, popularity as the floor."""

from __future__ import annotations

import pandas as pd

from .. import runs
from ..core.io import read_json
from ..core.metrics import entry_values, mean_interval, summarize
from ..core.profiles import sce_grid as sce_grid_values
from ..seqrec import MODELS, Popularity
from .profile_runs import seqrec_config


def run_seqrec(config: dict, split: str = "test", progress: bool = False) -> dict:
    """Train (or find in the run cache) and evaluate one classic configuration on every window: a result row
    (with the 95% bootstrap interval of NDCG@10 over the windows)."""
    run = runs.train(config, progress=progress)
    ev = runs.evaluate(run, split, "full", progress=False)
    done = read_json(run / "done.json")
    cfg = runs.config_of(run)
    row = {k: cfg[k] for k in ("dataset", "model", "loss")}
    if cfg["loss"] in ("sampled-softmax", "sce"):
        row.update(K=cfg["negatives"], alpha=cfg["alpha"] if cfg["loss"] == "sce" else 1.0)
    row.update(ev["summary"])
    _, row["ndcg@10 lo"], row["ndcg@10 hi"] = mean_interval(entry_values(ev, "ndcg@10"))  # 95%, over windows
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
