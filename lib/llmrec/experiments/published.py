"""The committed results under ``results/<profile>/``: every run's evaluation exported with its per-user ranks
and provenance, read back without training; the LLM runs published as run folders (a read-only run cache)."""

from __future__ import annotations

import functools
import json
import os
import platform
import re
import subprocess
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from .. import runs
from ..core import rundir
from ..core.io import atomic_write, dumps, read_json, repo_root, write_json
from ..core.metrics import entry_values, mean_interval, summarize
from ..data import dataset_fingerprint
from . import profile_runs
from .tables import run_facts


def results_root() -> Path:
    """``$LLMREC_RESULTS`` (tests) or the committed ``results/`` at the repository root."""
    env = os.environ.get("LLMREC_RESULTS")
    return Path(env) if env else repo_root() / "results"


def use_results(results: str | None, part: str = "llm") -> Path | None:
    """``-p results <profile>`` in chapters 05 and 06: from here on, LLM runs and their evaluations are read from
    the committed ``results/<profile>/<part>/`` (finished runs without their weights, see
    :func:`export_llm_results`) and nothing is trained; None: the run cache as usual."""
    if not results:
        return None
    folder = results_root() / results / part
    rundir.use_committed(folder)
    return folder


def export_llm_results(profile: str, folder: str | Path | None = None, what: str = "") -> list[Path]:
    """Publish every LLM run of ``profile`` this process trained or found (:func:`.profile_runs.llm_run`) into
    ``folder`` (default ``results/<profile>/llm/``), one folder per run named as in the run cache: its ``config.json``,
    ``identity.json`` (the dataset's content hash), ``done.json`` (best epoch, training seconds, per-epoch
    validation), ``log.jsonl`` (every step: loss, tau, ATS statistics), ``metrics.json`` (each evaluation with
    its per-user ranks or likelihoods, users and seconds per user) and ``provenance.json`` (commit, machine,
    date); never the weights. :func:`use_results` reads them back as a run cache."""
    if rundir.read_only():
        raise RuntimeError("results mode: the runs were read from committed results; there is nothing to export")
    folder = Path(folder or results_root() / profile / "llm")
    out = []
    for name, run in profile_runs.LLM_RUNS.items():
        cfg = runs.config_of(run)
        if cfg.get("profile") != profile:
            continue
        out.append(rundir.publish_record(run, folder / name, {"provenance.json": {
            "run": name, "what": what, "profile": profile, "dataset": cfg["dataset"],
            "dataset_fingerprint": dataset_fingerprint(cfg["dataset"]), "evaluations": sorted(rundir.load_metrics(run)),
            **provenance()}}))
    return out


@functools.lru_cache(maxsize=None)
def provenance() -> dict:
    """The commit (``+dirty`` with uncommitted changes to the code), the machine, torch and the date, for a
    results file; taken once per process, when the first results file is written (not at import), so that the
    rest of a long grid or chapter records the same code even if the checkout moves on meanwhile."""
    def git(*args):
        try:
            return subprocess.run(["git", *args], cwd=repo_root(), capture_output=True, text=True,
                                  timeout=10).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            return ""

    commit = git("rev-parse", "HEAD") or "unknown"
    if git("status", "--porcelain", "--untracked-files=no", "--", "lib", "notebooks", "pyproject.toml"):
        commit += "+dirty"  # the code that made the results differs from the commit
    return {"commit": commit, "date": time.strftime("%Y-%m-%d"), "torch": torch.__version__,
            "machine": f"{platform.machine()}, {os.cpu_count()} CPU cores, {platform.system()} (no GPU: "
                       f"{not torch.cuda.is_available()})"}


def write_lines_json(path: str | Path, obj: dict) -> None:
    """A results file: one top-level key per line, each value compact (per-user lists stay on one line)."""
    lines = [f" {json.dumps(k, ensure_ascii=False)}: {dumps(v, where=path, ensure_ascii=False, separators=(',', ':'))}"
             for k, v in sorted(obj.items())]
    atomic_write(path, ("{\n" + ",\n".join(lines) + "\n}\n").encode())


