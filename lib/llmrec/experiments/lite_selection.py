"""Lite-LLM4Rec's settings chosen on validation (issue 25, item 4): a small grid of the recommendation LLM's
blocks and the learning rate, each run trained to its plateau (early stopping on validation NDCG@10, the epoch
cap the profile's) and the grid point with the best validation NDCG@10 chosen; the test split is never read.

    python -m llmrec select-lite --profile paper --device cuda

Every run goes through the run cache (:func:`llmrec.runs.train`), so an interrupted selection resumes where it
stopped (a finished run is reused, an interrupted one resumed from its checkpoint) and the same command twice
trains nothing. The result (each grid point's validation NDCG@10, best epoch, epochs run and seconds per epoch,
and the choice: its blocks, learning rate and the epochs it ran) is written to
``results/<profile>/lite_selection.json``. The ``paper`` profile's Lite settings are not yet chosen this way
(no GPU has run it); :data:`GRID` is sized for one GPU: 3 x 3 runs of at most 50 epochs.
"""

from __future__ import annotations

import itertools
from pathlib import Path

from .. import runs
from ..core.io import read_json, repo_root, write_json
from .profile_runs import lite_config

GRID = {"rec_layers": (2, 8, 30), "lr": (1e-4, 3e-4, 1e-3)}  # the paper's 30 blocks against fewer; lr around 1e-3


def select_lite(profile: str, dataset: str | None = None, device: str | None = None, grid: dict | None = None,
                out: str | Path | None = None, progress: bool = True, **overrides) -> dict:
    """Train (or find) one Lite-LLM4Rec run per point of ``grid`` ({option: values}, default :data:`GRID`) at
    ``profile``'s settings (with ``overrides``) and choose the one with the best validation NDCG@10 (the first on a tie); write the
    result to ``out`` (default ``results/<profile>/lite_selection.json``) and return it."""
    grid = dict(grid or GRID)
    over = {**overrides, **({"device": device} if device else {})}
    rows = []
    for point in itertools.product(*grid.values()):
        chosen = dict(zip(grid, point))
        cfg = lite_config(profile, dataset, **over, **chosen)
        run = runs.train(cfg, progress=progress)
        done = read_json(Path(run) / "done.json")
        rows.append({**chosen, "run": Path(run).name, "valid_ndcg@10": done["best_valid_ndcg@10"],
                     "best_epoch": done["best_epoch"], "epochs_run": done["epochs_run"],
                     "seconds_per_epoch": done["seconds_per_epoch"]})
    best = max(rows, key=lambda r: r["valid_ndcg@10"])  # max keeps the first of equals
    result = {"profile": profile, "dataset": cfg["dataset"], "device": cfg.get("device"),
              "grid": {k: list(v) for k, v in grid.items()},
              "epoch_cap": cfg["epochs"], "patience": cfg.get("patience"), "runs": rows,
              "chosen": {**{k: best[k] for k in grid}, "epochs": best["epochs_run"], "best_epoch": best["best_epoch"],
                         "valid_ndcg@10": best["valid_ndcg@10"]}}
    write_json(Path(out) if out else repo_root() / "results" / profile / "lite_selection.json", result)
    return result
