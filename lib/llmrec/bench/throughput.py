"""How fast each loss trains (``train``).

Training throughput per loss (LML, MSL, MSL + ATS, S-DPO) at a profile's LLM settings (CPU: the quick profile's;
CUDA: the paper profile's, bf16), settings side by side on the same windows, alternating: one batch per forward
(today) against a whole optimiser step in one forward, and for LML eager against fused attention and batches not
grouped by length; windows/s, tokens/s, padding and the 6·N·tokens utilisation estimate (:func:`bench_train`).
"""

from __future__ import annotations

import os
import tempfile

import numpy as np
import torch
from accelerate import Accelerator

from ..core.profiles import train_config
from ..data import sample_windows
from ..llm.config import TrainConfig
from ..llm.frozen import FrozenBlocks
from ..llm.model import add_lora, base_model, load_llm, trainable
from ..llm.objectives import LossComputer, length_grouped_batches
from ..llm.recommender import LLMRecommender
from ..llm.training import compile_blocks as compile_model
from ..llm.training import forward_backward, forward_batch
from .common import _timed


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


def _train_settings(loss: str, accum: int, compile_blocks: bool, device: str = "cpu") -> dict[str, dict]:
    """The ways one loss is timed: {name: {attention, logical batches per forward, grouped by length, compiled,
    gradient norms logged on every step, bfloat16 autocast}}. On the CPU, the float32 step is also timed under
    torch's bfloat16 autocast: no profile trains so (it would change every number); it says whether a CPU's
    bfloat16 matrix units (``peak_flop_per_s_bfloat16``) would pay for a quicker ``quick`` profile."""
    base = dict(attention="sdpa", per_forward=1, grouped=True, compiled=False, grad_norms=False, autocast=False)
    out = {"one batch per forward (today)": base,
           f"the step's {accum} batches in one forward": {**base, "per_forward": accum}}
    if loss == "lml":
        out["eager attention"] = {**base, "attention": "eager"}
        out["batches not grouped by length"] = {**base, "grouped": False}
        out["with gradient norms (Figure 3)"] = {**base, "grad_norms": True}
    if compile_blocks:
        out["compiled blocks"] = {**base, "compiled": True}
    if device == "cpu":
        out["bfloat16 autocast (not used by any profile)"] = {**base, "autocast": True}
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
           **({"peak_flop_per_s_bfloat16": matmul_peak(device, torch.bfloat16)} if device == "cpu" else {}),
           "flop_note": FLOP_NOTE, "losses": {}}
    with tempfile.TemporaryDirectory(prefix="llmrec-bench-train-") as tmp:
        for loss in losses:
            load = os.getloadavg()[0]
            cfg = TrainConfig.from_dict({**base.to_dict(), "loss": loss, "grad_accum": accum,
                                         **({"sdpo_ref": tmp} if loss == "sdpo" else {})})
            peaks = {False: out["peak_flop_per_s"], True: out.get("peak_flop_per_s_bfloat16")}
            settings = _train_loss(cfg, steps, repeats, tmp, peaks, compile_blocks)
            today = settings["one batch per forward (today)"]["seconds_per_step"]
            out["losses"][loss] = {"settings": settings, "load_average": [load, os.getloadavg()[0]],
                                   "speedup_vs_today": {k: today / v["seconds_per_step"] for k, v in settings.items()}}
    return out


def _train_loss(cfg: TrainConfig, steps: int, repeats: int, tmp: str, peaks: dict, compile_blocks: bool) -> dict:
    """:func:`bench_train` for one loss: each setting's forward batches built once, then timed alternating;
    utilisation against ``peaks[autocast]``, the matrix product's peak in the dtype the setting multiplies in."""
    rec = LLMRecommender(cfg)
    examples = rec.encoder.encode_frame(sample_windows(rec.ds.train, cfg.n_train, seed=cfg.seed))
    n = steps * cfg.grad_accum * cfg.batch_size
    lengths = [len(e.input_ids) for e in examples[:n]]
    models, ways = {}, {}
    for name, s in _train_settings(cfg.loss, cfg.grad_accum, compile_blocks, cfg.device).items():
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
                     "N": r["n_params"], "flop_per_step": flop, "flop_per_s": flop / sec,
                     "utilisation": flop / sec / peaks[r["setting"]["autocast"]]}
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
    # accelerate fixes mixed precision once per process: the CPU's bfloat16 setting enters torch's autocast itself
    bf16 = run["setting"].get("autocast", False)
    opt = torch.optim.AdamW(trainable(model), lr=cfg.lr)
    compute = LossComputer(TrainConfig.from_dict({**cfg.to_dict(), "log_grad_norms": int(run["setting"]["grad_norms"])}))
    per_step = len(run["forwards"]) // steps

    def go(forwards):
        for i, batch in enumerate(forwards):
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
                forward_backward(model, compute, batch, acc)
            if (i + 1) % per_step == 0:
                opt.step()
                opt.zero_grad()

    go(run["forwards"][:per_step])  # warm-up (and compilation)
    return _timed(lambda: go(run["forwards"]), cfg.device)[1]
