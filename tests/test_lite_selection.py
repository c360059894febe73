"""Lite-LLM4Rec's settings chosen on validation (issue 25, item 4): one run per grid point through the run cache,
the best validation NDCG@10 chosen, the same command again trains nothing."""

import pytest

from llmrec.cli import main
from llmrec.core.io import read_json
from llmrec.experiments import lite_selection


@pytest.fixture(autouse=True)
def runs_root(tmp_path, monkeypatch):
    monkeypatch.setenv("LLMREC_RUNS", str(tmp_path / "runs"))
    return tmp_path / "runs"


def test_the_grid_point_with_the_best_validation_ndcg_is_chosen_and_a_rerun_trains_nothing(tmp_path, runs_root,
                                                                                            monkeypatch):
    grid = {"rec_layers": (1, 2), "lr": (1e-3, 3e-2)}
    out = tmp_path / "sel.json"
    res = lite_selection.select_lite("smoke", grid=grid, out=out, progress=False, epochs=1)
    assert read_json(out) == res and len(res["runs"]) == 4
    assert [(r["rec_layers"], r["lr"]) for r in res["runs"]] == [(1, 1e-3), (1, 3e-2), (2, 1e-3), (2, 3e-2)]
    # an independent reading: each run folder's own done.json, the best validation NDCG@10 among them
    valid = {r["run"]: read_json(runs_root / r["run"] / "done.json")["best_valid_ndcg@10"] for r in res["runs"]}
    best = max(res["runs"], key=lambda r: valid[r["run"]])
    assert (res["chosen"]["rec_layers"], res["chosen"]["lr"]) == (best["rec_layers"], best["lr"])
    assert res["chosen"]["valid_ndcg@10"] == max(valid.values())
    assert res["epoch_cap"] == 1 and all(r["epochs_run"] == 1 for r in res["runs"])
    done = {p: p.stat().st_mtime_ns for p in runs_root.glob("*/done.json")}

    def trains(*a, **k):
        raise AssertionError("a finished run is found in the run cache, never trained again")

    monkeypatch.setattr("llmrec.itemseq.loop._fit", trains)
    assert lite_selection.select_lite("smoke", grid=grid, out=out, progress=False, epochs=1) == res
    assert {p: p.stat().st_mtime_ns for p in runs_root.glob("*/done.json")} == done


def test_the_command_line(capsys, tmp_path, monkeypatch):
    seen = {}

    def fake(profile, dataset, device):
        seen.update(profile=profile, dataset=dataset, device=device)
        return {"chosen": {"rec_layers": 8, "lr": 3e-4, "epochs": 12}}

    monkeypatch.setattr(lite_selection, "select_lite", fake)
    assert main(["select-lite", "--device", "cuda"]) == 0
    assert seen == {"profile": "paper", "dataset": None, "device": "cuda"}
    assert "chosen on validation: rec_layers=8, lr=0.0003, epochs=12" in capsys.readouterr().out
