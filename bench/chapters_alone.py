"""How long each chapter takes opened on its own, as a reader runs it: the chapter's default parameters (the
committed quick runs of ``results/quick/`` read beneath the run cache), an empty run cache, one chapter after
another in fresh kernels; whether anything was trained (the run cache stays empty when nothing was). Writes
``bench/chapters_alone.json``, which ``python -m llmrec tables`` quotes in docs/course.md.

    python bench/chapters_alone.py [--only 05 08]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import papermill as pm

from llmrec.bench import machine
from llmrec.chapters import chapters
from llmrec.core.io import repo_root, write_json

RESULT = repo_root() / "bench" / "chapters_alone.json"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", nargs="*", help="chapter name prefixes (default: every chapter)")
    args = ap.parse_args(argv)
    out = {"what": "each chapter alone with its default parameters, an empty run cache, a fresh kernel",
           "machine": machine(), "when": time.strftime("%Y-%m-%d %H:%M:%S"),
           "load average before": os.getloadavg()[0], "chapters": {}}
    with tempfile.TemporaryDirectory() as tmp:
        for nb in chapters(only=args.only):
            runs = Path(tmp) / nb.stem / "runs"
            os.environ.update(LLMREC_RUNS=str(runs), LLMREC_FIGURES=str(Path(tmp) / nb.stem / "figures"))
            t0 = time.perf_counter()
            pm.execute_notebook(str(nb), str(Path(tmp) / nb.name), cwd=str(nb.parent), kernel_name="python3",
                                progress_bar=False)
            seconds = time.perf_counter() - t0
            trained = sorted(p.name for p in runs.iterdir()) if runs.is_dir() else []
            out["chapters"][nb.stem[:2]] = {"seconds": round(seconds, 1), "runs trained": trained}
            print(f"{nb.stem}: {seconds:.1f} s, {len(trained)} runs trained", file=sys.stderr, flush=True)
    out["load average after"] = os.getloadavg()[0]
    write_json(RESULT, out)
    print(RESULT)
    return 0


if __name__ == "__main__":
    sys.exit(main())
