"""LoRA fine-tuning of a causal LM as a recommender, with any loss of the family.

The loop runs on accelerate, so ``accelerate launch`` / ``torchrun`` scale it to
several processes unchanged (ATS statistics are all-reduced across them). Every
epoch ends with a validation score (beam NDCG@5, or with ``valid_by="nll_valid"`` the mean
-log P_valid of the target titles) and a checkpoint (``checkpoints/step-N``:
adapter, optimiser, RNG and ATS states, the gradient accumulated so far, the
position in the epoch; not the frozen base weights), and ``checkpoint_every=k``
adds one every k steps inside an epoch (the quick profile has one epoch of 64
steps); an interrupted run resumes from the latest one exactly: same data order,
weights and log as an uninterrupted run. There is no learning-rate schedule (a
constant rate), so there is no scheduler state. The best epoch's adapter is kept
in ``RUN/adapter`` (loadable with plain ``peft.PeftModel.from_pretrained``).

Losses (``--loss``): ``lml`` (eq. 1), ``lml-tau`` (LML with temperature),
``l2-only`` (eq. 4 alone, for Figure 4), ``msl`` (eq. 9 with a fixed tau),
``msl-ats`` (tau from the Adaptive Temperature Strategy), ``msl-alpha`` (Table 6
"MSL + alpha"), ``sdpo`` (S-DPO from an LML adapter, which is also the frozen
reference); or a function of your own, ``train(config, loss_fn=f)``: ``f(logits, valid,
targets)`` on every batch's dense logits (:mod:`llmrec.core.custom_loss`), the loss
``custom:<name>``, the function's source part of the run's key.

``lora_layers=k`` puts LoRA on the last k blocks only. The blocks below then
never change, so their output for each training sequence is computed once,
without gradients, and cached on disk (:class:`llmrec.llm.frozen.FrozenBlocks`); every step runs
only the top k blocks from it. Runs on the same windows share the cache, and the
one-off pass is logged apart from the training time (``frozen_seconds``).
"""

from __future__ import annotations

import os
import random
import resource
import time
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from accelerate import Accelerator
from peft import get_peft_model_state_dict, set_peft_model_state_dict
from tqdm.auto import tqdm

from ..core import custom_loss, rundir
from ..core.io import progress_bars, publish_dir, read_json, write_json
from ..core.recommender import evaluate
from ..core.metrics import ndcg_at_k
from ..data import dataset_fingerprint, load_dataset, sample_windows
from .config import TrainConfig
from .frozen import FrozenBlocks
from .model import weights_fingerprint
from .objectives import Batch, LossComputer, collate, length_grouped_batches, trainable
from .prompts import Example
from .recommender import LLMRecommender, adapter_dir


