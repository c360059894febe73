"""How long ``make figures`` takes from scratch: the canonical quick batch run in a fresh clone with an empty run
cache and an empty cache of frozen states and item vectors (only the converted base model kept: no download is
possible here), read back from the executed copies it wrote (each chapter's wall seconds are in its
``metadata.llmrec.seconds``). Writes ``bench/figures_scratch.json``, which ``python -m llmrec tables`` quotes in
docs/course.md and docs/benchmarks.md.

    LLMREC_CACHE=<empty folder> python -m llmrec figures --profile quick --device cpu    # in the fresh clone
    python bench/figures_scratch.py <the clone> [--load <file of /proc/loadavg lines sampled during the batch>]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

import nbformat

from llmrec.bench import machine
from llmrec.core.io import repo_root, write_json

RESULT = repo_root() / "bench" / "figures_scratch.json"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("clone", type=Path, help="the fresh clone in which the batch ran")
    ap.add_argument("--load", type=Path, help="/proc/loadavg lines sampled during the batch (1-minute load first)")
    ap.add_argument("--out", type=Path, default=RESULT, help=f"where to write (default {RESULT})")
    args = ap.parse_args(argv)
    executed = sorted((args.clone / "notebooks" / "executed").glob("[0-9][0-9]_*.ipynb"))
    if not executed:
        raise SystemExit(f"{args.clone}: no executed chapters in notebooks/executed/")
    seconds, cells = {}, {}
    for path in executed:
        meta = nbformat.read(path, as_version=4).metadata.get("llmrec", {})
        if "seconds" not in meta:
            raise SystemExit(f"{path}: no metadata.llmrec.seconds (not written by `llmrec figures`)")
        seconds[path.name[:2]] = meta["seconds"]
        if meta.get("cell seconds"):
            cells[path.name[:2]] = meta["cell seconds"]
    commit = subprocess.run(["git", "-C", str(args.clone), "rev-parse", "HEAD"], capture_output=True, text=True,
                            check=True).stdout.strip()
    load = None
    if args.load:
        ones = [float(line.split()[0]) for line in args.load.read_text().splitlines() if line.strip()]
        load = {"min": min(ones), "median": sorted(ones)[len(ones) // 2], "max": max(ones), "samples": len(ones)}
    write_json(args.out, {
        "what": "make figures (quick, CPU) from a fresh clone with an empty run cache and empty caches of frozen "
                "states and item vectors: every run trained from scratch; each chapter's wall seconds as its "
                "executed copy recorded them (metadata.llmrec.seconds)",
        "commit": commit, "machine": machine(), "date": time.strftime("%Y-%m-%d"),
        "load average during (1 min)": load, "total seconds": round(sum(seconds.values()), 1), "seconds": seconds,
        **({"cell seconds (cells of 5 s or more, by index)": cells} if cells else {})})
    print(args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
