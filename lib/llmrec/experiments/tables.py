"""The tables of evaluated runs ({name: (run, evaluation)}): metrics per method, each with its interval over
users, and paired intervals against a baseline on the same users."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from .. import runs
from ..core.io import read_json
from ..core.metrics import compare_by_user, entry_values, user_bootstrap


def _row(name: str, run: str | Path, ev: dict) -> dict:
    done = read_json(Path(run) / "done.json")
    return {"method": name, **ev["summary"], "n_users": ev["n_users"],
            "s/step": done["seconds_per_step"], "train_s": done["train_seconds"],
            "eval_s/user": ev["seconds_per_user"]}


def results_table(evals: dict[str, tuple[Path, dict]]) -> pd.DataFrame:
    """One row per method: the evaluation's summary (NDCG/HR@5,10 and MRR, or the mean likelihoods), users,
    seconds per training step and per evaluated user."""
    return pd.DataFrame([_row(name, run, ev) for name, (run, ev) in evals.items()]).set_index("method")


def paired_table(evals: dict[str, tuple[Path, dict]], baseline: str,
                 metrics=("ndcg@5", "ndcg@10", "hr@5", "hr@10")) -> pd.DataFrame:
    """Paired-bootstrap 95% intervals of (method - baseline) on the same windows, resampling users (a user's
    windows together, :func:`llmrec.core.metrics.compare_by_user`); ``verdict`` is resolved, unresolved (the
    interval contains 0) or edge (a bound within the bootstrap's own noise of 0), ``resolved`` True only for
    resolved."""
    base = evals[baseline][1]
    out = []
    for name, (_, ev) in evals.items():
        if name == baseline:
            continue
        for m in metrics:
            b = compare_by_user(base, ev, m)
            out.append({"method": name, "vs": baseline, "metric": m, "diff": b["diff"], "lo": b["lo"], "hi": b["hi"],
                        "n_users": b["n"], "verdict": b["verdict"], "resolved": b["resolved"]})
    return pd.DataFrame(out)


def user_interval(values, users=None) -> tuple[float, float, float]:
    """``(mean, lo, hi)``: the mean of per-window values and its 95% bootstrap interval, resampling users (the
    windows of ``users[i]`` together; None: every window its own user)."""
    v = np.asarray(values, dtype=float)
    b = user_bootstrap(np.zeros_like(v), v, users)
    return b["b"], b["lo"], b["hi"]


def run_facts(run) -> dict:
    """best_epoch, epochs_run, epochs_cap, seconds_total of a run directory (or the dict of a committed result)."""
    if run is None:
        return {}
    if isinstance(run, dict):
        return run
    done = read_json(Path(run) / "done.json")
    return {**done, "epochs_cap": runs.config_of(run).get("epochs")}


def accuracy_table(evals: dict, metrics=("ndcg@10", "hr@10")) -> pd.DataFrame:
    """Per method: each metric with its bootstrap 95% interval over users (:func:`user_interval`), Recall@10
    (= HR@10: one held-out item per user), users, best epoch and training time (from the run's ``done.json``)."""
    out = []
    for name, (run, ev) in evals.items():
        r = {"method": name}
        for m in metrics:
            r[m], r[f"{m} lo"], r[f"{m} hi"] = user_interval(entry_values(ev, m), ev.get("user_ids"))
        r["recall@10"] = r.get("hr@10", np.nan)
        done = run_facts(run)
        r.update(n_users=ev["n_users"], best_epoch=done.get("best_epoch"), epochs_run=done.get("epochs_run"),
                 epochs_cap=done.get("epochs_cap"), train_s=done.get("seconds_total"))
        # a best epoch at the cap: the run may not have reached its plateau
        r["best at cap"] = done.get("best_epoch") is not None and done.get("best_epoch") == done.get("epochs_cap")
        out.append(r)
    return pd.DataFrame(out).set_index("method")
