"""The one results record: every published run of every family, and every published table, in one format.

A **run record** (``kind: "run"``) holds what a reader needs to trust and re-use a run without its weights:
its family and configuration, the dataset and its content fingerprint, the training facts (the best epoch
counted from 1, the epochs run and their cap, seconds), every evaluation (split, mode, the users, their
per-user ranks or likelihood values, and each metric's mean with its 95% bootstrap interval), the training
log, and the provenance (machine, commit, date, library versions). A **table record** (``kind: "table"``)
holds a published table (rows) with its provenance.

:class:`RunRecord` and :class:`TableRecord` are the schema (pydantic); :func:`write_record` and
:func:`read_record` are the one writer and reader (strict JSON: no NaN, no infinity; a target that a
recommendation list missed is ``null`` among the ranks); :func:`run_record` makes a record of a finished run
directory and :func:`unpack` writes a record back out as a run directory that the rest of the library reads
(results mode: chapters redraw committed results without training).
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, field_validator, model_validator

from .io import atomic_write, dumps, read_json, write_json

SCHEMA = "llmrec.result/1"
Finite = Annotated[float, Field(allow_inf_nan=False)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Interval(_Strict):
    """A metric's mean over users and its 95% bootstrap interval (``lo`` <= ``mean`` <= ``hi``)."""

    mean: Finite
    lo: Finite
    hi: Finite

    @model_validator(mode="after")
    def _ordered(self):
        if not self.lo - 1e-12 <= self.mean <= self.hi + 1e-12:
            raise ValueError(f"interval [{self.lo}, {self.hi}] does not hold its mean {self.mean}")
        return self


class Evaluation(_Strict):
    """One evaluation of a run: ``n_users`` windows of ``split`` ranked (or scored) by ``mode``."""

    split: Literal["valid", "test"]
    mode: Literal["full", "beam", "ground", "likelihood"]
    n_users: int = Field(gt=0)
    k: int | None = None  # list length of the list modes
    user_sample: str = "seed 0 (llmrec.core.samplers.sample_rows)"
    user_ids: list[int]
    rows: list[int] | None = None
    targets: list[int] | None = None
    ranks: list[Annotated[float, Field(ge=0, allow_inf_nan=False)] | None] | None = None  # 0-based; None: missed
    nll_valid: list[Finite] | None = None
    nll_full: list[Finite] | None = None
    summary: dict[str, Interval]
    seconds: Finite | None = None
    seconds_per_user: Finite | None = None
    options: dict[str, Any] = {}  # how the evaluation was made when it is not the default (beam scoring, encoder)

    @model_validator(mode="after")
    def _per_user(self):
        per_user = {"user_ids": self.user_ids, "rows": self.rows, "targets": self.targets, "ranks": self.ranks,
                    "nll_valid": self.nll_valid, "nll_full": self.nll_full}
        wrong = {k: len(v) for k, v in per_user.items() if v is not None and len(v) != self.n_users}
        if wrong:
            raise ValueError(f"per-user lists of another length than n_users = {self.n_users}: {wrong}")
        if self.mode == "likelihood" and self.nll_valid is None:
            raise ValueError("a likelihood evaluation holds the per-user nll_valid")
        if self.mode != "likelihood" and self.ranks is None:
            raise ValueError(f"a {self.mode} evaluation holds the per-user ranks")
        return self


class Training(_Strict):
    """How a run trained. ``best_epoch`` counts from 1 in every family: the epoch whose weights are kept."""

    best_epoch: int = Field(ge=1)
    epochs_run: int = Field(ge=1)
    epochs_cap: int | None = None
    best_valid: dict[str, Finite | None] = {}  # the validation metric that chose the epoch, at that epoch (-1: unmeasured)
    seconds_total: Finite
    seconds_per_epoch: Finite | None = None
    facts: dict[str, Any] = {}  # the rest of the family's done.json (steps, memory, threads, ...)


