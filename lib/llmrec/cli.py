"""``python -m llmrec train|evaluate|compare|prepare|bench|figures``."""

from __future__ import annotations

import argparse
import json
import sys

from . import runs
from .bench import run_bench
from .chapters import run_batch
from .core.profiles import PROFILES, dataset_for, profile, train_config
from .data import DATASETS
from .data.prepare import add_prepare_args, run_prepare
from .llm import LOSSES
from .llm.prompts import TEMPLATES

SEQ_MODELS = ("sasrec", "gru4rec", "caser")


def _train(args) -> int:
    family = args.family or ("seqrec" if args.model in SEQ_MODELS else "llm")
    if family != "llm":
        if args.checkpoint_every:
            raise ValueError("--checkpoint-every applies to LLM runs; classic models checkpoint after every epoch, "
                             "as does Lite-LLM4Rec")
        if args.domain:
            raise ValueError("--domain picks the LLM's prompt; classic models and Lite-LLM4Rec have none")
        # the classic loop's options, shared by SASRec & co and Lite-LLM4Rec
        over = dict(dataset=dataset_for(args.profile, args.dataset),
                    loss=args.loss if args.loss != "msl-ats" else "ce",  # the LLM default means nothing here
                    alpha=None if args.alpha == "auto" else args.alpha, negatives=args.negatives, epochs=args.epochs,
                    lr=args.lr, seed=args.seed, device=args.device)
        if family == "lite":
            over.update(encoder=args.encoder, head=args.head, tune=args.tune, rec_layers=args.rec_layers,
                        positions=args.positions)
        else:
            over.update(model=args.model)
    else:
        over = dict(dataset=args.dataset, loss=args.loss, model=args.model, tau=args.tau, alpha=args.alpha,
                    epochs=args.epochs, lr=args.lr, n_train=args.n_train, layers=args.layers,
                    lora_layers=args.lora_layers, seed=args.seed, device=args.device, sdpo_ref=args.sdpo_ref,
                    max_steps=args.max_steps, log_grad_norms=args.log_grad_norms,
                    checkpoint_every=args.checkpoint_every, domain=args.domain)
    run = runs.train(train_config(args.profile, family, **over), run_dir=args.run_dir, progress=not args.quiet)
    if args.no_eval:
        print(run)
        return 0
    p = profile(args.profile)
    out = runs.evaluate(run, "test", n_users=p["eval_users"] if family == "llm" else None, k=p["eval_beams"],
                        progress=not args.quiet)
    print(run)
    print(json.dumps(out["summary"], indent=1))
    return 0


def _evaluate(args) -> int:
    out = runs.evaluate(args.run_dir, args.split, args.mode, n_users=args.users, k=args.beams, force=args.force,
                        embed=args.embed, beam_score=args.beam_score)
    print(json.dumps({k: out[k] for k in ("summary", "seconds_per_user", "n_users") if k in out}, indent=1))
    return 0


def _compare(args) -> int:
    for row in runs.compare(args.run_a, args.run_b, args.key):
        print(json.dumps(row))
    return 0


def _bench(args) -> int:
    print(json.dumps(run_bench(args.what, args.out), indent=1))
    return 0


def _figures(args) -> int:
    return run_batch(profile=args.profile, device=args.device, only=args.only, publish=args.publish,
                     dataset=args.dataset)


