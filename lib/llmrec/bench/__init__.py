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

``decode``: users/s of the LLM's decoders one user at a time against batched
across users, on the same Toy test users in one run (SmolLM2-135M with a fresh
LoRA adapter, as evaluation holds it): 10-beam constrained beam search, exact
ranking and the teacher-forced likelihood, with whether both give the same
lists, ranks and values.

``costs``: the cost table ``make figures`` estimates each chapter's time from (``bench/costs.json``, read by
:mod:`llmrec.experiments.workload`): every unit measured here at the quick profile's settings (the CPU entry; the
training units from ``bench/train.json``), and a CUDA entry derived from the H200 figures quoted in issue 25
(:data:`ISSUE_25_H200`; not measured by this project) (:func:`bench_costs`).

``train``: training throughput per loss (LML, MSL, MSL + ATS, S-DPO) at a profile's LLM settings (CPU: the
quick profile's; CUDA: the paper profile's, bf16), settings side by side on the same windows, alternating:
one batch per forward (today) against a whole optimiser step in one forward, and for LML eager against fused
attention and batches not grouped by length; windows/s, tokens/s, padding and the 6·N·tokens utilisation estimate
(:func:`bench_train`).

Each writes ``bench/<name>.json`` (``make bench`` runs all six, ``costs`` after ``train``).
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

import numpy as np
import torch
from accelerate import Accelerator

from .. import seqrec
from ..core import losses as L
from ..core.io import atomic_write, dumps, read_json, repo_root
from ..core.metrics import rank_of_target
from ..core.profiles import train_config
from ..core.samplers import sample_rows
from ..data import load_dataset, sample_windows
from ..llm.config import TrainConfig
from ..llm.model import add_lora, base_model, load_llm, load_tokenizer, smollm2_cache, trainable
from ..llm.frozen import FrozenBlocks
from ..llm.objectives import LossComputer, collate, length_grouped_batches, response_hidden, valid_logits
from ..llm.recommender import LLMRecommender
from ..llm.training import compile_blocks as compile_model
from ..llm.training import forward_backward, forward_batch
from ..llm.prompts import PromptEncoder
from ..llm.trie import ItemTrie


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


def _timed(fn, device: str):
    """(result, wall seconds, process CPU seconds) of ``fn()``, the device synchronised around it."""
    sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)
    sync()
    t0, c0 = time.perf_counter(), time.process_time()
    out = fn()
    sync()
    return out, time.perf_counter() - t0, time.process_time() - c0


def _side_by_side(per_user, batched, n: int, repeats: int, device: str, body) -> tuple[dict, object, object]:
    """Time two ways of decoding the same ``n`` users, alternating (A B B A ...) so that a machine shared with
    other jobs slows both alike; users/s from each way's fastest run, and the positions each way ran through
    the decoder ``body`` per user (padding included)."""
    runs = {"per_user": [], "batched": []}
    out, tokens = {}, {}

    def count(module, args, kwargs):
        x = kwargs.get("input_ids")
        x = kwargs["inputs_embeds"][..., 0] if x is None else x
        tokens[name] = tokens.get(name, 0) + x.numel()

    for r in range(repeats):
        for name in (("per_user", "batched") if r % 2 == 0 else ("batched", "per_user")):
            tokens[name] = 0
            hook = body.register_forward_pre_hook(count, with_kwargs=True)
            try:
                out[name], wall, cpu = _timed(per_user if name == "per_user" else batched, device)
            finally:
                hook.remove()
            runs[name].append((wall, cpu))
    res = {name: {"seconds": [w for w, _ in v], "cpu_seconds": [c for _, c in v],
                  "seconds_per_user": min(w for w, _ in v) / n, "users_per_s": n / min(w for w, _ in v),
                  "decoder_positions_per_user": tokens[name] / n}
           for name, v in runs.items()}
    res["speedup"] = res["batched"]["users_per_s"] / res["per_user"]["users_per_s"]
    return res, out["per_user"], out["batched"]


