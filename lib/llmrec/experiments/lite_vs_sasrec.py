"""Lite-LLM4Rec against SASRec and the generative LLM (chapter 08): its ablations, every run evaluated on every
test window beside popularity, and what ranking costs per user (projection head, beam search, exact ranking)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from .. import runs
from ..core.profiles import dataset_for
from ..core.recommender import evaluate as evaluate_recommender
from ..seqrec import Popularity
from . import published
from .profile_runs import lite_config
from .sasrec_vs_llm import sasrec_plateau


# each ablation changes one thing of the profile's Lite-LLM4Rec configuration
LITE_VARIANTS = {
    "Lite-LLM4Rec": {},
    "no item LLM (item-id embeddings)": {"encoder": "none"},
    "frozen recommendation LLM": {"tune": "frozen"},
    "dot-product head": {"head": "dot"},
    "CE at the last position only": {"positions": "last"},
    "SCE (K 500, α 100)": {"loss": "sce", "negatives": 500, "alpha": 100.0},
    "MiniLM item encoder": {"encoder": "minilm"},
}


def lite_runs(profile: str, dataset: str | None = None, variants: dict | None = None,
              progress: bool = False) -> dict[str, Path]:
    """Train (or find in the run cache) each Lite-LLM4Rec variant: {name: run directory}."""
    variants = LITE_VARIANTS if variants is None else variants
    return {name: runs.train(lite_config(profile, dataset, **over), progress=progress)
            for name, over in variants.items()}


def all_users(named_runs: dict[str, Path | None], split: str = "test", dataset: str | None = None) -> dict:
    """{name: (run, evaluation)} by full ranking on every window of ``split``; a ``None`` run is the
    popularity baseline of ``dataset``."""
    out = {}
    for name, run in named_runs.items():
        if run is None:
            pop = Popularity(dataset)
            out[name] = (None, evaluate_recommender(pop, pop.ds.split(split), "full"))
        else:
            out[name] = (run, runs.evaluate(run, split, "full", progress=False))
    return out


def lite_study(profile: str, dataset: str | None = None, variants: dict | None = None, device: str | None = None,
               seed: int | None = None, **overrides) -> dict:
    """Chapter 08's runs evaluated on every test window: each Lite-LLM4Rec variant, SASRec + CE and SASRec +
    SCE (K 500, α 100) trained to their plateau (patience 5, at most 50 epochs), and popularity:
    {name: (run, evaluation)}."""
    over = {k: v for k, v in dict(device=device, seed=seed).items() if v is not None}
    lite = lite_runs(profile, dataset, {k: {**v, **over, **overrides} for k, v in
                                        (LITE_VARIANTS if variants is None else variants).items()})
    seq = sasrec_plateau(profile, dataset, **over)
    return all_users({**lite, **seq, "popularity": None}, "test", dataset_for(profile, dataset))


def inference_cost(lite_run: str | Path, llm_run: str | Path, split: str = "test", beam_users: int = 16,
                   exact_users: int = 2, beams: int = 10) -> pd.DataFrame:
    """Milliseconds per user to rank, side by side in this process on the same users: the projection head
    (every item scored), constrained beam search (``beams`` beams) and exact ranking of every title by
    P_valid; the head also on every window of the split."""
    lite_rec, llm_rec = runs.load(lite_run), runs.load(llm_run)
    windows = lite_rec.ds.split(split)
    rows = []
    for name, rec, mode, n in (("projection head (Lite-LLM4Rec)", lite_rec, "full", beam_users),
                               (f"constrained beam search ({beams} beams)", llm_rec, "beam", beam_users),
                               ("exact ranking (P_valid of every title)", llm_rec, "full", exact_users),
                               ("projection head, every window", lite_rec, "full", None)):
        ev = evaluate_recommender(rec, windows, mode, n, k=beams)
        rows.append({"method": name, "ms/user": 1000 * ev["seconds_per_user"], "users": ev["n_users"]})
    t = pd.DataFrame(rows).set_index("method")
    beam = t["ms/user"].iloc[1]
    t["time saved vs beam"] = 1 - t["ms/user"] / beam
    return t


def committed_study(folder: str | Path, dataset: str, config: dict, ablations: bool = True, beam_users: int = 16,
                    exact_users: int = 2) -> bool:
    """True when ``folder`` (``results/<profile>/08_lite/``, written by chapter 08 with ``export_results``) holds
    the study these parameters make: the main run's record under its key (``config``, the data and the
    pretrained weights now: :func:`.published.holds_run`; its ablations differ from it by one option each and were
    made in the same batch), a record of every ablation (``ablations``: all of them, as published) and the
    inference cost timed on ``beam_users`` and ``exact_users``. Chapter 08 then shows those tables without
    training (its ``results``)."""
    folder = Path(folder)
    cost = folder / f"{published.slug(dataset)}-inference-cost.json"
    if not (ablations and cost.exists() and published.holds_run(folder, dataset, "Lite-LLM4Rec", config)):
        return False
    if not all((folder / f"{published.slug(dataset)}-{published.slug(n)}.json").exists() for n in LITE_VARIANTS):
        return False
    return list(published.read_table(folder, dataset, "inference-cost")["users"])[:3] == [beam_users, beam_users,
                                                                                          exact_users]
