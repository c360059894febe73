"""Benchmarks, measured side by side in one run (``python -m llmrec bench`` / ``make bench``), one module per
question:

- ``losses`` and ``trie`` (:mod:`.masking`): what MSL's valid-token masking costs, in a training step and in memory;
- ``seqrec`` (:mod:`.sce`): what SCE saves over full cross-entropy on SASRec, epoch time and peak memory;
- ``decode`` (:mod:`.decoding`): what batching across users buys the LLM's decoders;
- ``train`` (:mod:`.throughput`): how fast each loss trains, setting by setting;
- ``costs`` (:mod:`.costs`): what each unit of a chapter's work costs, the table ``make figures`` estimates from;
- ``cuda`` (:mod:`.cuda`, by name only): what a GPU does with the same work.

Each writes ``bench/<name>.json`` (``make bench`` runs all six, ``costs`` after ``train``); :mod:`.common` holds
what they share (the machine, the clock).
"""

from __future__ import annotations

import time
from pathlib import Path

from ..core.io import atomic_write, dumps, repo_root
from ..llm.model import smollm2_cache
from .common import machine
from .costs import ISSUE_25_H200, bench_costs, cuda_costs_from_issue
from .cuda import bench_cuda
from .decoding import bench_decode
from .masking import bench_losses, bench_trie
from .sce import bench_seqrec
from .throughput import TRAIN_LOSSES, bench_train

__all__ = ["BENCHMARKS", "BY_NAME_ONLY", "ISSUE_25_H200", "SEQREC_DATASETS", "TRAIN_LOSSES", "bench_costs",
           "bench_cuda", "bench_decode", "bench_losses", "bench_seqrec", "bench_train", "bench_trie",
           "cuda_costs_from_issue", "machine", "run_bench"]

BENCHMARKS = ("trie", "losses", "seqrec", "decode", "train", "costs")  # make bench: "all" of them
BY_NAME_ONLY = ("cuda",)  # a GPU's figures (bench/cuda.json): run by name, never by "all"
SEQREC_DATASETS = ("toy", "books")  # the seqrec benchmark runs on each: CE's cost grows with the catalogue


def run_bench(what: str = "all", out: str | None = None, device: str = "cpu", out_dir: str | Path | None = None) -> dict:
    """Run one benchmark (``trie``, ``losses``, ``seqrec``, ``decode``, ``train``, ``costs``) or all; each writes ``bench/<name>.json`` (the
    machine, the date and its numbers: what docs/benchmarks.md quotes), as soon as it is done. ``out`` writes the
    whole result to one file instead. Returns ``{"machine", "when", name: result, ...}``."""
    if what not in (*BENCHMARKS, *BY_NAME_ONLY, "all"):
        raise ValueError(f"unknown benchmark {what!r}; choose one of {', '.join(BENCHMARKS + BY_NAME_ONLY)} or all")
    smollm2_cache()  # convert once before timing anything
    run = {"trie": bench_trie, "losses": lambda: bench_losses(device=device),
           "seqrec": lambda: {ds: bench_seqrec(ds, device=device) for ds in SEQREC_DATASETS},
           "decode": lambda: bench_decode(device=device), "train": lambda: bench_train(device=device),
           "costs": lambda: bench_costs(res.get("train")), "cuda": lambda: bench_cuda(device=device)}
    res = {"machine": machine(), "when": time.strftime("%Y-%m-%d %H:%M:%S")}
    for name in BENCHMARKS + BY_NAME_ONLY:
        if what == name or (what == "all" and name in BENCHMARKS):
            res[name] = run[name]()
            if not out:
                one = {"machine": res["machine"], "when": time.strftime("%Y-%m-%d %H:%M:%S"), name: res[name]}
                path = Path(out_dir or repo_root() / "bench") / f"{name}.json"
                atomic_write(path, (dumps(one, where=path, indent=1) + "\n").encode())
    if out:
        atomic_write(Path(out), (dumps(res, where=out, indent=1) + "\n").encode())
    return res
