"""What MSL's valid-token masking costs (``losses``, ``trie``).

``losses``: one LoRA training step (forward + backward) of SmolLM2-135M on a
real Toy batch of 8 windows, three ways, each in a fresh subprocess
(``python -m llmrec.bench _variant``) so that its peak resident memory is its own:

  a. straightforward: HF forward with full-vocabulary logits at every position,
     a dense |response| x |V| boolean mask per sample, ``-inf`` masking, softmax;
  b. fast MSL: hidden states of response positions only, projected onto their
     valid tokens only (:func:`llmrec.core.losses.project_valid`);
  c. the transformer body alone (forward + backward, no head): the floor.

``trie``: build time (tokenisation included) and AVT for Toy and Books, and
mask memory, dense against compact.
"""

from __future__ import annotations

import json
import resource
import statistics
import subprocess
import sys
import time

import torch

from ..core import losses as L
from ..data import load_dataset, sample_windows
from ..llm.config import TrainConfig
from ..llm.model import add_lora, load_llm, load_tokenizer, trainable
from ..llm.objectives import collate, response_hidden, valid_logits
from ..llm.prompts import PromptEncoder
from ..llm.trie import ItemTrie


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
