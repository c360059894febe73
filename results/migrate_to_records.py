"""How the committed results became records (llmrec.core.results), once, without retraining (2026-12-05).

Before, the LLM reference runs were run folders (config.json, identity.json, done.json with the best epoch
counted from 0, metrics.json, log.jsonl, provenance.json) and the classic and Lite-LLM4Rec results flat JSON
files (the best epoch counted from 1), and tables a third shape. Each becomes one record file beside the
others: `python results/migrate_to_records.py` (idempotent: a record is left as it is). Kept as the account
of how every committed record was made; nothing imports it.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

from llmrec.core.io import read_json
from llmrec.core.results import SCHEMA, Evaluation, Provenance, RunRecord, TableRecord, Training, run_record, write_record

ROOT = Path(__file__).resolve().parent


def provenance(d: dict) -> Provenance:
    versions = {"torch": d["torch"]} if d.get("torch") else {}
    return Provenance(machine=d.get("machine", ""), commit=d.get("commit", ""), date=d.get("date", ""),
                      versions=versions, note=d.get("commit_note"))


def flat_run(d: dict) -> RunRecord:
    """A flat per-run file of chapters 07/08 (one test evaluation over every window, or a learning-rate
    selection run that evaluated no test window)."""
    training = None
    if d.get("best_epoch") is not None:
        best_valid = {"ndcg@10": d["best_valid_ndcg@10"]} if "best_valid_ndcg@10" in d else {}
        facts = {k: d[k] for k in ("peak_memory_mb",) if k in d}
        training = Training(best_epoch=d["best_epoch"], epochs_run=d["epochs_run"], epochs_cap=d.get("epochs_cap"),
                            best_valid=best_valid, seconds_total=d["seconds_total"],
                            seconds_per_epoch=d.get("seconds_per_epoch"), facts=facts)
    evaluations = {}
    if "ranks" in d:
        ev = Evaluation(split=d["split"], mode=d["mode"], n_users=d["n_users"], user_sample=d["user_sample"],
                        user_ids=d["user_ids"], targets=d.get("targets"), ranks=d["ranks"], summary=d["summary"],
                        seconds_per_user=d["ms_per_user"] / 1000 if d.get("ms_per_user") is not None else None)
        every = d["user_sample"].startswith("every window")
        evaluations[f"{d['split']}/{d['mode']}/n{'all' if every else d['n_users']}"] = ev
    extra = {k: d[k] for k in ("order", "lr", "seed") if k in d}
    return RunRecord(name=d["name"], what=d["what"], family=d.get("family") or d["config"]["family"],
                     profile=d["profile"], dataset=d["dataset"], dataset_fingerprint=d["dataset_fingerprint"],
                     config=d["config"], training=training, evaluations=evaluations, extra=extra,
                     provenance=provenance(d))


def table(d: dict, path: Path) -> TableRecord:
    """A table: chapter 08's (rows under "table"), or the two quick studies' (rows, or one entry per variant)."""
    rows = d.get("table", d.get("rows"))
    if rows is None and "runs" in d:
        rows = [{"variant": k, **v} for k, v in d["runs"].items()]
    meta = {k: v for k, v in d.items() if k not in ("table", "rows", "runs", "index", "what", "profile", "dataset",
                                                     "commit", "date", "machine", "torch")}
    return TableRecord(name=path.stem, what=d["what"], profile=d.get("profile"), dataset=d.get("dataset"),
                       index=d.get("index"), rows=rows, meta=meta, provenance=provenance(d))


def main() -> int:
    made = 0
    for run in sorted(p for p in (ROOT / "laptop" / "llm").glob("*") if p.is_dir()):
        prov = read_json(run / "provenance.json")
        record = run_record(run, name=run.name, what=prov["what"], profile=prov["profile"],
                            dataset_fingerprint=prov["dataset_fingerprint"])
        write_record(run.with_suffix(".json"), record)
        shutil.rmtree(run)
        made += 1
    for path in sorted(ROOT.rglob("*.json")):
        d = read_json(path)
        if not isinstance(d, dict) or d.get("schema") == SCHEMA:
            continue
        write_record(path, flat_run(d) if "config" in d else table(d, path))
        made += 1
    print(f"{made} records written", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