def positive(typ, zero: bool = False):
    """An argparse type: a number of ``typ`` that is > 0 (or >= 0 with ``zero``), else a message naming it."""
    def parse(text: str):
        try:
            value = typ(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
        if value < 0 or (value == 0 and not zero):
            raise argparse.ArgumentTypeError(f"must be {'>= 0' if zero else '> 0'}, got {text}")
        return value
    return parse


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="llmrec", description=__doc__)
    sub = ap.add_subparsers(dest="cmd", required=True)

    t = sub.add_parser("train", help="train (or reuse from the run cache) and evaluate on test")
    t.add_argument("--family", default=None, choices=["llm", "seqrec", "lite"],
                   help="llm: the generative LLM (MSL paper); seqrec: SASRec/GRU4Rec/Caser; lite: Lite-LLM4Rec "
                        "(default: seqrec for --model sasrec/gru4rec/caser, else llm)")
    t.add_argument("--dataset", default=None, help=f"{', '.join(DATASETS)} or a prepared folder")
    t.add_argument("--loss", default="msl-ats", help=f"LLM: {', '.join(LOSSES)}; sasrec/gru4rec/caser: ce, bce, bpr, "
                                                     "sampled-softmax, sce")
    t.add_argument("--model", default=None, help="smollm2-135m, tiny, a local HF folder, sasrec, gru4rec or caser")
    t.add_argument("--profile", default="quick", choices=sorted(PROFILES))
    for name, typ in (("--tau", positive(float)), ("--epochs", positive(int)), ("--lr", positive(float)),
                      ("--n-train", positive(int)), ("--layers", positive(int)), ("--lora-layers", positive(int)),
                      ("--seed", int), ("--negatives", positive(int)), ("--max-steps", positive(int)),
                      ("--checkpoint-every", positive(int))):
        t.add_argument(name, type=typ, default=None)
    lite = t.add_argument_group("Lite-LLM4Rec (--family lite)")
    lite.add_argument("--encoder", default=None, choices=["smollm2-135m", "minilm", "tiny", "none"],
                      help="item LLM (none: learned item-id embeddings)")
    lite.add_argument("--head", default=None, choices=["mlp", "dot"])
    lite.add_argument("--tune", default=None, choices=["lora", "frozen", "full"], help="the recommendation LLM")
    lite.add_argument("--rec-layers", type=positive(int), default=None, help="blocks of the recommendation LLM")
    lite.add_argument("--positions", default=None, choices=["all", "last"], help="positions trained with the loss")
    t.add_argument("--alpha", default=None, type=lambda s: s if s == "auto" else float(s))
    t.add_argument("--device", default=None)
    t.add_argument("--domain", default=None, choices=sorted(TEMPLATES),
                   help="the prompt's template (default: the dataset's meta.json \"domain\", else generic)")
    t.add_argument("--sdpo-ref", default=None, help="run directory of the LML run S-DPO starts from")
    t.add_argument("--run-dir", default=None)
    t.add_argument("--log-grad-norms", type=positive(int, zero=True), nargs="?", const=1, default=None, metavar="K",
                   help="log the gradient norms of L1 and L2 every K steps (default K: 1; 0: never)")
    t.add_argument("--no-eval", action="store_true")
    t.add_argument("--quiet", action="store_true")
    t.set_defaults(func=_train)

    e = sub.add_parser("evaluate", help="evaluate a finished run")
    e.add_argument("run_dir")
    e.add_argument("--mode", default=None, choices=["beam", "full", "ground", "likelihood"],
                   help="LLM: beam (default), full (exact ranking of every item), ground, likelihood (teacher-forced "
                        "-log P of the target title: nll_valid, nll_full); classic models: full")
    e.add_argument("--split", default="test", choices=["valid", "test"])
    e.add_argument("--users", type=positive(int), default=None, help="seeded sample of the split's windows (default: all)")
    e.add_argument("--beams", type=positive(int), default=10, help="beams / list length of the list modes")
    e.add_argument("--embed", default="llm", choices=["llm", "minilm"], help="grounding encoder (--mode ground)")
    e.add_argument("--beam-score", default="full", choices=["full", "valid"],
                   help="LLM beam search: score beams by the full-vocabulary log-softmax (default) or by log P_valid")
    e.add_argument("--force", action="store_true")
    e.set_defaults(func=_evaluate)

    c = sub.add_parser("compare", help="paired bootstrap of two evaluated runs")
    c.add_argument("run_a")
    c.add_argument("run_b")
    c.add_argument("--key", default=None, help="evaluation key (default: the one both runs share)")
    c.set_defaults(func=_compare)

    p = sub.add_parser("prepare", help="Amazon 2014 reviews + metadata -> windows (5-core, window 11, 8:1:1)")
    add_prepare_args(p)
    p.set_defaults(func=run_prepare)

    b = sub.add_parser("bench", help="benchmarks (side by side in one run)")
    b.add_argument("what", nargs="?", default="all", choices=["losses", "trie", "seqrec", "decode", "all"])
    b.add_argument("--out", default=None, help="write the whole result here (default: bench/<name>.json each)")
    b.set_defaults(func=_bench)

    f = sub.add_parser("figures", help="run every chapter notebook with papermill")
    f.add_argument("--profile", default="quick", choices=sorted(PROFILES))
    f.add_argument("--device", default="cpu")
    f.add_argument("--only", nargs="*", default=None, help="chapter name prefixes to run")
    f.add_argument("--dataset", default=None, help="every chapter on this dataset (a name or a prepared folder)")
    f.add_argument("--publish", action=argparse.BooleanOptionalAction, default=None,
                   help="write figures into the committed figures/ (default: only for --profile quick on the cpu)")
    f.set_defaults(func=_figures)
    return ap


def main(argv=None) -> int:
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as e:  # argparse has printed the usage and the flag's error
        return int(e.code or 0)
    try:
        return args.func(args)
    except (ValueError, FileNotFoundError, KeyError) as e:
        print(f"llmrec {args.cmd}: error: {e}", file=sys.stderr)
        return 2
    except RuntimeError as e:  # ModelError and friends
        print(f"llmrec {args.cmd}: error: {e}", file=sys.stderr)
        return 2
