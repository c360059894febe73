"""What SCE saves over full cross-entropy on SASRec (``seqrec``): epoch time and peak memory, CE against SCE,
on Toy and on Books (:data:`llmrec.bench.SEQREC_DATASETS`)."""

from __future__ import annotations

import multiprocessing as mp
import resource
import tempfile
from concurrent.futures import ProcessPoolExecutor

import torch

from .. import seqrec
from ..core.io import read_json
from ..core.profiles import train_config
from ..data import load_dataset


def _bench_child(cfg: dict) -> dict:
    """Train ``cfg`` in a temporary run directory of this (fresh) process; return done.json + RSS numbers."""
    load_dataset(cfg["dataset"])  # data in memory before the baseline is taken
    with tempfile.TemporaryDirectory(prefix="llmrec-bench-") as tmp:
        done = read_json(seqrec.train(cfg, run_dir=tmp, progress=False) / "done.json")
    done["process_peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return done


def bench_seqrec(dataset: str = "books", device: str = "cpu", epochs: int = 2, profile: str = "quick",
                 K: int = 500, alpha: float = 100.0, fresh_process: bool = True, **overrides) -> dict:
    """Epoch time and peak memory of SASRec with full CE vs SCE (K, alpha), side by side in one call.

    Each loss trains ``epochs`` epochs (no early stopping) from the same seed
    in a temporary run directory, each in a fresh spawned process by default so
    that memory one run freed cannot hide the other's peak. Reported per loss:
    mean training seconds per epoch (validation excluded), ``peak_memory_mb``
    (peak RSS above the RSS once data and model are loaded, polled every 5 ms;
    on CUDA ``max_memory_allocated``; ``memory_method`` says which),
    ``process_peak_rss_mb`` (``ru_maxrss`` of that process), the float32 size of
    one batch's score matrix, and the CE / SCE ratios.
    """
    base = dict(dataset=dataset, device=device, epochs=epochs, patience=None, model="sasrec", **overrides)
    out = {"dataset": dataset, "device": device, "epochs": epochs, "profile": profile,
           "torch_threads": torch.get_num_threads(), "fresh_process": fresh_process}
    for name, extra in (("ce", {"loss": "ce"}), ("sce", {"loss": "sce", "negatives": K, "alpha": alpha})):
        cfg = train_config(profile, "seqrec", **{**base, **extra})
        if fresh_process:
            with ProcessPoolExecutor(max_workers=1, mp_context=mp.get_context("spawn")) as pool:
                done = pool.submit(_bench_child, cfg).result()
        else:
            done = _bench_child(cfg)
        out[name] = {"loss": cfg["loss"], **({"K": K, "alpha": alpha} if name == "sce" else {}),
                     **{k: done[k] for k in ("seconds_per_epoch", "peak_memory_mb", "process_peak_rss_mb",
                                             "score_matrix_mb", "n_train_positions")}}
        out["memory_method"] = done["memory_method"]
    out["speedup_sce_vs_ce"] = out["ce"]["seconds_per_epoch"] / out["sce"]["seconds_per_epoch"]
    out["memory_ratio_ce_vs_sce"] = (out["ce"]["peak_memory_mb"] / out["sce"]["peak_memory_mb"]
                                     if out["sce"]["peak_memory_mb"] > 0 else None)
    return out
