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
from ..core.io import cache_root, dumps, publish_dir, repo_root
from ..core.provenance import provenance  # commit, date, machine, versions
from ..core.results import (Provenance, RunRecord, TableRecord, entry_from_evaluation, evaluation_from_entry,
                            read_record, run_record, unpack, write_record)
from ..data import dataset_fingerprint
from . import profile_runs


def results_root() -> Path:
    """``$LLMREC_RESULTS`` (tests) or the committed ``results/`` at the repository root."""
    env = os.environ.get("LLMREC_RESULTS")
    return Path(env) if env else repo_root() / "results"


def unpacked(folder: str | Path, label: str) -> Path:
    """The run records of ``folder`` written out as run folders without weights (:func:`~llmrec.core.results.unpack`),
    once per content of the folder, under ``.cache/results/<label>-<digest>/``: a run cache to read."""
    files = sorted(Path(folder).glob("*.json"))
    digest = hashlib.sha1(b"".join(f.name.encode() + f.read_bytes() for f in files)).hexdigest()[:12]
    out = cache_root() / "results" / f"{label}-{digest}"
    if not out.is_dir():
        with publish_dir(out) as tmp:
            for path in files:
                record = read_record(path)
                if record.kind == "run":
                    unpack(record, tmp / path.stem)
    return out


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
    rundir.use_fallback(())
    rundir.use_committed(unpacked(folder, f"{results}-{part}"))
    return folder


RUN_PARTS = ("llm", "seqrec", "lite")  # results/<profile>/<family>/: the committed runs a chapter reads by default


def standalone(profile: str, retrain: bool = False, export: bool = False, what: str = "") -> list[Path]:
    """A chapter's run cache (its ``retrain`` and ``export_results`` parameters): with ``retrain`` False, the
    committed records of ``results/<profile>/{llm,seqrec,lite}/`` (the canonical batch's runs, without weights)
    lie beneath the run cache (:func:`llmrec.core.rundir.use_fallback`): a run found there under its key (the same
    configuration, data and weights) is read, nothing trained or evaluated for it; any other run trains in the run
    cache as usual, and one whose weights are needed is trained there (:func:`llmrec.runs.materialise`). With
    ``retrain`` True, the run cache alone. ``export``: each run this process trains, finds or evaluates in the run
    cache is published (:func:`export_run`) as it is touched. Returns the committed folders read."""
    rundir.use_committed(None)
    folders = [] if retrain else [f for f in (results_root() / profile / part for part in RUN_PARTS)
                                  if f.is_dir() and any(f.glob("*.json"))]
    rundir.use_fallback([unpacked(f, f"{profile}-{f.name}") for f in folders])
    runs.WATCHERS[:] = [lambda run: export_run(run, profile, what=what)] if export else []
    return folders


def export_run(run: str | Path, profile: str, folder: str | Path | None = None, what: str = "") -> Path | None:
    """Publish one finished run of ``profile`` from the run cache into ``folder`` (default
    ``results/<profile>/<family>/``) as a results record named as in the run cache (:mod:`llmrec.core.results`:
    configuration, identity, training facts, every evaluation with its per-user ranks or likelihoods, the
    training log, provenance), never its weights; None (nothing written) for a run of another profile, a
    committed run or one not finished."""
    cfg = runs.config_of(run)
    if cfg.get("profile") != profile or rundir.is_committed(run) or not rundir.is_done(run):
        return None
    folder = Path(folder or results_root() / profile / runs.family_of(cfg))
    folder.mkdir(parents=True, exist_ok=True)
    record = run_record(run, name=Path(run).name, what=what, profile=profile, provenance=provenance(),
                        dataset_fingerprint=dataset_fingerprint(cfg["dataset"]))
    return write_record(folder / f"{Path(run).name}.json", record)


def export_llm_results(profile: str, folder: str | Path | None = None, what: str = "") -> list[Path]:
    """Publish every LLM run of ``profile`` this process trained or found in the run cache
    (:func:`.profile_runs.llm_run`) into ``folder`` (default ``results/<profile>/llm/``) (:func:`export_run`);
    :func:`use_results` reads them back as a run cache."""
    if rundir.read_only():
        raise RuntimeError("results mode: the runs were read from committed results; there is nothing to export")
    folder = Path(folder or results_root() / profile / "llm")
    found = (export_run(run, profile, folder, what) for run in profile_runs.LLM_RUNS.values())
    return [p for p in found if p is not None]


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


def holds_run(folder: str | Path, dataset: str, name: str, config: dict) -> bool:
    """True when ``folder`` holds the record :func:`export_runs` wrote of run ``name`` on ``dataset`` and that run
    has ``config``, the data's content now and the pretrained weights installed now: its key, so that the tables
    published beside it are those this configuration would make."""
    path = Path(folder) / f"{slug(dataset)}-{slug(name)}.json"
    if not path.exists():
        return False
    record = read_record(path)
    weights = runs.config_weights(config)
    return (record.kind == "run" and record.config == json.loads(dumps(config))
            and record.dataset_fingerprint == dataset_fingerprint(dataset)
            and (weights is None or (record.identity or {}).get(rundir.WEIGHTS) == weights))


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