def bench_decode(users: int = 16, exact_users: int = 2, beams: int = 10, repeats: int = 2, device: str = "cpu",
                 threads: tuple = (2, 1), dataset: str = "toy", model: str = "smollm2-135m") -> dict:
    """The LLM's decoders one user at a time against batched across users, side by side (see the module doc).

    ``users`` Toy test users (the seeded sample :func:`llmrec.core.recommender.evaluate`
    draws) for beam search and the likelihood, ``exact_users`` of them for
    exact ranking (about 15 s a user on 2 CPU cores). Each pair runs
    ``repeats`` times, alternating; a short run on purpose, since the 2 cores
    may be shared. On the CPU the whole comparison runs once per entry of
    ``threads`` (torch threads): on a VM whose 2 cores other jobs share, 2
    threads wait for each other at every operation (a small matrix product
    takes as long as a large one), which one thread does not.
    """
    from ..llm import LLMRecommender

    rec = LLMRecommender(TrainConfig(dataset=dataset, model=model, device=device))
    rec.model = rec.load_model().eval()
    test = rec.ds.test.iloc[sample_rows(len(rec.ds.test), users, seed=0)]
    hist, targets = [list(h) for h in test["history"]], test["target"].astype(int).tolist()
    out = {"model": "SmolLM2-135M + a fresh LoRA adapter (q_proj, v_proj on every block: the base model's "
                    "outputs, evaluation's structure)" if model == "smollm2-135m" else model,
           "dataset": dataset, "split": "test", "device": device,
           "users": users, "exact_users": exact_users, "num_beams": beams,
           "note": (f"a short run ({users} users, {exact_users} for exact ranking), each pair alternated "
                    f"{repeats} times; users/s from each way's fastest run; load_average: the machine's 1-minute "
                    "load before and after (2 cores: above 2, other jobs ran)")}
    before = torch.get_num_threads()
    try:
        for t in (threads if device == "cpu" else (before,)):
            torch.set_num_threads(t)
            load = os.getloadavg()[0]
            out[f"threads={t}"] = {**_decode_side_by_side(rec, hist, targets, exact_users, beams, repeats, device),
                                   "load_average": [load, os.getloadavg()[0]]}
    finally:
        torch.set_num_threads(before)
    return out


def _decode_side_by_side(rec, hist, targets, exact_users: int, beams: int, repeats: int, device: str) -> dict:
    from ..llm import decode

    users, prompts, out = len(hist), rec.prompts(hist), {}
    body = base_model(rec.model).get_decoder()

    def beam(engine, batch):
        return lambda: decode.beam_search_batch(rec.model, prompts, rec.trie, num_beams=beams, batch_size=batch,
                                                engine=engine)

    res, one, many = _side_by_side(beam("fast", 1), beam("batched", users), users, repeats, device, body)
    lists = [[items for items, _ in r] for r in one] == [[items for items, _ in r] for r in many]
    gap = max((abs(a - b) for x, y in zip(one, many) for (_, a), (_, b) in zip(x, y)), default=0.0)
    out["beam"] = {"score": rec.beam_score,
                   "per_user": {"engine": "fast", "batch_size": 1, **res["per_user"]},
                   "batched": {"engine": "batched", "batch_size": users, **res["batched"]},
                   "speedup": res["speedup"], "identical_lists": lists, "max_score_gap": gap,
                   "goal": {"batched at least 3x one user at a time": res["speedup"] >= 3}}

    P, T = prompts[:exact_users], targets[:exact_users]
    res, one, many = _side_by_side(
        lambda: np.concatenate([decode.score_all_items_batch(rec.model, [p], rec.trie) for p in P]),
        lambda: decode.score_all_items_batch(rec.model, P, rec.trie), exact_users, 1, device, body)
    cols = decode.trie_plan(rec.trie).columns(T)
    beam_s = {k: out["beam"][k]["seconds_per_user"] for k in ("per_user", "batched")}
    ratio = res["batched"]["seconds_per_user"] / beam_s["batched"]
    out["exact"] = {"mode": "valid", "per_user": {"users_per_pass": 1, **res["per_user"]},
                    "batched": {"users_per_pass": exact_users, **res["batched"]}, "speedup": res["speedup"],
                    "identical_ranks": bool((rank_of_target(one, cols) == rank_of_target(many, cols)).all()),
                    "max_score_gap": float(np.abs(one - many).max()),
                    "batched exact / batched beam search, per user": ratio,
                    "batched exact / per-user beam search, per user":
                        res["batched"]["seconds_per_user"] / beam_s["per_user"],
                    "goal": {"exact at most 5x one beam search per user": ratio <= 5}}

    def likelihood(batch):
        def run():
            rec.likelihood_batch = batch
            return rec.likelihood(hist, targets)
        return run

    batch = rec.likelihood_batch
    try:
        res, one, many = _side_by_side(likelihood(1), likelihood(batch), users, repeats, device, body)
    finally:
        rec.likelihood_batch = batch
    out["likelihood"] = {"per_user": {"users_per_call": 1, **res["per_user"]},
                         "batched": {"users_per_call": batch, **res["batched"]}, "speedup": res["speedup"],
                         "max_gap": max(float(np.abs(one[k] - many[k]).max()) for k in one)}
    return out


