"""What ``llmrec verdicts`` costs on a reader's dataset of about 10,000 training windows (README, docs/transfer.md).

The dataset: whole users of the shipped Books data, drawn with a fixed seed until they hold about 10,000
training windows, written as a prepared folder (``llmrec.data.dataset.user_subset``: the same folder on every
machine). Without ``--time`` the script writes the folder and prints the runs ``llmrec verdicts`` would train,
each with its estimate (``--plan``); with ``--time`` it times the whole command's work (every claim, ``quick``,
seed 0: ``llmrec.experiments.transfer.transfer_table``) and writes the measurement, with the estimate and the
machine, into ``bench/transfer_cost.json`` under the device's name (``python -m llmrec tables`` quotes it).

    python bench/transfer_cost.py [--out runs/books-10k] [--train-windows 10000] [--seed 0]
    LLMREC_RUNS=$(mktemp -d) python bench/transfer_cost.py --time [--device cuda]   # an empty run cache

The same from the command line: ``python -m llmrec verdicts --dataset runs/books-10k [--plan]``.
"""

from __future__ import annotations

import argparse
import sys
import time

from llmrec.core.io import read_json, repo_root, write_json
from llmrec.data import load_dataset
from llmrec.data.dataset import save_dataset, user_subset

RESULT = repo_root() / "bench" / "transfer_cost.json"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="runs/books-10k", help="the folder to write (default runs/books-10k)")
    ap.add_argument("--train-windows", type=int, default=10_000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--time", action="store_true", help=f"train and time every claim; write {RESULT.name}")
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args(argv)
    ds = user_subset(load_dataset("books"), args.train_windows, args.seed, name="books-10k")
    save_dataset(ds, args.out)
    load_dataset(args.out)  # the folder passes the checks a reader's would
    print(f"{args.out}: {ds.summary()}", file=sys.stderr)

    from llmrec.bench import machine
    from llmrec.experiments import transfer, transfer_runs

    *_, todo = transfer.plan(args.out, "quick")
    estimate = sum(transfer_runs.estimates(todo))
    print(transfer_runs.describe(todo))
    if not args.time:
        return 0
    t0 = time.perf_counter()
    table = transfer.transfer_table(args.out, "quick", device=args.device, progress=True)
    seconds = time.perf_counter() - t0
    a = table.attrs
    result = read_json(RESULT) if RESULT.exists() else {}
    result[args.device] = {
        "machine": machine(), "when": time.strftime("%Y-%m-%d %H:%M:%S"), "profile": "quick", "seeds": [0],
        "dataset": {**ds.summary(), "folder": "bench/transfer_cost.py (Books users, seed "
                    f"{args.seed}, {args.train_windows} training windows)"},
        "runs": len(todo), "trained": len(a["trained"]), "found in the run cache": len(a["found"]),
        "estimate_s": estimate, "seconds": round(seconds, 1)}
    write_json(RESULT, result)
    print(f"{len(a['trained'])} runs trained, {len(a['found'])} found in the run cache: {seconds / 60:.1f} min "
          f"(estimated {estimate / 60:.0f}); {RESULT}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
