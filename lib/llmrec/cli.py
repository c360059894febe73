"""``python -m llmrec train|evaluate|compare|adopt|prepare|check|bench|figures|tables|verdicts|select-lite|remake``.

The modules that import torch, transformers or peft are imported inside the subcommands that need them, so
``--help`` and ``check`` answer in about a second. An error is one line on stderr (exit status 2) naming what
to fix (for data: the file, line and field); ``--debug`` (or ``LLMREC_DEBUG=1``) shows the traceback instead.
"""

from __future__ import annotations

import argparse
import importlib
import json
import math
import os
import sys
import time
import warnings

from .core.profiles import PROFILES, canonical, dataset_for, profile, train_config
from .data import DATASETS, check_dataset, load_dataset
from .data.prepare import add_prepare_args, run_prepare
from .core import families

def _train(args) -> int:
    spec = families.get(args.family or families.for_model(args.model))
    over = {key: getattr(args, key) for key in families.COMMON if key in spec.common}
    over["dataset"] = dataset_for(args.profile, args.dataset)
    for fam in families.REGISTRY.values():  # another family's option given: a mistake, said before any work
        for opt in fam.options:
            if getattr(args, _dest(opt.flag)) is not None and opt not in spec.options:
                raise ValueError(f"{opt.flag} applies to {fam.name} runs; this is a {spec.name} run "
                                 f"(--family {spec.name})")
    for key in families.COMMON:
        if key not in spec.common and getattr(args, key) is not None and key != "dataset":
            raise ValueError(f"--{key} does not apply to {spec.name} runs")
    if over.get("alpha") == "auto" and spec.name != "llm":
        raise ValueError("--alpha auto (|Z| / |Z_valid| per position) applies to the LLM's msl-alpha only")
    over.update({opt.key: getattr(args, _dest(opt.flag)) for opt in spec.options})
    load_dataset(over["dataset"])  # the data's check, before torch is even imported
    from . import runs

    run = runs.train(train_config(args.profile, spec.name, **over), run_dir=args.run_dir, progress=not args.quiet)
    if args.no_eval:
        print(run)
        return 0
    p = profile(args.profile)
    out = runs.evaluate(run, "test", n_users=p[spec.test_users] if spec.test_users else None, k=p["eval_beams"],
                        progress=not args.quiet)
    print(run)
    print(json.dumps(out["summary"], indent=1))
    return 0


def _dest(flag: str) -> str:
    return flag.lstrip("-").replace("-", "_")


def _evaluate(args) -> int:
    from . import runs

    out = runs.evaluate(args.run_dir, args.split, args.mode, n_users=args.users, k=args.beams, force=args.force,
                        embed=args.embed, beam_score=args.beam_score)
    print(json.dumps({k: out[k] for k in ("summary", "seconds_per_user", "n_users") if k in out}, indent=1))
    return 0


def _compare(args) -> int:
    from . import runs

    for row in runs.compare(args.run_a, args.run_b, args.key):
        print(json.dumps(row))
    return 0


def _adopt(args) -> int:
    from . import runs

    for run in args.run_dir:
        print(run, json.dumps(runs.adopt(run)))
    return 0


def _bench(args) -> int:
    from .bench import run_bench

    print(json.dumps(run_bench(args.what, args.out, device=args.device), indent=1))
    return 0


def _figures(args) -> int:
    if args.dataset:
        load_dataset(dataset_for(args.profile, args.dataset))  # the data's check, before papermill and the chapters
    from .chapters import run_batch

    return run_batch(profile=args.profile, device=args.device, only=args.only, publish=args.publish,
                     dataset=args.dataset)