# ============================================================================ training throughput

TRAIN_LOSSES = ("lml", "msl", "msl-ats", "sdpo")
FLOP_NOTE = ("flop_per_step: 6 * N * tokens (forward 2N, backward 4N per token, the usual estimate), N = the "
             "parameters of the transformer blocks a training step runs (every block, or the top lora_layers ones "
             "when the lower blocks' output is cached), LoRA included, the embeddings and the output head left out "
             "(the head runs at response positions only); tokens = real (unpadded) tokens of the step, S-DPO's "
             "negatives included, plus 2 * N * tokens for S-DPO's reference forward. With LoRA the frozen weights "
             "get no weight gradient, so the true count is nearer 4N per token: the estimate flatters by up to 1.5x. "
             "utilisation = flop_per_s / peak_flop_per_s, the peak measured on a square matrix product in the "
             "dtype of the run (matmul_peak)")


def block_parameters(model, first: int = 0) -> int:
    """Parameters of the transformer blocks ``first:`` (LoRA included): the N of the 6·N·tokens estimate."""
    return sum(p.numel() for block in base_model(model).get_decoder().layers[first:] for p in block.parameters())


def matmul_peak(device: str = "cpu", dtype: torch.dtype = torch.float32, n: int = 2048, repeats: int = 5) -> float:
    """FLOP/s of an n x n matrix product on ``device`` in ``dtype``, the best of ``repeats``: the peak a
    utilisation is taken against (measured, not the vendor's figure)."""
    a, b = (torch.randn(n, n, device=device).to(dtype) for _ in range(2))
    best = min(_timed(lambda: a @ b, device)[1] for _ in range(repeats + 1))
    return 2 * n ** 3 / best


def _train_settings(loss: str, accum: int, compile_blocks: bool) -> dict[str, dict]:
    """The ways one loss is timed: {name: {attention, logical batches per forward, grouped by length, compiled,
    gradient norms logged on every step}}."""
    base = dict(attention="sdpa", per_forward=1, grouped=True, compiled=False, grad_norms=False)
    out = {"one batch per forward (today)": base,
           f"the step's {accum} batches in one forward": {**base, "per_forward": accum}}
    if loss == "lml":
        out["eager attention"] = {**base, "attention": "eager"}
        out["batches not grouped by length"] = {**base, "grouped": False}
        out["with gradient norms (Figure 3)"] = {**base, "grad_norms": True}
    if compile_blocks:
        out["compiled blocks"] = {**base, "compiled": True}
    return out


def bench_train(profile: str | None = None, device: str = "cpu", steps: int | None = None, repeats: int = 2,
                losses=TRAIN_LOSSES, compile_blocks: bool | None = None) -> dict:
    """Training throughput per loss at ``profile``'s LLM settings (default: quick on the CPU, paper on a GPU).

    Each loss runs ``steps`` (default: 1 on the CPU, where a quick step takes seconds; 4 on a GPU) optimiser steps of ``max(grad_accum, 2)`` logical batches of the profile's
    ``batch_size`` windows (the same seeded Toy training windows for every loss and setting) in each setting of
    :func:`_train_settings`, the settings alternating over ``repeats`` rounds; seconds per step from each
    setting's fastest round. Batches are built (and the cached frozen blocks' states read) before the clock
    starts, as training counts them apart. ``compile_blocks`` (default: on a GPU only; inductor takes minutes to
    compile on 2 CPU cores) adds ``torch.compile``d blocks, timed after a warm-up step that compiles them.
    """
    profile = profile or ("quick" if device == "cpu" else "paper")
    steps = steps or (1 if device == "cpu" else 4)
    compile_blocks = device != "cpu" if compile_blocks is None else compile_blocks
    base = TrainConfig.from_dict(train_config(profile, "llm", loss="lml", device=device, log_grad_norms=0,
                                              micro_batch=None))
    accum = max(base.grad_accum, 2)
    dtype = torch.bfloat16 if base.dtype in ("bf16", "bfloat16") else torch.float32
    out = {"profile": profile, "device": device, "dataset": base.dataset, "model": base.model, "dtype": base.dtype,
           "batch_size": base.batch_size, "batches_per_step": accum, "steps": steps,
           "windows": steps * accum * base.batch_size, "max_history": base.max_history,
           "lora_layers": base.lora_layers, "repeats": repeats, "peak_flop_per_s": matmul_peak(device, dtype),
           "flop_note": FLOP_NOTE, "losses": {}}
    with tempfile.TemporaryDirectory(prefix="llmrec-bench-train-") as tmp:
        for loss in losses:
            load = os.getloadavg()[0]
            cfg = TrainConfig.from_dict({**base.to_dict(), "loss": loss, "grad_accum": accum,
                                         **({"sdpo_ref": tmp} if loss == "sdpo" else {})})
            settings = _train_loss(cfg, steps, repeats, tmp, out["peak_flop_per_s"], compile_blocks)
            today = settings["one batch per forward (today)"]["seconds_per_step"]
            out["losses"][loss] = {"settings": settings, "load_average": [load, os.getloadavg()[0]],
                                   "speedup_vs_today": {k: today / v["seconds_per_step"] for k, v in settings.items()}}
    return out


