"""CUDA checks of the LLM paths that the CPU test suite cannot reach (run on a machine with a GPU).

    python bench/cuda_check.py [--device cuda] [--out bench/cuda_check.json]

On the tiny random Llama (SmolLM2 tokenizer) and the synthetic catalogue, in
float32 and bfloat16: the fast beam-search engine (shared-prompt attention)
returns the same titles and scores as Hugging Face ``generate``, and the
batched engine the fast one's run one user at a time; exact ranking
and the teacher-forced likelihood agree with one plain forward per title; a
smoke MSL + ATS run trains on the device (accelerate, bf16 autocast) with
LoRA on the top block (frozen lower blocks cached) and is evaluated by beam
search and likelihood. Prints and writes one JSON report; exits 1 on a failed
check.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time

import numpy as np
import torch

from llmrec.core.io import write_json
from llmrec.core.profiles import train_config
from llmrec.data import load_dataset
from llmrec.llm import LLMRecommender, TrainConfig, decode, train
from llmrec.llm.model import load_llm
from llmrec.llm.prompts import PromptEncoder
from llmrec.llm.trie import ItemTrie
from llmrec.runs import evaluate


def decode_checks(device: str, dtype: torch.dtype) -> dict:
    model, tok = load_llm("tiny", device=device, dtype=dtype)
    model.eval()
    data = load_dataset("synthetic")
    trie = ItemTrie.from_titles(data.items, tok)
    enc = PromptEncoder(tok, trie, data.items, max_history=3)
    prompts = [enc.prompt_ids(list(h)) for h in data.test["history"].iloc[:6]]
    t0 = time.perf_counter()
    fast = decode.beam_search_batch(model, prompts, trie, num_beams=5, batch_size=3, engine="fast")
    t_fast = time.perf_counter() - t0
    t0 = time.perf_counter()
    hf = decode.beam_search_batch(model, prompts, trie, num_beams=5, batch_size=3, engine="hf")
    t_hf = time.perf_counter() - t0
    same_titles = all([i for i, _ in a] == [i for i, _ in b] for a, b in zip(fast, hf))
    score_gap = max(abs(sa - sb) for a, b in zip(fast, hf) for (_, sa), (_, sb) in zip(a, b))
    one = [decode.beam_search_batch(model, [p], trie, num_beams=5, batch_size=1, engine="fast")[0] for p in prompts]
    batched = decode.beam_search_batch(model, prompts, trie, num_beams=5, engine="batched")
    same_batched = all([i for i, _ in a] == [i for i, _ in b] for a, b in zip(batched, one))
    batched_gap = max(abs(sa - sb) for a, b in zip(batched, one) for (_, sa), (_, sb) in zip(a, b))
    picked = sorted(data.items)[:40]
    exact = decode.score_all_items(model, prompts[0], trie, "valid", item_ids=picked)
    plain = decode.score_items(model, prompts[0], trie, picked, "valid")
    return {"same beam titles (fast vs hf)": bool(same_titles), "max beam score gap": float(score_gap),
            "same beam titles (batched vs fast, one user at a time)": bool(same_batched),
            "max batched beam score gap": float(batched_gap),
            "exact vs plain max gap": float(np.abs(exact - plain).max()), "fast s": t_fast, "hf s": t_hf}


def training_check(device: str, root: str) -> dict:
    cfg = train_config("smoke", loss="msl-ats", device=device, dtype="bfloat16", lora_layers=1, max_steps=6,
                       validate=False)
    run = train(cfg, run_dir=f"{root}/run", progress=False)
    beam = evaluate(run, "test", "beam", n_users=8, k=4, progress=False)
    nll = evaluate(run, "test", "likelihood", n_users=8, progress=False)
    rec = LLMRecommender.from_run(run)
    df = rec.ds.test.iloc[:4]
    plain = [-decode.score_items(rec.model, rec.encoder.prompt_ids(list(h)), rec.trie, [t], "valid")[0]
             for h, t in zip(df["history"], df["target"])]
    got = rec.likelihood([list(h) for h in df["history"]], df["target"].tolist())["nll_valid"]
    return {"beam hr@10 (8 users)": beam["summary"]["hr@10"], "mean nll_valid (8 users)": nll["summary"]["nll_valid"],
            "likelihood vs plain max gap": float(np.abs(np.asarray(plain) - got).max()),
            "model device": str(next(rec.model.parameters()).device)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    report = {"device": args.device, "torch": torch.__version__,
              "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None}
    report["float32"] = decode_checks(args.device, torch.float32)
    report["bfloat16"] = decode_checks(args.device, torch.bfloat16)
    with tempfile.TemporaryDirectory() as root:
        report["training"] = training_check(args.device, root)
    ok = (report["float32"]["same beam titles (fast vs hf)"] and report["float32"]["max beam score gap"] < 1e-3
          and report["float32"]["same beam titles (batched vs fast, one user at a time)"]
          and report["float32"]["max batched beam score gap"] < 1e-3
          and report["float32"]["exact vs plain max gap"] < 1e-3
          and report["training"]["likelihood vs plain max gap"] < 5e-2)
    report["ok"] = bool(ok)
    print(json.dumps(report, indent=1))
    if args.out:
        write_json(args.out, report)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
