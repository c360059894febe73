"""Evaluate an LLM recommender run: beam search, grounding or exact ranking, on a fixed user subset.

Users are a seeded sample of the split's windows (seed 0 whatever the run's seed),
so two runs evaluated on the same split and size are compared user by user.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import torch

from . import runs
from .data import sample_rows
from .metrics import summarize

MODES = ("beam", "exact", "ground")


def rank_users(rec, model, split: str = "test", n_users: int | None = 100, mode: str = "beam", beams: int = 10,
               batch_size: int = 24, progress: bool = False, embed: str = "llm") -> dict:
    """0-based ranks of the targets of ``n_users`` windows of ``split``.

    ``beam``: rank in the constrained beam-search list (``beams`` titles; a miss
    is ``inf``); ``exact``: rank over the whole catalogue by P_valid(y^v|x), ties
    pessimistic; ``ground``: free generation, then the ``beams`` nearest titles
    (``embed``: ``llm`` mean-pooled states or ``minilm``).
    """
    from tqdm.auto import tqdm

    from . import decode

    if mode not in MODES:
        raise ValueError(f"unknown evaluation mode {mode!r}; choose one of {MODES}")
    split_df = rec.ds.split(split)
    rows = sample_rows(len(split_df), n_users, seed=0)  # seed 0 whatever the run: paired across runs
    df = split_df.iloc[rows].reset_index(drop=True)
    prompts = [rec.encoder.prompt_ids(list(h)) for h in df["history"]]
    targets = df["target"].tolist()
    model.eval()
    t0 = time.perf_counter()
    ranks = np.full(len(df), np.inf)
    chunks = [slice(b, b + batch_size) for b in range(0, len(df), batch_size)]
    with torch.no_grad():
        for sl in tqdm(chunks, disable=not progress, desc=f"{mode} ({split}, {len(df)} users)"):
            P, T = prompts[sl], targets[sl]
            if mode == "beam":
                got = [decode.rank_from_beams(res, t)
                       for res, t in zip(decode.beam_search_batch(model, P, rec.trie, num_beams=beams,
                                                                  batch_size=batch_size), T)]
            elif mode == "exact":
                got = decode.exact_ranks(model, P, T, rec.trie, mode="valid")
            else:
                got = [g.items.index(t) if t in g.items else np.inf
                       for g, t in zip(decode.ground_batch(model, rec.tok, P, rec.ds.items, embed=embed, k=beams), T)]
            ranks[sl] = got
    seconds = time.perf_counter() - t0
    return {"user_ids": df["user_id"].tolist(), "rows": rows.tolist(), "targets": targets, "ranks": ranks.tolist(),
            "seconds": seconds, "seconds_per_user": seconds / max(len(df), 1), "mode": mode, "split": split,
            "n_users": len(df), "beams": beams, "summary": summarize(ranks)}


def evaluate_run(run_dir: str | Path, mode: str = "beam", split: str = "test", n_users: int | None = 100,
                 beams: int = 10, progress: bool = True, force: bool = False, embed: str = "llm") -> dict:
    """Evaluate the best adapter of a finished run; cached in ``metrics.json`` under ``split/mode/n/beams``."""
    from .train import Recommender, TrainConfig

    run_dir = Path(run_dir)
    if not runs.is_done(run_dir):
        raise FileNotFoundError(f"{run_dir}: no finished training run here (missing done.json)")
    key = f"{split}/{mode}/n{n_users}/b{beams}" + (f"/{embed}" if mode == "ground" else "")
    cached = runs.load_metrics(run_dir).get(key)
    if cached and not force:
        return cached
    cfg = TrainConfig.from_dict(runs.read_json(run_dir / "config.json"))
    rec = Recommender(cfg)
    model = rec.load_model(run_dir / "adapter")
    out = rank_users(rec, model, split, n_users=n_users, mode=mode, beams=beams, progress=progress,
                     embed=embed)
    runs.save_metrics(run_dir, key, out)
    return out