def _verdicts(args) -> int:
    dataset = dataset_for(args.profile, args.dataset)
    load_dataset(dataset)  # the data's check, before torch is even imported
    if args.publish and not args.reference:
        raise ValueError("--publish commits the reference runs of toy or books: give --reference too (a table of "
                         "your own data is saved under runs/verdicts/)")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")  # one bar: no "Loading weights" for each run
    from .experiments import transfer, transfer_runs

    t0 = time.perf_counter()
    source = "reference" if args.reference else "train" if args.train else None
    if args.plan:
        *_, todo = transfer.plan(dataset, args.profile, args.seeds, source, args.claims, args.publish)
        print(transfer_runs.describe(todo, args.publish))
        return 0
    table = transfer.transfer_table(dataset, args.profile, args.seeds, source, args.device, args.claims,
                                    progress=not args.quiet, publish=args.publish)
    with pd_options():
        print(transfer.show(table).to_string(index=False))
    path = transfer.save_table(table, args.out)
    a, minutes = table.attrs, (time.perf_counter() - t0) / 60
    how = "the committed reference results" if a["source"] == "committed" else f"profile {a['profile']}"
    print(f"{a['dataset']}, {how}: {len(a['trained'])} runs trained, {len(a['found'])} found in the run cache; "
          f"{minutes:.1f} min in all; the table: {path}")
    return 0


def pd_options():
    """pandas printing the whole table, whatever the terminal's width."""
    import pandas as pd

    return pd.option_context("display.width", None, "display.max_colwidth", None, "display.max_rows", None)


def _select_lite(args) -> int:
    from .experiments.lite_selection import select_lite

    chosen = select_lite(args.profile, args.dataset, args.device)["chosen"]
    print(f"chosen on validation: {', '.join(f'{k}={v}' for k, v in chosen.items())}")
    return 0


def _remake(args) -> int:
    from .experiments.remake import drift_text, remake

    for path in args.records:
        r = remake(path, scorings=args.beam_scorings)
        print(f"{path}: {r['verdict']} ({drift_text(r['drift'])}"
              + (f"; not the same: {', '.join(r['differs'])})" if r["differs"] else ")"), flush=True)
    return 0


def _tables(args) -> int:
    from .experiments.doc_tables import tables_command

    return tables_command(check=args.check)