def _train_loss(cfg: TrainConfig, steps: int, repeats: int, tmp: str, peak: float, compile_blocks: bool) -> dict:
    """:func:`bench_train` for one loss: each setting's forward batches built once, then timed alternating."""
    rec = LLMRecommender(cfg)
    examples = rec.encoder.encode_frame(sample_windows(rec.ds.train, cfg.n_train, seed=cfg.seed))
    n = steps * cfg.grad_accum * cfg.batch_size
    lengths = [len(e.input_ids) for e in examples[:n]]
    models, ways = {}, {}
    for name, s in _train_settings(cfg.loss, cfg.grad_accum, compile_blocks).items():
        key = (s["attention"], s["compiled"])
        if key not in models:
            models[key] = _bench_model(rec, cfg, tmp, s["attention"], s["compiled"])
        model, frozen, n_params = models[key]
        if s["grouped"]:
            batches = length_grouped_batches(lengths, cfg.batch_size, cfg.seed, 0, group=cfg.grad_accum)
        else:
            order = np.random.default_rng(cfg.seed).permutation(n).tolist()
            batches = [order[i:i + cfg.batch_size] for i in range(0, n, cfg.batch_size)]
        spans = [(b, b + s["per_forward"]) for b in range(0, len(batches), s["per_forward"])]
        forwards = [forward_batch(rec, cfg, examples, batches[a:b], 0, frozen).to(cfg.device) for a, b in spans]
        tokens = sum(int(f.attention_mask.sum()) for f in forwards)
        ways[name] = {"model": model, "forwards": forwards, "setting": s, "n_params": n_params,
                      "tokens": tokens, "padded": sum(f.attention_mask.numel() for f in forwards), "seconds": []}
    for r in range(repeats):
        for name in (list(ways) if r % 2 == 0 else list(ways)[::-1]):
            ways[name]["seconds"].append(_time_steps(ways[name], cfg, steps))
    out = {}
    for name, r in ways.items():
        sec = min(r["seconds"]) / steps
        tokens = r["tokens"] / steps
        flop = (6 + (2 if cfg.loss == "sdpo" else 0)) * r["n_params"] * tokens
        out[name] = {**{k: v for k, v in r["setting"].items()}, "seconds_per_step": sec, "all_seconds": r["seconds"],
                     "windows_per_s": cfg.grad_accum * cfg.batch_size / sec, "tokens_per_s": tokens / sec,
                     "padding": r["padded"] / r["tokens"] - 1, "forwards_per_step": len(r["forwards"]) / steps,
                     "N": r["n_params"], "flop_per_step": flop, "flop_per_s": flop / sec, "utilisation": flop / sec / peak}
    return out


def _bench_model(rec, cfg: TrainConfig, tmp: str, attention: str, compiled: bool):
    """(model with a fresh LoRA adapter, its frozen blocks or None, N) as training holds it; S-DPO's reference
    adapter is a fresh one too (saved under ``tmp``)."""
    torch.manual_seed(cfg.seed)
    model, _ = load_llm(cfg.model, device=cfg.device, dtype=cfg.dtype, layers=cfg.layers, attention=attention)
    model = add_lora(model, cfg)
    if cfg.loss == "sdpo":
        model.save_pretrained(tmp)
        model.load_adapter(tmp, adapter_name="ref")
        model.set_adapter("default")
    if compiled:
        compile_model(model)
    frozen = FrozenBlocks.of(model, cfg)
    return model.train(), frozen, block_parameters(model, frozen.split if frozen is not None else 0)


