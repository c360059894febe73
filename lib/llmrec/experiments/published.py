"""The committed results under ``results/<profile>/``: one results record per run (:mod:`llmrec.core.results`)
with its per-user ranks or likelihoods and provenance, read back without training; the LLM runs' records unpacked
into a read-only run cache."""

from __future__ import annotations

import hashlib
import json
import os
import re
from pathlib import Path

import pandas as pd

from .. import runs
from ..core import rundir
from ..core.io import cache_root, publish_dir, repo_root
from ..core.provenance import provenance  # commit, date, machine, versions
from ..core.results import (Provenance, RunRecord, TableRecord, entry_from_evaluation, evaluation_from_entry,
                            read_record, run_record, unpack, write_record)
from ..data import dataset_fingerprint
from . import profile_runs


def results_root() -> Path:
    """``$LLMREC_RESULTS`` (tests) or the committed ``results/`` at the repository root."""
    env = os.environ.get("LLMREC_RESULTS")
    return Path(env) if env else repo_root() / "results"


def use_results(results: str | None, part: str = "llm") -> Path | None:
    """``-p results <profile>`` in chapters 05 and 06: from here on, LLM runs and their evaluations are read from
    the committed records of ``results/<profile>/<part>/`` (finished runs without their weights, see
    :func:`export_llm_results`), unpacked once into a run folder each (``.cache/results/``), and nothing is
    trained; None: the run cache as usual."""
    if not results:
        return None
    folder = results_root() / results / part
    if not folder.is_dir():
        raise FileNotFoundError(f"no committed results folder {folder}")
    files = sorted(folder.glob("*.json"))
    digest = hashlib.sha1(b"".join(f.name.encode() + f.read_bytes() for f in files)).hexdigest()[:12]
    unpacked = cache_root() / "results" / f"{results}-{part}-{digest}"
    if not unpacked.is_dir():
        with publish_dir(unpacked) as tmp:
            for path in files:
                record = read_record(path)
                if record.kind == "run":
                    unpack(record, tmp / path.stem)
    rundir.use_committed(unpacked)
    return folder


def export_llm_results(profile: str, folder: str | Path | None = None, what: str = "") -> list[Path]:
    """Publish every LLM run of ``profile`` this process trained or found (:func:`.profile_runs.llm_run`) into
    ``folder`` (default ``results/<profile>/llm/``), one results record per run named as in the run cache
    (:mod:`llmrec.core.results`: configuration, identity, training facts, every evaluation with its per-user ranks
    or likelihoods, the training log, provenance); never the weights. :func:`use_results` reads them back as a
    run cache."""
    if rundir.read_only():
        raise RuntimeError("results mode: the runs were read from committed results; there is nothing to export")
    folder = Path(folder or results_root() / profile / "llm")
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for name, run in profile_runs.LLM_RUNS.items():
        cfg = runs.config_of(run)
        if cfg.get("profile") != profile:
            continue
        record = run_record(run, name=name, what=what, profile=profile, provenance=provenance(),
                            dataset_fingerprint=dataset_fingerprint(cfg["dataset"]))
        out.append(write_record(folder / f"{name}.json", record))
    return out


def provenance_record() -> Provenance:
    p = provenance()
    return Provenance(machine=p["machine"], commit=p["commit"], date=p["date"], versions=p.get("versions", {}))


def slug(name: str) -> str:
    """A file-name part: ASCII letters and digits, one dash between words ("SCE (K 500, α 100)" -> "sce-k-500-100")."""
    return re.sub(r"-+", "-", "".join(c if c.isascii() and c.isalnum() else "-" for c in name.lower())).strip("-")


def export_runs(evals: dict, folder: str | Path, profile: str, dataset: str, what: str) -> list[Path]:
    """One results record per run of ``evals`` ({name: (run, evaluation of every window of a split)}) under
    ``folder``: the run's configuration, identity and training facts (none for popularity), the evaluation with
    its per-user ranks and each metric's 95% interval, the training log and provenance."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for order, (name, (run, ev)) in enumerate(evals.items()):
        key = f"{ev.get('split', 'test')}/{ev['mode']}/nall"
        evaluation = evaluation_from_entry({**ev, "split": ev.get("split", "test"),
                                            "user_sample": "every window of the split, in order"})
        if run is not None:
            record = run_record(run, name=name, what=what, profile=profile, keys=(), provenance=provenance(),
                                extra={"order": order}, dataset_fingerprint=dataset_fingerprint(dataset))
            record.evaluations[key] = evaluation
        else:
            record = RunRecord(name=name, what=what, family="popularity", profile=profile, dataset=dataset,
                               dataset_fingerprint=dataset_fingerprint(dataset),
                               config={"family": "popularity", "dataset": dataset}, evaluations={key: evaluation},
                               extra={"order": order}, provenance=provenance_record())
        out.append(write_record(folder / f"{slug(dataset)}-{slug(name)}.json", record))
    return out


def read_runs(folder: str | Path, dataset: str) -> dict:
    """The evaluations :func:`export_runs` wrote for ``dataset``: {name: (run facts, evaluation)} in the shape
    that :func:`.tables.accuracy_table` and :func:`.tables.paired_table` take (no run directory, nothing trained;
    the best epoch counted from 1)."""
    files = sorted(Path(folder).glob(f"{slug(dataset)}-*.json"))
    if not files:
        raise FileNotFoundError(f"no committed results for {dataset!r} in {folder}")
    recs = [r for r in (read_record(path) for path in files) if r.kind == "run" and r.evaluations]
    out = {}
    for r in sorted(recs, key=lambda r: (r.extra.get("order", 0), r.name)):
        (ev,) = r.evaluations.values()
        t = r.training
        facts = {"best_epoch": t.best_epoch if t else None, "epochs_run": t.epochs_run if t else None,
                 "epochs_cap": t.epochs_cap if t else None, "seconds_total": t.seconds_total if t else None}
        out[r.name] = (facts, entry_from_evaluation(ev))
    return out


def export_table(frame: pd.DataFrame, folder: str | Path, dataset: str, name: str, what: str) -> Path:
    """A small table (e.g. inference cost) as a table record beside the per-run results, with provenance."""
    record = TableRecord(name=name, what=what, dataset=dataset, index=frame.index.name,
                         rows=json.loads(frame.reset_index().to_json(orient="records")), provenance=provenance_record())
    return write_record(Path(folder) / f"{slug(dataset)}-{slug(name)}.json", record)


def read_table(folder: str | Path, dataset: str, name: str) -> pd.DataFrame:
    r = read_record(Path(folder) / f"{slug(dataset)}-{slug(name)}.json")
    return pd.DataFrame(r.rows).set_index(r.index)
