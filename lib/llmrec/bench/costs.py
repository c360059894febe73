"""What each unit of a chapter's work costs (``costs``): the table ``make figures`` estimates each chapter's
time from (``bench/costs.json``, read by :mod:`llmrec.experiments.workload`).

Every unit is measured here at the quick profile's settings (the CPU entry; the training units from
``bench/train.json``), and a CUDA entry is derived from the H200 figures quoted in issue 25
(:data:`ISSUE_25_H200`; not measured by this project) (:func:`bench_costs`).
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import time

from .. import seqrec
from ..core.io import read_json, repo_root
from ..core.profiles import train_config
from ..core.samplers import sample_rows
from ..data import load_dataset, sample_windows
from ..llm.config import TrainConfig
from ..llm.frozen import FrozenBlocks
from ..llm.recommender import LLMRecommender
from .common import _timed, machine


# What issue 25 quotes from one H200 (bf16, torch 2.11, the paper profile: LoRA on every block of SmolLM2-135M,
# micro-batch 16, history 10; to the nearest 10%), not measured by this project: seconds per micro-batch of 16
# windows, per user, per Lite-LLM4Rec epoch (30 blocks, Toy).
ISSUE_25_H200 = {"lml_micro_batch_s": 0.22, "msl_ats_micro_batch_s": 0.13, "micro_batch": 16, "blocks": 30,
                 "max_history": 10, "beam_user_s": (0.160, 0.210), "likelihood_user_s": (0.005, 0.008),
                 "exact_user_s": 2.1, "lite_epoch_s": 3.0, "lite_blocks": 30, "lite_user_s": 0.27e-3}


def cuda_costs_from_issue(cpu: dict) -> dict:
    """The CUDA entry of the cost table from :data:`ISSUE_25_H200`; what the issue does not quote is derived from
    the CPU entry's ratios (each derived unit named in ``derived``), and the rest (classic models, item vectors,
    a chapter's fixed cost) is left to the CPU entry."""
    q, c = ISSUE_25_H200, cpu["units"]
    per_window_block = lambda s: s / q["micro_batch"] / q["blocks"]
    lml, ats = per_window_block(q["lml_micro_batch_s"]), per_window_block(q["msl_ats_micro_batch_s"])
    windows = len(load_dataset("toy").train)
    units = {"llm_train:lml": lml, "llm_train:msl-ats": ats, "llm_train:msl": ats,
             "llm_train:sdpo": ats * c["llm_train:sdpo"] / c["llm_train:msl"],
             "llm_grad_norms": lml * c["llm_grad_norms"] / c["llm_train:lml"],
             "llm_frozen": ats * c["llm_frozen"] / c["llm_train:msl"],
             "beam_user": statistics.mean(q["beam_user_s"]), "exact_user": q["exact_user_s"],
             "likelihood_user_block": statistics.mean(q["likelihood_user_s"]) / q["blocks"],
             "lite_window_block": q["lite_epoch_s"] / windows / (q["lite_blocks"] + 1), "lite_user": q["lite_user_s"]}
    return {"source": "quoted from issue 25, H200, not measured by this project", "quoted": q,
            "setting": {"max_history": q["max_history"], "dtype": "bfloat16"},
            "derived": {"llm_train:msl": "MSL + ATS's quoted cost (ATS's statistics cost next to nothing)",
                        "llm_train:sdpo": "MSL's cost x the CPU ratio S-DPO / MSL",
                        "llm_grad_norms": "LML's cost x the CPU ratio gradient norms / LML",
                        "llm_frozen": "MSL's cost x the CPU ratio frozen forward / MSL step",
                        "beam_user": "the middle of the quoted 160-210 ms (one user at a time)",
                        "likelihood_user_block": "the middle of the quoted 5-8 ms, over 30 blocks",
                        "lite_window_block": f"3.0 s an epoch over Toy's {windows} windows and 30 blocks + head"},
            "units": units}