def _time_steps(run: dict, cfg: TrainConfig, steps: int) -> float:
    """Wall seconds of ``steps`` optimiser steps over the run's prebuilt forwards (a warm-up step first)."""
    model = run["model"]
    acc = Accelerator(cpu=cfg.device == "cpu", gradient_accumulation_steps=cfg.grad_accum,
                      mixed_precision="bf16" if cfg.dtype in ("bf16", "bfloat16") and cfg.device != "cpu" else "no")
    opt = torch.optim.AdamW(trainable(model), lr=cfg.lr)
    compute = LossComputer(TrainConfig.from_dict({**cfg.to_dict(), "log_grad_norms": int(run["setting"]["grad_norms"])}))
    per_step = len(run["forwards"]) // steps

    def go(forwards):
        for i, batch in enumerate(forwards):
            forward_backward(model, compute, batch, acc)
            if (i + 1) % per_step == 0:
                opt.step()
                opt.zero_grad()

    go(run["forwards"][:per_step])  # warm-up (and compilation)
    return _timed(lambda: go(run["forwards"]), cfg.device)[1]


# ============================================================================ the cost table of make figures

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

    The training units come from ``train`` (:func:`bench_train`'s result; default: ``bench/train.json``): a
    window-block is one step's seconds over its windows and trained blocks. The rest is timed here, one after
    another: a chapter's fixed cost (a fresh process importing the library, loading Toy, its trie and
    SmolLM2), the frozen blocks' forward, beam search (``beam_users`` users), exact ranking (``exact_users``),
    the likelihood (top blocks on cached frozen states), a classic epoch (SASRec on Toy with CE, BCE and SCE K 500:
    the cost per window and per item scored), a Lite-LLM4Rec epoch (item-id embeddings: the item vectors are a
    lookup either way) and its ranking of every test window, and item titles encoded by SmolLM2.
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


# ============================================================================ bench/cuda.json (a GPU's figures)


def bench_cuda(device: str = "cuda", profile: str | None = None, users: int = 64, exact_users: int = 4,
               dataset: str = "toy", model: str = "smollm2-135m", lite_windows: int = 2000) -> dict:
    """What issue 25 asks to measure on a GPU, for ``bench/cuda.json`` (``python -m llmrec bench cuda``, not
    part of ``make bench``): :func:`bench_train` at ``profile``'s settings (default: paper on a GPU, quick on
    the CPU), :func:`bench_decode` on ``users`` test users (``exact_users`` for exact ranking) and
    :func:`_lite_costs` (``lite_windows`` windows, the profile's blocks); its ``summary``: each loss's windows/s,
    tokens/s and utilisation in every setting, beam search users/s, exact ranking, likelihood and Lite-LLM4Rec
    ms per user (batched engines), a Lite epoch's seconds per 1,000 windows, and the GPU named."""
    profile = profile or ("quick" if device == "cpu" else "paper")
    train = bench_train(profile, device=device)
    dec = bench_decode(users=users, exact_users=exact_users, repeats=1, device=device, dataset=dataset, model=model,
                       threads=(torch.get_num_threads(),))
    d = next(v for k, v in dec.items() if k.startswith("threads="))
    lite = _lite_costs(profile, device, dataset, lite_windows)
    per_user = lambda key: d[key]["batched"]["seconds_per_user"]
    summary = {"gpu": torch.cuda.get_device_name(0) if device != "cpu" and torch.cuda.is_available() else None,
               "device": device, "profile": profile, "dtype": train["dtype"],
               "train": {loss: {name: {k: x[k] for k in ("windows_per_s", "tokens_per_s", "utilisation")}
                                for name, x in r["settings"].items()} for loss, r in train["losses"].items()},
               "beam_users_per_s": 1 / per_user("beam"), "exact_ms_per_user": 1e3 * per_user("exact"),
               "likelihood_ms_per_user": 1e3 * per_user("likelihood"), "lite_ms_per_user": 1e3 * lite["lite_user"],
               "lite_rec_layers": lite["lite_rec_layers"],
               "lite_epoch_seconds_per_1000_windows": 1e3 * lite["lite_epoch_seconds"] / lite["lite_windows"]}
    return {"summary": summary, "train": train, "decode": dec, "lite": lite}
