"""Benchmarks, measured side by side in one run (``python -m llmrec bench`` / ``make bench``).

``losses``: one LoRA training step (forward + backward) of SmolLM2-135M on a
real Toy batch of 8 windows, three ways, each in a fresh subprocess so that its
peak resident memory is its own:

  a. straightforward: HF forward with full-vocabulary logits at every position,
     a dense |response| x |V| boolean mask per sample, ``-inf`` masking, softmax;
  b. fast MSL: hidden states of response positions only, projected onto their
     valid tokens only (:func:`llmrec.core.losses.project_valid`);
  c. the transformer body alone (forward + backward, no head): the floor.

``trie``: build time (tokenisation included) and AVT for Toy and Books, and
mask memory, dense against compact.

``seqrec``: SASRec epoch time and peak memory, full CE against SCE, on Toy and on Books.

Each writes ``bench/<name>.json`` (``make bench`` runs all three).
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

import multiprocessing as mp
import resource
import tempfile
from concurrent.futures import ProcessPoolExecutor

import torch

from . import seqrec
from .core import losses as L
from .core.io import atomic_write, dumps, read_json, repo_root
from .core.profiles import train_config
from .data import load_dataset, sample_windows
from .llm.config import TrainConfig
from .llm.model import add_lora, load_llm, load_tokenizer, smollm2_cache, trainable
from .llm.objectives import collate, response_hidden, valid_logits
from .llm.prompts import PromptEncoder
from .llm.trie import ItemTrie


def machine() -> dict:
    return {"platform": platform.platform(), "processor": platform.processor() or platform.machine(),
            "cpus": os.cpu_count(), "torch": torch.__version__, "threads": torch.get_num_threads(),
            "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None}


def _toy_batch(n: int = 8, seed: int = 0, device: str = "cpu"):
    ds = load_dataset("toy")
    tok = load_tokenizer()
    trie = ItemTrie.from_titles(ds.items, tok)
    enc = PromptEncoder(tok, trie, ds.items, ds.domain, max_history=10)
    exs = enc.encode_frame(sample_windows(ds.train, n, seed=seed))
    return collate(exs, trie, tok.pad_token_id).to(device), trie


def _variant(name: str, repeats: int = 3, device: str = "cpu") -> dict:
    """One benchmark variant in this process: median step seconds and peak memory."""
    torch.manual_seed(0)
    batch, trie = _toy_batch(device=device)
    model, _ = load_llm("smollm2-135m", device=device)
    model = add_lora(model, TrainConfig())
    model.train()
    params = trainable(model)

    def step():
        if name == "a":
            logits = model(input_ids=batch.input_ids, attention_mask=batch.attention_mask).logits
            resp = logits[batch.b_idx, batch.pos_idx]
            nodes, _ = trie.response_nodes(batch.items.tolist())
            mask = trie.dense_mask(nodes).to(device)
            loss = L.msl_loss_dense(resp, mask, batch.targets)
        elif name == "b":
            loss = L.msl_loss(valid_logits(model, batch, full=False))
        elif name == "c":
            loss = response_hidden(model, batch).float().pow(2).mean()
        else:
            raise ValueError(name)
        loss.backward()
        for p in params:
            p.grad = None

    step()  # warm-up
    times = []
    for _ in range(repeats):
        if device != "cpu":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        step()
        if device != "cpu":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
    out = {"variant": name, "step_seconds": statistics.median(times), "all_seconds": times,
           "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
           "batch": {"windows": len(batch.items), "tokens": int(batch.attention_mask.sum()),
                     "response_positions": len(batch.targets), "max_valid": int(batch.valid_mask.shape[1])}}
    if device != "cpu":
        out["peak_cuda_mb"] = torch.cuda.max_memory_allocated() / 2**20
    return out


def bench_losses(repeats: int = 3, device: str = "cpu") -> dict:
    res = {}
    for name in ("a", "b", "c"):
        cmd = [sys.executable, "-m", "llmrec.bench", "_variant", name, str(repeats), device]
        out = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if out.returncode:
            raise RuntimeError(f"benchmark variant {name} failed:\n{out.stderr[-2000:]}")
        res[name] = json.loads(out.stdout.strip().splitlines()[-1])
    a, b, c = (res[k]["step_seconds"] for k in "abc")
    return {"variants": res, "ratio_a_over_b": a / b, "ratio_b_over_c": b / c,
            "memory_ratio_a_over_b": res["a"]["peak_rss_mb"] / res["b"]["peak_rss_mb"],
            "goals": {"b at least 1.5x faster than a": a / b >= 1.5, "b within 1.1x of c": b / c <= 1.1}}


def bench_trie(repeats: int = 3) -> dict:
    tok = load_tokenizer()
    out = {}
    for name in ("toy", "books"):
        ds = load_dataset(name)
        secs = []
        for _ in range(repeats):
            trie, s = ItemTrie.timed_build(ds.items, tok)
            secs.append(s)
        positions = sum(len(s) for s in trie.sequences.values())
        dense_catalogue = positions * trie.vocab_size  # one bool byte per (response position, token)
        batch, _ = _toy_batch() if name == "toy" else (None, None)
        entry = {"build_seconds": statistics.median(secs), "all_seconds": secs, **trie.stats(),
                 "AVT (train targets)": trie.avt(ds.train.target.tolist()),
                 "dense_masks_all_titles_bytes": dense_catalogue, "trie_tensor_bytes": trie.compact_bytes(),
                 "catalogue_ratio": dense_catalogue / trie.compact_bytes()}
        if batch is not None:
            n = len(batch.targets)
            dense = n * trie.vocab_size
            ragged = int(batch.valid_mask.sum()) * 4 + n * 8  # int32 token ids + offsets
            entry["batch_mask_bytes"] = {"dense": dense, "ragged": ragged, "padded": batch.valid_mask.numel() * 5,
                                         "dense_over_ragged": dense / ragged}
        out[name] = entry
    return out


BENCHMARKS = ("trie", "losses", "seqrec")
SEQREC_DATASETS = ("toy", "books")  # the seqrec benchmark runs on each: CE's cost grows with the catalogue


def run_bench(what: str = "all", out: str | None = None, device: str = "cpu", out_dir: str | Path | None = None) -> dict:
    """Run one benchmark (``trie``, ``losses``, ``seqrec``) or all; each writes ``bench/<name>.json`` (the
    machine, the date and its numbers: what docs/benchmarks.md quotes), as soon as it is done. ``out`` writes the
    whole result to one file instead. Returns ``{"machine", "when", name: result, ...}``."""
    if what not in (*BENCHMARKS, "all"):
        raise ValueError(f"unknown benchmark {what!r}; choose one of {', '.join(BENCHMARKS)} or all")
    smollm2_cache()  # convert once before timing anything
    run = {"trie": bench_trie, "losses": lambda: bench_losses(device=device),
           "seqrec": lambda: {ds: bench_seqrec(ds, device=device) for ds in SEQREC_DATASETS}}
    res = {"machine": machine(), "when": time.strftime("%Y-%m-%d %H:%M:%S")}
    for name in BENCHMARKS:
        if what in (name, "all"):
            res[name] = run[name]()
            if not out:
                one = {"machine": res["machine"], "when": time.strftime("%Y-%m-%d %H:%M:%S"), name: res[name]}
                path = Path(out_dir or repo_root() / "bench") / f"{name}.json"
                atomic_write(path, (dumps(one, where=path, indent=1) + "\n").encode())
    if out:
        atomic_write(Path(out), (dumps(res, where=out, indent=1) + "\n").encode())
    return res


if __name__ == "__main__":
    if len(sys.argv) >= 3 and sys.argv[1] == "_variant":
        torch.set_num_threads(int(os.environ.get("LLMREC_BENCH_THREADS", os.cpu_count() or 1)))
        print(json.dumps(_variant(sys.argv[2], int(sys.argv[3]), sys.argv[4] if len(sys.argv) > 4 else "cpu")))


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
