"""``python -m llmrec train|evaluate|compare|prepare|bench|figures``."""

from __future__ import annotations

import argparse
import json
import sys

SEQ_MODELS = ("sasrec", "gru4rec", "caser")


def _train(args) -> int:
    if args.model in SEQ_MODELS:
        from .seqrec import evaluate_seqrec, profile_dataset, seqrec_config, train_seqrec

        loss = args.loss if args.loss != "msl-ats" else "ce"  # the LLM default means nothing here
        over = dict(model=args.model, dataset=profile_dataset(args.profile, args.dataset or "toy"), loss=loss,
                    alpha=None if args.alpha == "auto" else args.alpha, negatives=args.negatives, epochs=args.epochs,
                    lr=args.lr, seed=args.seed, device=args.device)
        cfg = seqrec_config(args.profile, **{k: v for k, v in over.items() if v is not None})
        run = train_seqrec(cfg, run_dir=args.run_dir, progress=not args.quiet)
        out = evaluate_seqrec(run, split="test")
    else:
        from .evaluate import evaluate_run
        from .profiles import profile, train_config
        from .train import train

        cfg = train_config(args.profile, dataset=args.dataset, loss=args.loss, model=args.model, tau=args.tau,
                           alpha=args.alpha, epochs=args.epochs, lr=args.lr, n_train=args.n_train, layers=args.layers,
                           lora_layers=args.lora_layers, seed=args.seed, device=args.device, sdpo_ref=args.sdpo_ref,
                           max_steps=args.max_steps,
                           log_grad_norms=args.log_grad_norms or None)
        run = train(cfg, run_dir=args.run_dir, progress=not args.quiet)
        if args.no_eval:
            print(run)
            return 0
        p = profile(args.profile)
        out = evaluate_run(run, mode="beam", split="test", n_users=p["eval_users"], beams=p["eval_beams"],
                           progress=not args.quiet)
    print(run)
    print(json.dumps(out["summary"], indent=1))
    return 0


def _evaluate(args) -> int:
    from .runs import read_json

    cfg = read_json(f"{args.run_dir}/config.json")
    if cfg.get("model") in SEQ_MODELS:
        from .seqrec import evaluate_seqrec

        out = evaluate_seqrec(args.run_dir, split=args.split)
    else:
        from .evaluate import evaluate_run

        out = evaluate_run(args.run_dir, mode=args.mode, split=args.split, n_users=args.users, beams=args.beams,
                           force=args.force, embed=args.embed)
    print(json.dumps({k: out[k] for k in ("summary", "seconds_per_user", "n_users") if k in out}, indent=1))
    return 0


def _compare(args) -> int:
    from .metrics import paired_bootstrap
    from .runs import load_metrics

    a, b = load_metrics(args.run_a)[args.key], load_metrics(args.run_b)[args.key]
    if a["user_ids"] != b["user_ids"]:
        raise ValueError(f"the two runs were evaluated on different users under {args.key!r}")
    for m in ("ndcg@5", "ndcg@10", "hr@5", "hr@10"):
        print(json.dumps(paired_bootstrap(a["ranks"], b["ranks"], m)))
    return 0


def _bench(args) -> int:
    from .bench import run_bench

    print(json.dumps(run_bench(args.what, args.out), indent=1))
    return 0


def _figures(args) -> int:
    from .batch import run_batch

    return run_batch(profile=args.profile, device=args.device, only=args.only)


def build_parser() -> argparse.ArgumentParser:
    from .data import DATASETS
    from .profiles import PROFILES
    from .train import LOSSES

    ap = argparse.ArgumentParser(prog="llmrec", description=__doc__)
    sub = ap.add_subparsers(dest="cmd", required=True)

    t = sub.add_parser("train", help="train (or reuse from the run cache) and evaluate on test")
    t.add_argument("--dataset", default=None, help=f"{', '.join(DATASETS)} or a prepared folder")
    t.add_argument("--loss", default="msl-ats", help=f"LLM: {', '.join(LOSSES)}; sasrec/gru4rec/caser: ce, bce, bpr, "
                                                     "sampled-softmax, sce")
    t.add_argument("--model", default=None, help="smollm2-135m, tiny, a local HF folder, sasrec, gru4rec or caser")
    t.add_argument("--profile", default="quick", choices=sorted(PROFILES))
    for name, typ in (("--tau", float), ("--epochs", int), ("--lr", float), ("--n-train", int), ("--layers", int),
                      ("--lora-layers", int), ("--seed", int), ("--negatives", int), ("--max-steps", int)):
        t.add_argument(name, type=typ, default=None)
    t.add_argument("--alpha", default=None, type=lambda s: s if s == "auto" else float(s))
    t.add_argument("--device", default=None)
    t.add_argument("--sdpo-ref", default=None, help="run directory of the LML run S-DPO starts from")
    t.add_argument("--run-dir", default=None)
    t.add_argument("--log-grad-norms", type=int, nargs="?", const=1, default=None, metavar="K",
                   help="log the gradient norms of L1 and L2 every K steps (default K: 1)")
    t.add_argument("--no-eval", action="store_true")
    t.add_argument("--quiet", action="store_true")
    t.set_defaults(func=_train)

    e = sub.add_parser("evaluate", help="evaluate a finished run")
    e.add_argument("run_dir")
    e.add_argument("--mode", default="beam", choices=["beam", "exact", "ground"])
    e.add_argument("--split", default="test", choices=["valid", "test"])
    e.add_argument("--users", type=int, default=100)
    e.add_argument("--beams", type=int, default=10)
    e.add_argument("--embed", default="llm", choices=["llm", "minilm"], help="grounding encoder (--mode ground)")
    e.add_argument("--force", action="store_true")
    e.set_defaults(func=_evaluate)

    c = sub.add_parser("compare", help="paired bootstrap of two evaluated runs")
    c.add_argument("run_a")
    c.add_argument("run_b")
    c.add_argument("--key", default="test/beam/n100/b10")
    c.set_defaults(func=_compare)

    from .prepare import add_prepare_args, run_prepare

    p = sub.add_parser("prepare", help="Amazon 2014 reviews + metadata -> windows (5-core, window 11, 8:1:1)")
    add_prepare_args(p)
    p.set_defaults(func=run_prepare)

    b = sub.add_parser("bench", help="benchmarks (side by side in one run)")
    b.add_argument("what", nargs="?", default="all", choices=["losses", "trie", "seqrec", "all"])
    b.add_argument("--out", default=None, help="write the results JSON here")
    b.set_defaults(func=_bench)

    f = sub.add_parser("figures", help="run every chapter notebook with papermill")
    f.add_argument("--profile", default="quick", choices=sorted(PROFILES))
    f.add_argument("--device", default="cpu")
    f.add_argument("--only", nargs="*", default=None, help="chapter name prefixes to run")
    f.set_defaults(func=_figures)
    return ap


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (ValueError, FileNotFoundError, KeyError) as e:
        print(f"llmrec {args.cmd}: error: {e}", file=sys.stderr)
        return 2
    except RuntimeError as e:  # ModelError and friends
        print(f"llmrec {args.cmd}: error: {e}", file=sys.stderr)
        return 2
