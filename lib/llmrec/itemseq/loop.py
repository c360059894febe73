"""The training loop of every model trained on item sequences (SASRec & co, Lite-LLM4Rec).

Adam on the trained parameters, every position of a window's sequence labelled (position t predicts item
t + 1; or the last only), the family's loss (:mod:`.objectives`), validation NDCG@10 on full ranking after every
epoch, early stopping with ``patience``; the best epoch's trained weights are ``model.pt``. ``loss_fn``: a loss
function of the user's in place of the family's (:mod:`llmrec.core.custom_loss`). Per-epoch
checkpoints (model, optimiser, RNG states, early-stopping state) in the one run-directory layout of
:mod:`llmrec.core.rundir`, from which an interrupted run resumes exactly.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from ..core import custom_loss, rundir
from ..core.io import progress_bars, save_torch, write_json
from ..core.memory import PeakMemory
from ..core.recommender import evaluate
from ..data import dataset_fingerprint, load_dataset, sample_windows
from .objectives import batch_loss
from .scorer import load_trainable, train_sequences, trainable_state


def fit(cfg: dict, build, run_dir: str | Path | None = None, progress: bool = True, weights=None,
        loss_fn=None) -> Path:
    """Open the run directory of a completed configuration ``cfg`` (the run cache) and train there, unless it
    is finished; ``build(cfg)`` returns the untrained recommender (its ``model`` is what trains). Shared by
    every family that trains an :class:`~llmrec.itemseq.scorer.ItemScorer` on item sequences; a family that
    starts from pretrained weights (Lite-LLM4Rec) passes ``weights()``, their fingerprints: part of its identity.
    ``loss_fn(scores, targets) -> loss`` replaces the configuration's loss (:mod:`llmrec.core.custom_loss`)."""
    cfg, custom = custom_loss.configure(cfg, loss_fn)
    load_dataset(cfg["dataset"])  # the data's check: a folder with a problem never gets a run directory
    identity = {"dataset": dataset_fingerprint(cfg["dataset"]), "world_size": 1, "global_batch": cfg["batch_size"]}
    if weights is not None:
        identity = rundir.with_weights(identity, weights)
    run_dir = Path(run_dir) if run_dir is not None else rundir.find_run(cfg, identity)
    if rundir.open_run(run_dir, cfg, identity):
        return run_dir
    custom_loss.record(run_dir, custom)
    with rundir.attempt(run_dir):
        return _fit(cfg, build, run_dir, progress, custom)


def _fit(cfg: dict, build, run_dir: Path, progress: bool, custom: custom_loss.CustomLoss | None) -> Path:
    """The training loop of :func:`fit` in an opened run directory (resumes from its last checkpoint)."""
    device = torch.device(cfg["device"])
    ds = load_dataset(cfg["dataset"])
    train_df = sample_windows(ds.train, cfg["max_train_windows"], seed=cfg["seed"])
    valid_df = sample_windows(ds.valid, cfg["max_valid_windows"], seed=cfg["seed"])
    seqs = train_sequences(train_df, cfg["maxlen"])

    torch.manual_seed(cfg["seed"])
    rec = build(cfg)
    model, n_items = rec.model, rec.n_items
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.Adam(params, lr=cfg["lr"], betas=(0.9, cfg.get("adam_beta2", 0.98)),
                           weight_decay=cfg["weight_decay"])
    gen = torch.Generator().manual_seed(cfg["seed"])

    state = {"epoch": 0, "best_ndcg": -1.0, "best_epoch": 0, "bad_epochs": 0, "train_seconds": [], "peak_mb": 0.0}
    last = rundir.latest_checkpoint(run_dir)
    if last is not None:
        ck, state = rundir.load_checkpoint(last, generator=gen)
        load_trainable(model, ck["model"])
        opt.load_state_dict(ck["optimizer"])
    rundir.truncate_log(run_dir, lambda r: r["epoch"] <= state["epoch"])

    patience = cfg["patience"]
    bar = tqdm(total=cfg["epochs"], initial=min(state["epoch"], cfg["epochs"]), disable=not progress_bars(progress),
               desc=f"{cfg['model']}/{cfg['loss']} on {cfg['dataset']}")
    with PeakMemory(device) as mem:  # peak over this session's epochs (max with earlier sessions)
        while state["epoch"] < cfg["epochs"] and not (patience and state["bad_epochs"] >= patience):
            epoch = state["epoch"] + 1
            model.train()
            order = torch.randperm(len(seqs), generator=gen)
            total, n_batches = 0.0, 0
            t0 = time.perf_counter()
            for start in range(0, len(seqs), cfg["batch_size"]):
                loss = batch_loss(model, seqs[order[start:start + cfg["batch_size"]]], cfg, n_items, gen, device,
                                  custom)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                total += float(loss.detach())
                n_batches += 1
            seconds = time.perf_counter() - t0
            valid = evaluate(rec, valid_df, "full", k=10)
            ndcg = valid["summary"]["ndcg@10"]
            state["memory_method"] = mem.method
            state["epoch"] = epoch
            state["train_seconds"].append(seconds)
            state["peak_mb"] = max(state["peak_mb"], mem.peak_so_far())
            if ndcg > state["best_ndcg"]:
                state.update(best_ndcg=ndcg, best_epoch=epoch, bad_epochs=0)
                save_torch(run_dir / "model.pt", {"model": trainable_state(model), "epoch": epoch})
            else:
                state["bad_epochs"] += 1
            rundir.append_log(run_dir, {"epoch": epoch, "loss": total / max(n_batches, 1), "seconds": seconds,
                                        "valid_seconds": valid["seconds"], "valid_ndcg@10": ndcg})
            rundir.save_checkpoint(run_dir, epoch, {"model": trainable_state(model), "optimizer": opt.state_dict()},
                                   state, generator=gen)
            bar.update(1)
            bar.set_postfix(loss=f"{total / max(n_batches, 1):.4f}", ndcg10=f"{ndcg:.4f}")
    bar.close()
    secs = state["train_seconds"]
    write_json(run_dir / "done.json", {
        "best_epoch": state["best_epoch"],
        "best_valid_ndcg@10": state["best_ndcg"],
        "epochs_run": state["epoch"],
        "stopped_early": bool(patience and state["bad_epochs"] >= patience and state["epoch"] < cfg["epochs"]),
        "seconds_per_epoch": float(np.mean(secs)) if secs else None,
        "seconds_total": float(np.sum(secs)),
        "peak_memory_mb": state["peak_mb"],
        "memory_method": state.get("memory_method", ""),
        "score_matrix_mb": score_matrix_mb(cfg, seqs.shape[1] - 1, n_items),
        "n_train_windows": len(train_df),
        "n_train_positions": int((seqs[:, 1:] != 0).sum()),
        "n_valid_windows": len(valid_df),
        "n_params": sum(p.numel() for p in model.parameters()),
        "n_trained_params": sum(p.numel() for p in params),
        "torch_threads": torch.get_num_threads(),
        "device": str(device),
    })
    return run_dir


def score_matrix_mb(cfg: dict, width: int, n_items: int) -> float:
    """Size of a full batch's score matrix in float32 (forward only): B x W x scored items."""
    per_pos = n_items if custom_loss.is_custom(cfg["loss"]) else \
        {"ce": n_items, "bce": 2, "bpr": 2}.get(cfg["loss"], 1 + int(cfg["negatives"]))
    return cfg["batch_size"] * width * per_pos * 4 / 2**20