def set_seed(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def train(config: TrainConfig | dict, run_dir: str | Path | None = None, progress: bool = True,
          stop_after_epoch: int | None = None, evaluate_fn=None, loss_fn=None) -> Path:
    """Train (or resume, or find in the run cache) and return the run directory.

    ``stop_after_epoch`` simulates an interruption (tests); ``evaluate_fn(rec,
    model, split, n_users, beams) -> ranks`` overrides validation (default:
    constrained beam search on the validation windows). ``loss_fn(logits, valid,
    targets) -> loss`` (or a :class:`~llmrec.core.custom_loss.CustomLoss`) replaces
    the configuration's loss (:mod:`llmrec.core.custom_loss`).
    """
    config, custom = custom_loss.configure(config, loss_fn)
    cfg = config if isinstance(config, TrainConfig) else TrainConfig.from_dict(config)
    load_dataset(cfg.dataset)  # the data's check: a folder with a problem never gets a run directory
    if cfg.micro_batch == "auto":  # resolved before the run's key: the key names the forwards it makes
        cfg.micro_batch = auto_micro_batch(cfg)
    world = int(os.environ.get("WORLD_SIZE", "1"))  # torchrun / accelerate launch set it for every process
    identity = rundir.with_weights({"dataset": dataset_fingerprint(cfg.dataset), "world_size": world,
                                    "global_batch": cfg.batch_size * world * cfg.grad_accum}, lambda: base_weights(cfg))
    run_dir = Path(run_dir) if run_dir else rundir.find_run(cfg.to_dict(), identity)
    if rundir.open_run(run_dir, cfg.to_dict(), identity):
        return run_dir
    if cfg.loss == "sdpo":
        _reference_with_weights(cfg.sdpo_ref, progress)
    custom_loss.record(run_dir, custom)
    with rundir.attempt(run_dir):
        return _fit(cfg, run_dir, progress, stop_after_epoch, evaluate_fn or _default_validation, custom)


def _reference_with_weights(ref: str, progress: bool) -> None:
    """S-DPO starts from its reference run's adapter: a reference the run cache lacks but a committed layer holds
    (:func:`llmrec.core.rundir.use_fallback`: no weights) is trained in the run cache first, under its name."""
    if Path(ref).exists() or len(Path(ref).parts) != 1 or rundir.is_done(rundir.runs_root() / ref):
        return
    for layer in rundir.fallback_layers():
        if rundir.is_done(layer / ref):
            train(read_json(layer / ref / "config.json"), run_dir=rundir.runs_root() / ref, progress=progress)
            return


def base_weights(config: TrainConfig | dict) -> dict:
    """The fingerprint of the pretrained weights a run starts from (its identity's ``weights``)."""
    cfg = config if isinstance(config, TrainConfig) else TrainConfig.from_dict(config)
    return {"model": weights_fingerprint(cfg.model, seed=cfg.seed)}


def _fit(cfg: TrainConfig, run_dir: Path, progress: bool, stop_after_epoch: int | None, evaluate_fn,
         custom: custom_loss.CustomLoss | None = None) -> Path:
    """The training loop of :func:`train` in an opened run directory (resumes from its last checkpoint)."""
    # acc.backward divides every loss by grad_accum; the loop steps the (plain) optimiser itself
    acc = Accelerator(cpu=cfg.device == "cpu", gradient_accumulation_steps=cfg.grad_accum,
                      mixed_precision="bf16" if cfg.dtype in ("bf16", "bfloat16") and cfg.device != "cpu" else "no")
    set_seed(cfg.seed)
    rec = LLMRecommender(cfg)
    train_df = sample_windows(rec.ds.train, cfg.n_train, seed=cfg.seed)
    examples = rec.encoder.encode_frame(train_df)
    if cfg.loss == "sdpo":
        ref_dir = adapter_dir(cfg.sdpo_ref)
        model = rec.load_model(ref_dir, trainable_adapter=True)
        model.load_adapter(str(ref_dir), adapter_name="ref")
        model.set_adapter("default")
    else:
        model = rec.load_model()
    opt = torch.optim.AdamW(trainable(model), lr=cfg.lr, weight_decay=cfg.weight_decay)
    # No DDP wrapper: the loss reaches into the decoder (no LM head), so LoRA gradients are averaged
    # across processes by hand after each backward (they are a few hundred thousand numbers).
    model = model.to(acc.device)
    if cfg.compile:
        compile_blocks(model)
    compute = LossComputer(cfg, custom)
    frozen = FrozenBlocks.of(model, cfg)

    # state["epoch"]: finished epochs; state["batch"]: batches done in the epoch in progress (a mid-epoch checkpoint)
    state = {"epoch": 0, "batch": 0, "step": 0, "best_ndcg5": -1.0, "best_epoch": None, "seconds": 0.0, "history": []}
    last = rundir.latest_checkpoint(run_dir)
    if last is not None:  # resume exactly where the last checkpoint was taken (an epoch end or inside an epoch)
        ck, state = rundir.load_checkpoint(last)
        set_peft_model_state_dict(acc.unwrap_model(model), ck["adapter"])
        opt.load_state_dict(ck["optimizer"])
        for p, g in zip(trainable(model), ck.get("grads") or []):  # a gradient accumulated over part of a group
            p.grad = None if g is None else g.to(p.device, p.dtype)
        if compute.ats is not None:
            compute.ats.load_state_dict(state["ats"])
        compute.calls = state["step"]  # one loss call per step: gradient norms stay on every k-th step
    state.setdefault("batch", 0)
    # drop what an interrupted attempt logged after the checkpoint: later steps, and an epoch end not checkpointed
    rundir.truncate_log(run_dir, lambda r: r["step"] <= state["step"] if "step" in r else r["epoch"] < state["epoch"])
    lengths = [len(e.input_ids) for e in examples]
    rank, world = acc.process_index, acc.num_processes

    def checkpoint(epochs_done: int, done_in_epoch: int, partial: dict | None = None) -> None:
        state.update(epoch=epochs_done, batch=done_in_epoch)
        if partial is not None:
            state["partial"] = partial  # the epoch in progress: its time so far
        else:
            state.pop("partial", None)
        if compute.ats is not None:
            state["ats"] = compute.ats.state_dict()
        if acc.is_main_process:
            grads = [None if p.grad is None else p.grad.detach().cpu().clone() for p in trainable(model)]
            rundir.save_checkpoint(run_dir, epochs_done, {"adapter": get_peft_model_state_dict(acc.unwrap_model(model)),
                                                          "optimizer": opt.state_dict(), "grads": grads}, state,
                                   step=state["step"])
        acc.wait_for_everyone()

    per_forward = (cfg.micro_batch or cfg.batch_size) // cfg.batch_size  # logical batches in one forward
    for epoch in range(state["epoch"], cfg.epochs):
        batches = length_grouped_batches(lengths, cfg.batch_size * world, cfg.seed, epoch, group=cfg.grad_accum)
        if cfg.max_steps:
            batches = batches[: cfg.max_steps * cfg.grad_accum]
        start = state["batch"] if epoch == state["epoch"] else 0
        partial = state.get("partial", {}) if start else {}
        model.train()
        t0, f0, g0 = time.perf_counter(), frozen.seconds if frozen is not None else 0.0, compute.grad_norm_seconds
        bar = tqdm(desc=f"epoch {epoch + 1}/{cfg.epochs} [{cfg.loss}]", initial=start, total=len(batches),
                   disable=not progress_bars(progress and acc.is_main_process))

        def times() -> tuple[float, float, float]:
            """(training, frozen-pass, gradient-norm) seconds of this epoch so far, earlier attempts included."""
            frozen_s = (frozen.seconds if frozen is not None else 0.0) - f0  # the one-off frozen pass, shared by runs
            grad_norm_s = compute.grad_norm_seconds - g0  # Figure 3's logging, not training
            seconds = time.perf_counter() - t0 - frozen_s - grad_norm_s
            return (seconds + partial.get("train_seconds", 0.0), frozen_s + partial.get("frozen_seconds", 0.0),
                    grad_norm_s + partial.get("grad_norm_seconds", 0.0))

        for b0, b1 in forward_spans(len(batches), start, cfg.grad_accum, per_forward):
            mine = [idx[rank::world] if world > 1 else idx for idx in batches[b0:b1]]  # split over processes
            batch = forward_batch(rec, cfg, examples, mine, epoch, frozen).to(acc.device)
            logs = forward_backward(model, compute, batch, acc)
            if world > 1:
                _average_gradients(model, world)
            # the optimiser steps after every grad_accum batches of the epoch and after its last one: the
            # accumulation follows the position in the epoch, so a checkpoint anywhere resumes it exactly
            if b1 % cfg.grad_accum == 0 or b1 == len(batches):
                opt.step()
                opt.zero_grad()
            for log in logs:
                state["step"] += 1
                if acc.is_main_process and state["step"] % cfg.log_every == 0:
                    rundir.append_log(run_dir, {"epoch": epoch, "step": state["step"], **log})
            bar.update(b1 - b0)
            bar.set_postfix(loss=f"{log['loss']:.3f}", **({"tau": f"{log['tau']:.2f}"} if "tau" in log else {}))
            every = cfg.checkpoint_every
            if every and state["step"] // every > (state["step"] - len(logs)) // every and b1 < len(batches):
                seconds, frozen_s, grad_norm_s = times()
                checkpoint(epoch, b1, {"train_seconds": seconds, "frozen_seconds": frozen_s,
                                       "grad_norm_seconds": grad_norm_s})
        bar.close()
        seconds, frozen_s, grad_norm_s = times()
        state["seconds"] += seconds
        ndcg5 = nll = None
        if cfg.validate:
            model.eval()
            if cfg.valid_by == "nll_valid":  # the lowest mean -log P_valid(target title) of the validation users
                nll = _valid_likelihood(rec, acc.unwrap_model(model), cfg.n_valid_users)
            else:
                ranks = evaluate_fn(rec, acc.unwrap_model(model), "valid", cfg.n_valid_users, cfg.valid_beams)
                ndcg5 = float(ndcg_at_k(ranks, 5).mean())
        by_nll = {"valid_nll_valid": nll} if cfg.valid_by == "nll_valid" else {}
        state["history"].append({"epoch": epoch, "train_seconds": seconds, "frozen_seconds": frozen_s,
                                 "grad_norm_seconds": grad_norm_s,
                                 "steps": len(batches), "valid_ndcg@5": ndcg5, **by_nll})
        if acc.is_main_process:
            rundir.append_log(run_dir, {"epoch": epoch, "event": "epoch_end", "train_seconds": seconds,
                                      "valid_ndcg@5": ndcg5, **by_nll, "peak_rss_mb": peak_rss_mb()})
            if nll is not None:  # lower than every earlier epoch's (the history holds them, this one last)
                better = nll < min((h["valid_nll_valid"] for h in state["history"][:-1]), default=float("inf"))
            else:
                better = ndcg5 is None or ndcg5 > state["best_ndcg5"]
            if better:
                state["best_ndcg5"], state["best_epoch"] = (ndcg5 if ndcg5 is not None else -1.0), epoch
                _save_adapter(acc.unwrap_model(model), run_dir / "adapter")
        checkpoint(epoch + 1, 0)
        if stop_after_epoch is not None and epoch + 1 >= stop_after_epoch:
            return run_dir
    if acc.is_main_process:
        n_steps = sum(h["steps"] for h in state["history"])
        write_json(run_dir / "done.json", {
            "best_epoch": state["best_epoch"], "best_valid_ndcg@5": state["best_ndcg5"],
            **({"best_valid_nll_valid": next(h["valid_nll_valid"] for h in state["history"]
                                             if h["epoch"] == state["best_epoch"])} if cfg.valid_by == "nll_valid"
               and cfg.validate else {}),
            "train_seconds": state["seconds"], "seconds_per_step": state["seconds"] / max(n_steps, 1),
            "steps": n_steps, "peak_rss_mb": peak_rss_mb(), "world_size": world,
            "n_train": len(examples), "history": state["history"]})
    acc.wait_for_everyone()
    return run_dir


MEMORY_FRACTION = 0.8  # of the GPU memory free with the model loaded that micro_batch="auto" may fill


def forwards_that_fit(peak_one: float, free: float, accum: int, fraction: float = MEMORY_FRACTION) -> int:
    """Logical batches per forward: the most, from 1 to ``accum``, whose memory (``peak_one`` bytes each: one
    forward + backward of the longest logical batch) fits in ``fraction`` of ``free`` bytes."""
    return max(1, min(accum, int(fraction * free // max(peak_one, 1.0))))


def auto_micro_batch(cfg: TrainConfig, free: float | None = None) -> int | None:
    """``micro_batch="auto"``: on a GPU, the windows per forward that its memory holds, from one measured
    training step (forward + backward, :class:`~llmrec.core.memory.PeakMemory`) on the ``batch_size`` longest
    training windows and the memory free beside the model (:func:`forwards_that_fit`); None (one logical batch per
    forward) on the CPU, where larger forwards do not pay (docs/benchmarks.md), unless ``free`` (bytes) is given.
    The probe runs every block with LML's full-vocabulary head: an upper bound for the other losses and for
    runs whose lower blocks are cached (``lora_layers``)."""
    if free is None and not cfg.device.startswith("cuda"):
        return None
    from ..core.memory import PeakMemory

    probe = TrainConfig.from_dict({**cfg.to_dict(), "micro_batch": None, "loss": "lml", "log_grad_norms": 0})
    rec = LLMRecommender(probe)
    examples = rec.encoder.encode_frame(sample_windows(rec.ds.train, cfg.n_train, seed=cfg.seed))
    longest = sorted(examples, key=lambda e: -len(e.input_ids))[:cfg.batch_size]
    model = rec.load_model().to(cfg.device)
    batch = collate(longest, rec.trie, rec.tok.pad_token_id).to(cfg.device)
    with PeakMemory(cfg.device) as peak:
        loss, _ = LossComputer(probe)(model, batch)
        loss.backward()
    del batch, loss
    if free is None:
        torch.cuda.empty_cache()
        free = torch.cuda.mem_get_info(torch.device(cfg.device))[0]  # with one model loaded, as training has
    rows = 1 + cfg.sdpo_negatives if cfg.loss == "sdpo" else 1  # S-DPO: each window with its negatives
    k = forwards_that_fit(peak.peak_mb * 2**20 * rows, free, cfg.grad_accum)
    return None if k == 1 else k * cfg.batch_size


def forward_spans(n_batches: int, start: int, accum: int, per_forward: int) -> list[tuple[int, int]]:
    """The forwards of an epoch of ``n_batches`` logical batches from batch ``start`` on: ``(first, stop)`` spans of
    at most ``per_forward`` consecutive batches, never across an optimiser step (``accum`` batches each)."""
    spans, b = [], start
    while b < n_batches:
        stop = min(b + per_forward, (b // accum + 1) * accum, n_batches)
        spans.append((b, stop))
        b = stop
    return spans


COMPILE_BACKEND = "inductor"  # torch.compile's default (generated kernels; a C++ compiler on the CPU)


def compile_blocks(model, backend: str | None = None) -> None:
    """``torch.compile`` each transformer block in place (regional compilation: the blocks share one compiled
    graph, dynamic in the batch's shape; parameter names, checkpoints and adapters stay as they are)."""
    for block in model.get_decoder().layers:
        block.compile(dynamic=True, backend=backend or COMPILE_BACKEND)


def forward_batch(rec: LLMRecommender, cfg: TrainConfig, examples: list[Example], parts: list[list[int]],
                  epoch: int, frozen: FrozenBlocks | None = None) -> Batch:
    """One forward's batch: the windows ``parts`` (indices into ``examples``, one list per logical batch)
    collated (S-DPO: each with its sampled negatives), with the frozen blocks' states when they are cached."""
    windows = [i for part in parts for i in part]
    exs = [examples[i] for i in windows]
    if cfg.loss == "sdpo":
        batch = _sdpo_batch(exs, rec, cfg, epoch, windows)
    else:
        batch = collate(exs, rec.trie, rec.tok.pad_token_id)
    if len(parts) > 1:
        batch.parts = [len(part) for part in parts]
    if frozen is not None:
        frozen.attach(batch)
    return batch


def forward_backward(model, compute: LossComputer, batch: Batch, acc: Accelerator) -> list[dict]:
    """One forward over ``batch`` and the backward of its logical batches' losses (each its batch's mean, divided by
    grad_accum in ``acc.backward``): an optimiser step's gradient is the same whichever way its batches are split
    into forwards. Under bf16 mixed precision (a GPU) the forward runs in autocast. The logs, one per batch."""
    with acc.autocast():
        losses, logs = compute.parts(model, batch)
    acc.backward(losses[0] if len(losses) == 1 else torch.stack(losses).sum())
    return logs


def _average_gradients(model, world: int) -> None:
    """All-reduce the trainable gradients and divide by the number of processes (what DDP does)."""
    grads = [p.grad for p in trainable(model) if p.grad is not None]
    flat = torch.cat([g.reshape(-1) for g in grads])
    dist.all_reduce(flat)
    flat /= world
    offset = 0
    for g in grads:
        g.copy_(flat[offset:offset + g.numel()].view_as(g))
        offset += g.numel()


def _default_validation(rec: LLMRecommender, model, split: str, n_users: int | None, beams: int):
    """Constrained beam search on ``n_users`` windows of ``split``: the ranks of their targets."""
    rec.model = model
    return evaluate(rec, rec.ds.split(split), "beam", n_users, k=beams)["ranks"]


def _valid_likelihood(rec: LLMRecommender, model, n_users: int | None) -> float:
    """The mean -log P_valid(target title | history) of ``n_users`` validation windows (the seeded sample every
    evaluation draws), by teacher forcing."""
    rec.model = model
    return float(np.mean(evaluate(rec, rec.ds.split("valid"), "likelihood", n_users)["nll_valid"]))


def _save_adapter(model, path: Path) -> None:
    """Save the LoRA adapter (loadable with plain ``PeftModel.from_pretrained``) as one atomic folder."""
    with publish_dir(path) as tmp:
        model.save_pretrained(str(tmp), selected_adapters=["default"])


def _sdpo_batch(exs: list[Example], rec: LLMRecommender, cfg: TrainConfig, epoch: int, idx: list[int]) -> Batch:
    """Positive + ``sdpo_negatives`` uniformly sampled other items per window, seeded per (epoch, window)."""
    items = rec.trie.sequences
    ids = np.asarray(sorted(items))
    rows, group = [], []
    for e, i in zip(exs, idx):
        rng = np.random.default_rng([cfg.seed, epoch, i])
        negs = []
        while len(negs) < cfg.sdpo_negatives:
            c = int(ids[rng.integers(len(ids))])
            if c != e.target and c not in negs:
                negs.append(c)
        prompt = e.input_ids[: e.prompt_len]
        start = len(rows)
        rows.append(e)
        rows += [Example(prompt + list(items[c]), e.prompt_len, c) for c in negs]
        group.append((start, list(range(start + 1, start + 1 + len(negs)))))
    batch = collate(rows, rec.trie, rec.tok.pad_token_id)
    batch.group = [(p, torch.tensor(n)) for p, n in group]
    return batch
