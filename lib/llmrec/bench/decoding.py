"""What batching across users buys the LLM's decoders (``decode``).

Users/s of the decoders one user at a time against batched across users, on the
same Toy test users in one run (SmolLM2-135M with a fresh LoRA adapter, as
evaluation holds it): 10-beam constrained beam search, exact ranking and the
teacher-forced likelihood, with whether both give the same lists, ranks and values.
"""

from __future__ import annotations

import os

import numpy as np
import torch

from ..core.metrics import rank_of_target
from ..core.samplers import sample_rows
from ..llm.config import TrainConfig
from ..llm.model import base_model
from .common import _timed


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