def bench_costs(train: dict | None = None, beam_users: int = 8, exact_users: int = 1) -> dict:
    """The cost table: the CPU entry measured here at the quick profile's settings, each unit of
    :mod:`llmrec.experiments.workload` in seconds, and the CUDA entry of :func:`cuda_costs_from_issue`.

    The training units come from ``train`` (:func:`~llmrec.bench.throughput.bench_train`'s result; default:
    ``bench/train.json``): a window-block is one step's seconds over its windows and trained blocks. The rest is
    timed here, one after another: a chapter's fixed cost (a fresh process importing the library, loading Toy, its
    trie and SmolLM2), the frozen blocks' forward, beam search (``beam_users`` users), exact ranking
    (``exact_users``), the likelihood (top blocks on cached frozen states), a classic epoch (SASRec on Toy with CE,
    BCE and SCE K 500: the cost per window and per item scored), a Lite-LLM4Rec epoch (item-id embeddings: the item
    vectors are a lookup either way) and its ranking of every test window, and item titles encoded by SmolLM2.
    """
    from ..experiments.profile_runs import seqrec_config

    if train is None:
        saved = read_json(repo_root() / "bench" / "train.json")
        train = {**saved["train"], "when": saved["when"]}
    load = os.getloadavg()[0]
    cfg = TrainConfig.from_dict(train_config("quick", "llm", loss="lml", log_grad_norms=0))
    trained = cfg.lora_layers
    units = {}
    for loss, r in train["losses"].items():
        today = r["settings"]["one batch per forward (today)"]
        per = today["seconds_per_step"] / (train["batches_per_step"] * train["batch_size"]) / trained
        units[f"llm_train:{loss}"] = per
        if "with gradient norms (Figure 3)" in r["settings"]:
            extra = r["settings"]["with gradient norms (Figure 3)"]["seconds_per_step"] - today["seconds_per_step"]
            units["llm_grad_norms"] = max(extra, 0.0) / (train["batches_per_step"] * train["batch_size"]) / trained
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-c", "import llmrec.experiments, llmrec.plots, llmrec.probes\n"
                    "from llmrec.llm import LLMRecommender, TrainConfig\n"
                    "from llmrec.core.profiles import train_config\n"
                    "LLMRecommender(TrainConfig.from_dict(train_config('quick', loss='lml'))).load_model()"],
                   check=True, capture_output=True)
    units["chapter"] = time.perf_counter() - t0
    rec = LLMRecommender(cfg)
    rec.model = rec.load_model().eval()
    windows = [e.input_ids for e in rec.encoder.encode_frame(sample_windows(rec.ds.train, 16, seed=1))]
    frozen = FrozenBlocks(rec.model, cfg)
    secs = _timed(lambda: frozen._compute(windows), "cpu")[1]
    units["llm_frozen"] = secs / len(windows) / frozen.split
    test = rec.ds.test.iloc[sample_rows(len(rec.ds.test), beam_users, seed=0)]
    hist, targets = [list(h) for h in test["history"]], test["target"].astype(int).tolist()
    units["likelihood_user_block"] = _likelihood_seconds(rec, hist, targets, frozen) / len(hist) / trained
    full = LLMRecommender(TrainConfig.from_dict({**cfg.to_dict(), "lora_layers": None}))
    full.model = full.load_model().eval()
    units["beam_user"] = _timed(lambda: full.recommend(hist, 10), "cpu")[1] / len(hist)
    units["exact_user"] = _timed(lambda: full.score(hist[:exact_users]), "cpu")[1] / exact_users
    units.update(_seqrec_costs(seqrec_config))
    units.update({k: v for k, v in _lite_costs().items() if k in ("lite_window_block", "lite_user")})
    from ..lite.items import encode_items

    titles = dict(list(rec.ds.items.items())[:64])
    units["item_vector"] = _timed(lambda: encode_items(titles, "smollm2-135m"), "cpu")[1] / len(titles)
    cpu = {"source": "measured by `python -m llmrec bench costs` on this machine", "when": time.strftime("%Y-%m-%d"),
           "machine": machine(), "load_average": [load, os.getloadavg()[0]],
           "setting": {"max_history": cfg.max_history, "dtype": cfg.dtype, "profile": "quick",
                       "what": "SmolLM2-135M, LoRA on the top 4 blocks, batch 8, history 5, float32"},
           "train_from": {"when": train.get("when"), "load_average": {k: v["load_average"]
                                                                     for k, v in train["losses"].items()}},
           "units": units}
    return {"cpu": cpu, "cuda": cuda_costs_from_issue(cpu)}


def _likelihood_seconds(rec, hist, targets, frozen) -> float:
    """Seconds of the likelihood of ``hist`` -> ``targets`` on the top blocks, the frozen states cached first."""
    exs = [rec.encoder.encode(list(h), int(t)) for h, t in zip(hist, targets)]
    frozen.states([e.input_ids for e in exs])  # the one-off pass, priced as llm_frozen
    return _timed(lambda: rec.likelihood(hist, targets), "cpu")[1]


def _seqrec_costs(seqrec_config) -> dict:
    """SASRec on Toy at the quick settings, one epoch each (with its validation) of CE, BCE and SCE K 500 (wall
    seconds of the whole run): seconds per window, per catalogue item CE scores and per negative."""
    ds = load_dataset("toy")
    wall = {}
    for loss, extra in (("ce", {}), ("bce", {}), ("sce", {"negatives": 500, "alpha": 100.0})):
        cfg = seqrec_config("quick", "toy", loss=loss, epochs=1, patience=None, **extra)
        with tempfile.TemporaryDirectory(prefix="llmrec-bench-costs-") as tmp:
            wall[loss] = _timed(lambda: seqrec.train(cfg, run_dir=tmp, progress=False), "cpu")[1]
    windows = min(len(ds.train), cfg.get("max_train_windows") or len(ds.train))
    base = wall["bce"] / windows
    return {"seqrec_window": base, "seqrec_scored:ce": max(wall["ce"] / windows - base, 0.0) / len(ds.items),
            "seqrec_scored:sampled": max(wall["sce"] / windows - base, 0.0) / 500}


def _lite_costs(profile: str = "quick", device: str = "cpu", dataset: str = "toy", windows: int = 1000) -> dict:
    """One Lite-LLM4Rec epoch at ``profile``'s settings on ``windows`` training windows (item-id embeddings: the
    item vectors are a lookup either way), per window and block (+ the head), and its ranking of every test
    window, per user."""
    from .. import runs
    from ..experiments.profile_runs import lite_config

    ds = load_dataset(dataset)
    windows = min(windows, len(ds.train))
    cfg = lite_config(profile, dataset, encoder="none", epochs=1, patience=None, max_train_windows=windows,
                      max_valid_windows=round(windows * len(ds.valid) / len(ds.train)), device=device)
    with tempfile.TemporaryDirectory(prefix="llmrec-bench-costs-") as tmp:
        run, secs, _ = _timed(lambda: runs.train(cfg, run_dir=tmp, progress=False), device)
        ev = runs.evaluate(run, "test", "full", progress=False)
    return {"lite_window_block": secs / windows / (cfg["rec_layers"] + 1), "lite_user": ev["seconds_per_user"],
            "lite_rec_layers": cfg["rec_layers"], "lite_windows": windows, "lite_epoch_seconds": secs}