def positive(typ, zero: bool = False):
    """An argparse type: a number of ``typ`` that is > 0 (or >= 0 with ``zero``), else a message naming it."""
    def parse(text: str):
        try:
            value = typ(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
        if not math.isfinite(value):
            raise argparse.ArgumentTypeError(f"must be a finite number, got {text}")
        if value < 0 or (value == 0 and not zero):
            raise argparse.ArgumentTypeError(f"must be {'>= 0' if zero else '> 0'}, got {text}")
        return value
    return parse


def _profile(name: str) -> str:
    """--profile: an old name (``full``) becomes today's, said in one line on stderr."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        name = canonical(name)
    for w in caught:
        print(f"llmrec: warning: {w.message}", file=sys.stderr)
    return name


TYPES = {"positive int": positive(int), "positive float": positive(float), "count": positive(int, zero=True),
         "positive int or auto": lambda text: text if text == "auto" else positive(int)(text)}


def _argparse(opt: families.Option, fam: families.Family) -> dict:
    """argparse's keywords of a family's option: its type by name (:data:`TYPES`), its choices from the
    family's configuration class when it declares none (so the command line never copies them)."""
    kw = dict(opt.kwargs)
    if isinstance(kw.get("type"), str):
        kw["type"] = TYPES[kw["type"]]
    if isinstance(kw.get("choices"), str):  # "module:NAME" of a table whose keys are the choices
        module, _, name = kw["choices"].partition(":")
        kw["choices"] = tuple(sorted(getattr(importlib.import_module(module), name)))
    choices = fam.load("config").CHOICES.get(opt.key)
    if "choices" not in kw and choices is not None:
        kw["choices"] = tuple(choices)
    return kw


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="llmrec", description=__doc__.split("\n")[0])
    ap.add_argument("--debug", action="store_true",
                    help="on an error, show the traceback instead of one line (also: LLMREC_DEBUG=1)")
    sub = ap.add_subparsers(dest="cmd", required=True)

    t = sub.add_parser("train", help="train (or reuse from the run cache) and evaluate on test")
    t.add_argument("--family", default=None, choices=families.names(),
                   help="; ".join(f"{f.name}: {f.summary}" for f in families.REGISTRY.values())
                   + " (default: the family of --model, else llm)")
    t.add_argument("--dataset", default=None, help=f"{', '.join(DATASETS)} or a prepared folder")
    t.add_argument("--loss", default=None, help="; ".join(
        f"{f.name}: {', '.join(f.load('config').CHOICES['loss'])}" for f in families.REGISTRY.values()
        if "loss" in f.load("config").CHOICES) + " (default: the family's)")
    t.add_argument("--model", default=None, help="an LLM (smollm2-135m, tiny, a local HF folder) or "
                   + ", ".join(m for f in families.REGISTRY.values() for m in f.models))
    t.add_argument("--profile", default="quick", type=_profile, choices=sorted(PROFILES))
    for name, typ in (("--epochs", positive(int)), ("--lr", positive(float)), ("--seed", int),
                      ("--negatives", positive(int))):
        t.add_argument(name, type=typ, default=None)
    t.add_argument("--alpha", default=None, type=lambda s: s if s == "auto" else float(s))
    t.add_argument("--device", default=None)
    added = set()
    for fam in families.REGISTRY.values():
        group = t.add_argument_group(f"{fam.name} ({fam.summary})") if fam.options else None
        for opt in fam.options:
            if opt.flag not in added:
                group.add_argument(opt.flag, default=None, dest=_dest(opt.flag), **_argparse(opt, fam))
                added.add(opt.flag)
    t.add_argument("--run-dir", default=None)
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

    a = sub.add_parser("adopt", help="record that runs made before run identities held the pretrained weights were "
                                     "trained on the weights installed now (you vouch for it)")
    a.add_argument("run_dir", nargs="+")
    a.set_defaults(func=_adopt)

    p = sub.add_parser("prepare", help="Amazon 2014 reviews + metadata -> windows (5-core, window 11, 8:1:1)")
    add_prepare_args(p)
    p.set_defaults(func=run_prepare)

    k = sub.add_parser("check", help="read every file of a dataset folder: every problem (file, line, field), then a "
                                     "summary; exit status 1 on any problem")
    k.add_argument("folder", help="a dataset folder (items.json, train/valid/test.csv, .gz or not), or toy | books")
    k.add_argument("--limit", type=positive(int), default=20, help="problems shown at most (default 20; all counted)")
    k.set_defaults(func=_check)

    b = sub.add_parser("bench", help="benchmarks (side by side in one run)")
    b.add_argument("what", nargs="?", default="all",
                   choices=["losses", "trie", "seqrec", "decode", "train", "costs", "cuda", "all"],
                   help="costs: the cost table make figures estimates from (after train); cuda: a GPU's figures "
                        "(bench/cuda.json, with --device cuda; not part of all)")
    b.add_argument("--out", default=None, help="write the whole result here (default: bench/<name>.json each)")
    b.add_argument("--device", default="cpu", help="cpu (default) or cuda")
    b.set_defaults(func=_bench)

    f = sub.add_parser("figures", help="run every chapter notebook with papermill")
    f.add_argument("--profile", default="quick", type=_profile, choices=sorted(PROFILES))
    f.add_argument("--device", default="cpu")
    f.add_argument("--only", nargs="*", default=None, help="chapter name prefixes to run")
    f.add_argument("--dataset", default=None, help="every chapter on this dataset (a name or a prepared folder)")
    f.add_argument("--publish", action=argparse.BooleanOptionalAction, default=None,
                   help="write figures into the committed figures/ (default: only for --profile quick on the cpu)")
    f.set_defaults(func=_figures)

    v = sub.add_parser("verdicts", help="do the papers' conclusions transfer? each headline claim on a dataset: the "
                                        "paired difference [95%% interval], seeds and verdict (trains what is missing)")
    v.add_argument("--dataset", required=True, help=f"{', '.join(DATASETS)} or a prepared folder (toy and books: "
                   "read from the committed reference results unless --train)")
    v.add_argument("--profile", default="quick", type=_profile, choices=sorted(PROFILES),
                   help="the profile every run is trained at (default quick)")
    v.add_argument("--device", default=None)
    v.add_argument("--seeds", type=int, nargs="+", default=None,
                   help="default: 0 when training; the reference's 0 1 2 for toy and books")
    v.add_argument("--claims", nargs="+", default=None, metavar="KEY",
                   help="only these claims (default: every one of llmrec.experiments.transfer.CLAIMS)")
    v.add_argument("--train", action="store_true", help="train toy or books at --profile instead of reading "
                                                        "their committed reference results")
    v.add_argument("--reference", action="store_true",
                   help="toy or books: train the committed reference's missing runs (each arm at its reference "
                        "profile, seeds 0 1 2); hours on 2 CPU cores")
    v.add_argument("--publish", action="store_true",
                   help="with --reference: commit each run as it finishes under results/<profile>/transfer/")
    v.add_argument("--out", default=None, help="where to save the table (default runs/verdicts/<dataset>-<how>.json)")
    v.add_argument("--plan", action="store_true",
                   help="train nothing: list the runs the command would train, each with its estimate on 2 CPU cores")
    v.add_argument("--quiet", action="store_true", help="no progress bar")
    v.set_defaults(func=_verdicts)

    s = sub.add_parser("select-lite", help="choose Lite-LLM4Rec's blocks and learning rate on validation: a small "
                                           "grid, each run in the run cache (resumable); results/<profile>/"
                                           "lite_selection.json")
    s.add_argument("--profile", default="paper", type=_profile, choices=sorted(PROFILES))
    s.add_argument("--device", default=None, help="default: the profile's")
    s.add_argument("--dataset", default=None)
    s.set_defaults(func=_select_lite)

    r = sub.add_parser("remake", help="train a committed LLM record's run again from its configuration (its weights "
                                      "were not kept), evaluate again all it holds and rewrite it: replayed (the "
                                      "same log and evaluations, new ones added) or made whole from the new run")
    r.add_argument("records", nargs="+", help="results/<profile>/.../<name>.json")
    r.add_argument("--beam-scorings", action="store_true",
                   help="an LLM run also gets its validation beams scored both ways and its test beams by log P_valid")
    r.set_defaults(func=_remake)

    g = sub.add_parser("tables", help="write the results tables and numbers of README.md and docs/*.md from the "
                                      "committed results/ and bench/*.json (their generated regions only)")
    g.add_argument("--check", action="store_true",
                   help="write nothing: print a diff of each page that differs, exit status 1 if any does")
    g.set_defaults(func=_tables)
    return ap


def _check(args) -> int:
    report = check_dataset(args.folder, limit=args.limit)
    print(report)
    return 1 if report.problems else 0


EXPECTED = (ValueError, OSError, KeyError, RuntimeError)  # DataError, ModelError, a missing file: their message says it


def one_line(e: BaseException) -> str:
    """An exception as one line: its message (an unexpected kind: with its type and where to see the traceback)."""
    text = " ".join(line.strip() for line in str(e).splitlines() if line.strip()) or type(e).__name__
    if isinstance(e, EXPECTED):
        return text
    return f"{type(e).__name__}: {text} (--debug or LLMREC_DEBUG=1 shows the traceback)"


def main(argv=None) -> int:
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as e:  # argparse has printed the usage and the flag's error
        return int(e.code or 0)
    if args.debug or os.environ.get("LLMREC_DEBUG", "0") not in ("", "0"):
        return args.func(args)
    try:
        return args.func(args)
    except Exception as e:  # noqa: BLE001 -- a user's files can fail in any way: one line, not a traceback
        print(f"llmrec {args.cmd}: error: {one_line(e)}", file=sys.stderr)
        return 2
