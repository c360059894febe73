"""The one results record (llmrec.core.results): every committed file is one, and it round-trips a run."""

import json
import math
from pathlib import Path

import pytest

from llmrec.core import results as R

ROOT = Path(__file__).resolve().parents[1]
COMMITTED = sorted((ROOT / "results").rglob("*.json"))


def test_every_committed_results_file_is_a_valid_record():
    assert len(COMMITTED) > 100
    kinds = {"run": 0, "table": 0}
    for path in COMMITTED:
        rec = R.read_record(path)  # raises, naming the file, on anything the schema refuses
        kinds[rec.kind] += 1
        if rec.kind == "run":
            assert rec.provenance.commit and rec.provenance.date and rec.provenance.machine, path
            for key, ev in rec.evaluations.items():
                assert set(ev.summary) and all(i.lo <= i.mean <= i.hi for i in ev.summary.values()), (path, key)
    assert kinds["run"] > 100 and kinds["table"] > 0
    families = {R.read_record(p).family for p in COMMITTED if R.read_record(p).kind == "run"}
    assert {"llm", "seqrec", "lite", "popularity"} <= families


def test_the_json_schema_describes_the_committed_files():
    """An independent check: the JSON Schema that pydantic derives, applied by jsonschema to every file."""
    jsonschema = pytest.importorskip("jsonschema")
    validator = jsonschema.Draft202012Validator(R.json_schema())
    for path in COMMITTED[::7]:
        validator.validate(json.loads(path.read_text()))
    bad = json.loads(COMMITTED[0].read_text())
    bad["provenance"] = {"machine": "m"}  # no commit, no date
    with pytest.raises(jsonschema.ValidationError):
        validator.validate(bad)


def _entry(n=4, ranks=(0.0, 3.0, math.inf, 12.0)):
    return {"split": "test", "mode": "beam", "n_users": n, "k": 10, "user_ids": list(range(n)),
            "targets": [5] * n, "ranks": list(ranks), "summary": {"hr@10": 0.5}, "seconds": 1.0,
            "seconds_per_user": 0.25}


def test_an_evaluation_round_trips_and_bootstraps_its_interval():
    ev = R.evaluation_from_entry(_entry())
    assert ev.ranks[2] is None  # a miss is null in the file
    assert ev.summary["hr@10"].mean == 0.5 and ev.summary["hr@10"].lo <= 0.5 <= ev.summary["hr@10"].hi
    back = R.entry_from_evaluation(ev)
    assert back["ranks"][2] == math.inf and back["summary"] == {"hr@10": 0.5}
    assert {k: v for k, v in back.items() if k != "summary"} == {k: v for k, v in _entry().items() if k != "summary"}


def test_the_schema_refuses_what_a_reader_could_not_trust():
    good = R.evaluation_from_entry(_entry()).model_dump()
    with pytest.raises(ValueError, match="n_users"):
        R.Evaluation(**{**good, "user_ids": [1, 2]})
    with pytest.raises(ValueError):
        R.Evaluation(**{**good, "summary": {"hr@10": {"mean": float("nan"), "lo": 0, "hi": 1}}})
    with pytest.raises(ValueError, match="does not hold its mean"):
        R.Evaluation(**{**good, "summary": {"hr@10": {"mean": 0.9, "lo": 0.0, "hi": 0.5}}})
    with pytest.raises(ValueError):
        R.Training(best_epoch=0, epochs_run=1, seconds_total=1.0)  # epochs count from 1
    with pytest.raises(ValueError, match="not a results record"):
        R.parse_record({"name": "x"}, "somewhere.json")


def test_a_run_directory_round_trips_through_its_record(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    config = {"family": "llm", "dataset": "toy", "loss": "msl", "epochs": 2}
    (run / "config.json").write_text(json.dumps(config))
    (run / "identity.json").write_text(json.dumps({"dataset": "abc", "world_size": 1, "global_batch": 8}))
    done = {"best_epoch": 0, "best_valid_nll_valid": 12.5, "history": [{"epoch": 0}, {"epoch": 1}],
            "train_seconds": 10.0, "steps": 4}
    (run / "done.json").write_text(json.dumps(done))
    (run / "metrics.json").write_text(json.dumps({"test/beam/n4/k10": _entry()}, default=str).replace(
        '"inf"', "Infinity"))
    (run / "log.jsonl").write_text('{"step": 1, "loss": 2.0, "w_mean": NaN}\n')
    (run / "provenance.json").write_text(json.dumps({"machine": "m", "commit": "c", "date": "d", "torch": "t"}))
    rec = R.run_record(run, name="run", what="a test", profile="smoke")
    assert rec.training.best_epoch == 1 and rec.training.epochs_run == 2  # counted from 1 in the record
    assert rec.log == [{"step": 1, "loss": 2.0, "w_mean": None}] and rec.provenance.versions == {"torch": "t"}
    path = R.write_record(tmp_path / "run.json", rec)
    assert R.read_record(path) == rec
    out = R.unpack(R.read_record(path), tmp_path / "again")
    assert json.loads((out / "done.json").read_text()) == done  # the LLM's own convention again
    assert json.loads((out / "config.json").read_text()) == config
    assert json.loads((out / "metrics.json").read_text())["test/beam/n4/k10"]["ranks"] == [0.0, 3.0, None, 12.0]


def test_a_record_with_nan_cannot_be_written(tmp_path):
    rec = R.TableRecord(name="t", what="w", rows=[{"a": 1.0}],
                        provenance=R.Provenance(machine="m", commit="c", date="d"))
    rec.rows[0]["a"] = float("nan")  # past the schema, as a buggy caller could
    with pytest.raises(ValueError):
        R.write_record(tmp_path / "t.json", rec)
    assert not (tmp_path / "t.json").exists()