def slug(name: str) -> str:
    """A file-name part: ASCII letters and digits, one dash between words ("SCE (K 500, α 100)" -> "sce-k-500-100")."""
    return re.sub(r"-+", "-", "".join(c if c.isascii() and c.isalnum() else "-" for c in name.lower())).strip("-")


def export_runs(evals: dict, folder: str | Path, profile: str, dataset: str, what: str) -> list[Path]:
    """One JSON per run of ``evals`` ({name: (run, evaluation)}) under ``folder``: the name, family and
    configuration, the dataset and its content hash, the evaluated users and their per-user ranks, the
    summary with 95% intervals, the ranking time per user, training time and best epoch, and provenance."""
    folder = Path(folder)
    out = []
    prov = dict(provenance())
    for order, (name, (run, ev)) in enumerate(evals.items()):
        cfg = runs.config_of(run) if run is not None else {"family": "popularity", "dataset": dataset}
        done = run_facts(run)
        summary = {m: dict(zip(("mean", "lo", "hi"), mean_interval(entry_values(ev, m))))
                   for m in ("ndcg@10", "hr@10", "ndcg@5", "hr@5", "mrr")}
        summary["recall@10"] = summary["hr@10"]  # one held-out item per user
        rec = {"what": what, "name": name, "order": order, "family": cfg.get("family"), "config": cfg, "profile": profile,
               "dataset": dataset, "dataset_fingerprint": dataset_fingerprint(dataset), "split": ev.get("split", "test"),
               "mode": ev["mode"], "n_users": ev["n_users"], "user_sample": "every window of the split, in order",
               "user_ids": ev["user_ids"], "targets": ev["targets"],
               "ranks": [int(r) if np.isfinite(r) else None for r in ev["ranks"]],
               "summary": summary, "ms_per_user": 1000 * ev["seconds_per_user"],
               "best_epoch": done.get("best_epoch"), "epochs_run": done.get("epochs_run"),
               "epochs_cap": done.get("epochs_cap"),
               "seconds_total": done.get("seconds_total"), "seconds_per_epoch": done.get("seconds_per_epoch"),
               **prov}
        path = folder / f"{slug(dataset)}-{slug(name)}.json"
        write_lines_json(path, rec)
        out.append(path)
    return out


def read_runs(folder: str | Path, dataset: str) -> dict:
    """The evaluations :func:`export_runs` wrote for ``dataset``: {name: (run facts, evaluation)} in the shape
    that :func:`.tables.accuracy_table` and :func:`.tables.paired_table` take (no run directory, nothing trained)."""
    files = sorted(Path(folder).glob(f"{slug(dataset)}-*.json"))
    if not files:
        raise FileNotFoundError(f"no committed results for {dataset!r} in {folder}")
    out = {}
    records = [read_json(path) for path in files]
    for r in sorted((r for r in records if "ranks" in r), key=lambda r: (r.get("order", 0), r["name"])):
        ranks = [np.inf if x is None else x for x in r["ranks"]]
        ev = {"user_ids": r["user_ids"], "targets": r["targets"], "ranks": ranks, "mode": r["mode"],
              "n_users": r["n_users"], "split": r["split"], "seconds_per_user": r["ms_per_user"] / 1000,
              "summary": summarize(np.asarray(ranks, dtype=float))}
        out[r["name"]] = ({k: r.get(k) for k in ("best_epoch", "epochs_run", "epochs_cap", "seconds_total")}, ev)
    return out


def export_table(frame: pd.DataFrame, folder: str | Path, dataset: str, name: str, what: str) -> Path:
    """A small table (e.g. inference cost) as JSON beside the per-run results, with provenance."""
    path = Path(folder) / f"{slug(dataset)}-{slug(name)}.json"
    write_json(path, {"what": what, "table": json.loads(frame.reset_index().to_json(orient="records")),
                      "index": frame.index.name, **provenance()})
    return path


def read_table(folder: str | Path, dataset: str, name: str) -> pd.DataFrame:
    r = read_json(Path(folder) / f"{slug(dataset)}-{slug(name)}.json")
    return pd.DataFrame(r["table"]).set_index(r["index"])