class Provenance(_Strict):
    machine: str
    commit: str
    date: str
    versions: dict[str, str] = {}  # python, torch, transformers, ... where they were recorded
    note: str | None = None


class _Record(_Strict):
    """What every record holds: the schema's name, its own name, what made it, and its provenance."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    schema_: Literal["llmrec.result/1"] = Field(SCHEMA, alias="schema")
    name: str
    what: str
    provenance: Provenance


class RunRecord(_Record):
    kind: Literal["run"] = "run"
    family: str  # a registered family (llmrec.core.families), or "popularity"
    profile: str
    dataset: str
    dataset_fingerprint: str
    config: dict[str, Any]
    identity: dict[str, Any] | None = None
    training: Training | None = None  # None: nothing trained (popularity)
    evaluations: dict[str, Evaluation] = {}
    log: list[dict[str, Any]] = []
    extra: dict[str, Any] = {}  # what a study adds (its learning rate and seed, the row order of a table)

    @field_validator("evaluations")
    @classmethod
    def _keys(cls, evaluations):
        for key, ev in evaluations.items():
            if not key.startswith(f"{ev.split}/{ev.mode}/n"):
                raise ValueError(f"evaluation key {key!r} does not name its split and mode ({ev.split}, {ev.mode})")
        return evaluations


class TableRecord(_Record):
    kind: Literal["table"] = "table"
    profile: str | None = None
    dataset: str | None = None
    index: str | None = None
    rows: list[dict[str, Any]]
    meta: dict[str, Any] = {}  # sizes, splits, users, how it was made


Record = RunRecord | TableRecord


def parse_record(data: dict, where: str | Path = "record") -> Record:
    """A record from its JSON object, checked against the schema (an error names ``where``)."""
    if not isinstance(data, dict) or data.get("schema") != SCHEMA:
        raise ValueError(f"{where}: not a results record (schema {SCHEMA!r} expected, "
                         f"got {data.get('schema') if isinstance(data, dict) else type(data).__name__!r})")
    cls = TableRecord if data.get("kind") == "table" else RunRecord
    try:
        return cls.model_validate(data)
    except ValueError as e:
        raise ValueError(f"{where}: {e}") from None


def read_record(path: str | Path) -> Record:
    return parse_record(read_json(path), path)


def _compact(value) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), allow_nan=False)


def dumps_record(data: dict) -> str:
    """A record's JSON laid out for reading and for diffs: a line per top-level key, per evaluation and per
    log row, each value compact (per-user lists on one line); strict (no NaN, no infinity)."""
    lines = []
    for key in data:
        value = data[key]
        if key in ("evaluations", "log", "rows") and value:
            items = [f"  {_compact(k)}: {_compact(v)}" for k, v in value.items()] if isinstance(value, dict) \
                else [f"  {_compact(v)}" for v in value]
            opening, closing = ("{", "}") if isinstance(value, dict) else ("[", "]")
            lines.append(f" {_compact(key)}: {opening}\n" + ",\n".join(items) + f"\n {closing}")
        else:
            lines.append(f" {_compact(key)}: {_compact(value)}")
    return "{\n" + ",\n".join(lines) + "\n}\n"


def write_record(path: str | Path, record: Record) -> Path:
    """Write ``record`` (checked again) as strict JSON (:func:`dumps_record`), atomically; returns the path."""
    data = json.loads(dumps(record.model_dump(by_alias=True), where=path))  # a NaN anywhere is refused here
    parse_record(data, path)
    text = dumps_record(data)
    if json.loads(text) != data:
        raise AssertionError(f"{path}: the record's layout changed its content")
    atomic_write(path, text.encode())
    return Path(path)


def records(folder: str | Path, kind: str | None = "run", pattern: str = "*.json") -> dict[str, Record]:
    """Every record under ``folder`` (recursively) by file stem, of ``kind`` (None: every kind)."""
    out = {}
    for path in sorted(Path(folder).rglob(pattern)):
        rec = read_record(path)
        if kind is None or rec.kind == kind:
            out[path.stem] = rec
    return out


def json_schema() -> dict:
    """The JSON Schema of a record (either kind), for readers outside Python."""
    schema = TypeAdapter(Record).json_schema(by_alias=True)
    return {"$schema": "https://json-schema.org/draft/2020-12/schema", "title": "llmrec results record", **schema}


# ---------------------------------------------------------------------------------------- run directories


def _ranks_out(ranks):
    return None if ranks is None else [None if r is None or not math.isfinite(float(r)) else float(r)
                                       for r in ranks]


def evaluation_from_entry(entry: dict, intervals: dict[str, dict] | None = None, options: dict | None = None
                          ) -> Evaluation:
    """An :class:`Evaluation` of a ``metrics.json`` entry (:func:`llmrec.core.recommender.evaluate`). Its
    summary holds means; ``intervals`` (metric -> {mean, lo, hi}) replaces them, else each metric's interval
    is bootstrapped from the per-user values (:func:`llmrec.core.metrics.mean_interval`, seed 0)."""
    from .metrics import entry_values, mean_interval

    if entry.get("ranks") is not None:  # a miss may come as null (a metrics.json read as it is) or infinity
        entry = {**entry, "ranks": [math.inf if r is None else r for r in entry["ranks"]]}
    summary = {}
    for metric in entry["summary"]:
        if intervals and metric in intervals:
            summary[metric] = intervals[metric]
            continue
        values = entry_values(entry, metric)
        m, lo, hi = mean_interval(values)
        summary[metric] = {"mean": m, "lo": lo, "hi": hi}
    fields = {k: entry[k] for k in ("split", "mode", "n_users", "k", "user_ids", "rows", "targets", "nll_valid",
                                    "nll_full", "seconds", "seconds_per_user", "user_sample") if k in entry}
    return Evaluation(**fields, ranks=_ranks_out(entry.get("ranks")), summary=summary, options=options or {})


def entry_from_evaluation(ev: Evaluation) -> dict:
    """The ``metrics.json`` entry of an evaluation (means in its summary; a missed target's rank infinite)."""
    out = ev.model_dump(exclude={"summary", "options", "user_sample"}, exclude_none=True)
    if ev.ranks is not None:
        out["ranks"] = [math.inf if r is None else r for r in ev.ranks]
    out["summary"] = {m: i.mean for m, i in ev.summary.items()}
    return out


def unpack(record: RunRecord, run_dir: str | Path) -> Path:
    """Write a run record out as a finished run directory without weights (``config.json``, ``identity.json``,
    ``done.json``, ``metrics.json``, ``log.jsonl``): what results mode reads (:func:`llmrec.core.rundir.use_committed`).
    The LLM's ``done.json`` counts epochs from 0 (its loop's convention); the record from 1."""
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    write_json(run_dir / "config.json", record.config)
    if record.identity is not None:
        write_json(run_dir / "identity.json", record.identity)
    if record.training is not None:
        t = record.training
        if record.family == "llm":  # its loop's done.json: epochs from 0, train_seconds among the facts
            done = {**t.facts, "best_epoch": t.best_epoch - 1}
        else:
            done = {**t.facts, "best_epoch": t.best_epoch, "epochs_run": t.epochs_run, "seconds_total": t.seconds_total}
            if t.seconds_per_epoch is not None:
                done["seconds_per_epoch"] = t.seconds_per_epoch
        done.update({f"best_valid_{m}": v for m, v in t.best_valid.items()})
        write_json(run_dir / "done.json", done)
    metrics = {k: {**entry_from_evaluation(ev), **({"ranks": ev.ranks} if ev.ranks is not None else {})}
               for k, ev in record.evaluations.items()}  # a miss null, as the run cache stores it
    write_json(run_dir / "metrics.json", metrics)
    (run_dir / "log.jsonl").write_text("".join(json.dumps(r, allow_nan=False) + "\n" for r in record.log))
    write_json(run_dir / "provenance.json", record.provenance.model_dump(mode="json"))
    return run_dir


def run_record(run_dir: str | Path, name: str, what: str, profile: str, keys=None, log: bool = True,
               extra: dict | None = None, provenance: dict | None = None, dataset_fingerprint: str | None = None
               ) -> RunRecord:
    """The record of a finished run directory: its configuration, identity, training facts (``done.json``, the
    best epoch counted from 1), the evaluations ``keys`` of its ``metrics.json`` (None: all), its training log
    (``log``) and ``provenance`` (machine, commit, date, versions; default: its ``provenance.json``)."""
    run_dir = Path(run_dir)
    config = read_json(run_dir / "config.json")
    family = config.get("family", "llm")
    identity = read_json(run_dir / "identity.json") if (run_dir / "identity.json").exists() else None
    done = read_json(run_dir / "done.json")
    metrics = read_json(run_dir / "metrics.json") if (run_dir / "metrics.json").exists() else {}
    keys = sorted(metrics) if keys is None else list(keys)
    missing = [k for k in keys if k not in metrics]
    if missing:
        raise KeyError(f"{run_dir}: no evaluation {missing} (it has {sorted(metrics)})")
    best_valid = {k[len("best_valid_"):]: v for k, v in done.items() if k.startswith("best_valid_")}
    if family == "llm":  # epochs counted from 0 in the LLM's loop; its history has one row per epoch
        best, epochs_run = done["best_epoch"] + 1, len(done.get("history", [])) or config.get("epochs", 1)
        seconds, per_epoch = done.get("train_seconds", 0.0), None
    else:
        best, epochs_run = done["best_epoch"], done["epochs_run"]
        seconds, per_epoch = done["seconds_total"], done.get("seconds_per_epoch")
    taken = {"best_epoch", "epochs_run", "seconds_total", "seconds_per_epoch", *(f"best_valid_{m}" for m in best_valid)}
    training = Training(best_epoch=best, epochs_run=epochs_run, epochs_cap=config.get("epochs"),
                        best_valid=best_valid, seconds_total=seconds, seconds_per_epoch=per_epoch,
                        facts={k: v for k, v in done.items() if k not in taken}
                        | ({"versions": read_json(run_dir / "versions.json")}  # of each process that trained it
                           if (run_dir / "versions.json").exists() else {}))
    log_rows = []
    if log and (run_dir / "log.jsonl").exists():
        log_rows = [_finite(json.loads(line)) for line in (run_dir / "log.jsonl").read_text().splitlines()
                    if line.strip()]
    prov = provenance or (read_json(run_dir / "provenance.json") if (run_dir / "provenance.json").exists() else {})
    versions = dict(prov.get("versions", {}))
    if "torch" in prov and "torch" not in versions:
        versions["torch"] = prov["torch"]
    return RunRecord(
        name=name, what=what, family=family, profile=profile, dataset=config["dataset"],
        dataset_fingerprint=dataset_fingerprint or prov.get("dataset_fingerprint") or (identity or {}).get("dataset", ""),
        config=config, identity=identity, training=training,
        evaluations={k: evaluation_from_entry(metrics[k], options=key_options(k)) for k in keys},
        log=log_rows, extra=extra or {},
        provenance=Provenance(machine=prov.get("machine", ""), commit=prov.get("commit", ""),
                              date=prov.get("date", ""), versions=versions, note=prov.get("commit_note")))


def _finite(row: dict) -> dict:
    """A log row in strict JSON: a value that is not a finite number (a NaN mean over no positions) is None."""
    return {k: None if isinstance(v, float) and not math.isfinite(v) else v for k, v in row.items()}


def key_options(key: str) -> dict:
    """What an evaluation key says beyond split, mode and users (``.../score-valid``, ``.../minilm``)."""
    parts = key.split("/")[3:]
    out = {}
    for p in parts:
        if p.startswith("k") and p[1:].isdigit():
            continue
        if p.startswith("score-"):
            out["beam_score"] = p[len("score-"):]
        else:
            out["embed"] = p
    return out
