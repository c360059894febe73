"""The study's choices of runs and evaluation sizes (no training: llm_run and evaluate_run are replaced)."""

from llmrec.core.profiles import train_config
from llmrec.experiments import llm_losses, parameters, profile_runs, published


def test_mechanism_runs_share_the_canonical_lml_run_and_shorten_the_side_dataset(monkeypatch):
    calls = []
    monkeypatch.setattr(profile_runs, "llm_run",
                        lambda profile, loss, ds, device, progress=True, **kw: calls.append((ds, kw)))
    profile_runs.mechanism_run("quick", "toy", seed=0)
    profile_runs.mechanism_run("quick", "books", seed=0)
    profile_runs.mechanism_run("full", "books", seed=0)
    assert calls == [("toy", {"seed": 0}), ("books", {"seed": 0, "max_steps": 32}), ("books", {"seed": 0})]
    assert train_config("quick", loss="lml")["log_grad_norms"] == 4
    assert "log_grad_norms" not in train_config("quick", loss="msl-ats")  # the TrainConfig default: 0, never


def test_validation_uses_fewer_beams_and_its_own_metric(monkeypatch):
    from llmrec import runs

    seen = []
    monkeypatch.setattr(runs, "evaluate", lambda run, split, mode, n_users, k, **kw: seen.append((split, n_users, k)))
    profile_runs.llm_eval("r", "quick", "valid")
    profile_runs.llm_eval("r", "quick", "test")
    profile_runs.llm_eval("r", "quick", "test", mode="full")
    assert seen == [("valid", 8, 5), ("test", 16, 10), ("test", 2, 10)]
    assert profile_runs.valid_metric("quick") == "ndcg@5" and profile_runs.valid_metric("paper") == "ndcg@10"


def test_one_dataset_parameter_gives_each_chapter_its_datasets(monkeypatch, tmp_path):
    """None keeps the canonical batch's datasets (so its runs are the same as before the one parameter); a name or
    a folder runs the chapter on it alone, and that dataset's mechanism run is the full one, not a side run."""
    from llmrec.core.profiles import dataset_for

    datasets = parameters.chapter_datasets
    assert datasets("quick") == ["toy", "books"] and datasets("paper") == ["toy", "books"]
    assert datasets("smoke") == ["synthetic"] and datasets("quick", own=("toy",)) == ["toy"]
    assert datasets("quick", "books") == ["books"]
    assert datasets("smoke", "books") == ["synthetic"]  # smoke: synthetic for the shipped sets
    mine = str(tmp_path)
    assert datasets("smoke", mine) == [mine] == datasets("quick", mine)
    assert dataset_for("smoke", mine) == mine and dataset_for("smoke", "toy") == "synthetic"
    calls = []
    monkeypatch.setattr(profile_runs, "llm_run",
                        lambda profile, loss, ds, device, progress=True, **kw: calls.append((ds, kw)))
    profile_runs.mechanism_run("quick", "books", primary="books")
    profile_runs.mechanism_run("quick", mine, primary=mine)
    assert calls == [("books", {}), (mine, {})]


def test_the_canonical_runs_keep_their_keys():
    """The quick batch's run configurations hash as they did before checkpoint_every and domain existed (both
    stay out of config.json unless set), so a run cache made earlier is still found."""
    from llmrec.core import rundir
    from llmrec.llm import TrainConfig

    config = lambda loss: TrainConfig.from_dict(profile_runs.llm_config("quick", loss, "toy", "cpu", seed=0))
    keys = {loss: rundir.config_key(config(loss).to_dict()) for loss in ("lml", "msl-ats")}
    assert keys == {"lml": "06c2239a6b78", "msl-ats": "b0139d47fb6a"}  # since the quick sizes of 2026-12-06


def test_committed_llm_results_are_read_back_as_a_run_cache_and_nothing_trains(tmp_path, monkeypatch):
    """export_llm_results publishes the runs of a profile without their weights; use_results reads them back:
    the same run folders and evaluations, nothing trained or evaluated, and a missing run or evaluation is an
    error that names it."""
    import pytest

    from llmrec.core import results, rundir

    monkeypatch.setenv("LLMREC_RUNS", str(tmp_path / "runs"))
    monkeypatch.setenv("LLMREC_RESULTS", str(tmp_path / "results"))
    monkeypatch.setattr(profile_runs, "LLM_RUNS", {})
    over = dict(seed=0)  # S-DPO starts from this LML run (the smoke profile: 4 steps)
    lml = profile_runs.llm_run("smoke", "lml", None, "cpu", progress=False, **over)
    sdpo = profile_runs.llm_run("smoke", "sdpo", None, "cpu", progress=False, **over)
    assert runs_config(sdpo)["sdpo_ref"] == lml.name  # a name in the run cache: the same key in any clone
    ev = profile_runs.llm_eval(lml, "smoke", "test", "likelihood", progress=False)
    exported = published.export_llm_results("smoke", what="test")
    assert sorted(p.name for p in exported) == sorted([f"{lml.name}.json", f"{sdpo.name}.json"])
    for p in exported:  # one results record per run: no weights, its provenance
        record = results.read_record(p)
        assert record.provenance.commit and record.provenance.machine and record.dataset_fingerprint
        assert record.evaluations or p.stem == sdpo.name
    try:
        assert published.use_results("smoke") == tmp_path / "results" / "smoke" / "llm"
        assert profile_runs.llm_run("smoke", "sdpo", None, "cpu", progress=False, **over).name == exported[1].stem
        back = profile_runs.llm_eval(profile_runs.llm_run("smoke", "lml", None, "cpu", progress=False, **over), "smoke",
                                 "test", "likelihood", progress=False)
        assert back["nll_valid"] == ev["nll_valid"] and back["user_ids"] == ev["user_ids"]
        with pytest.raises(FileNotFoundError, match="no evaluation 'test/beam"):
            profile_runs.llm_eval(exported[0], "smoke", "test", "beam", progress=False)
        with pytest.raises(FileNotFoundError, match="not among the committed results"):
            profile_runs.llm_run("smoke", "msl", None, "cpu", progress=False, **over)
        with pytest.raises(RuntimeError, match="nothing to export"):
            published.export_llm_results("smoke")
    finally:
        rundir.use_committed(None)
    assert sorted(p.name for p in (tmp_path / "runs").iterdir()) == sorted([lml.name, sdpo.name])  # no new run
    with pytest.raises(FileNotFoundError, match="no committed results folder"):
        published.use_results("laptop-that-is-not-there")


def runs_config(run):
    from llmrec import runs

    return runs.config_of(run)


def test_beams_scored_by_p_valid_are_their_own_evaluation(tmp_path, monkeypatch):
    """runs.evaluate(beam_score="valid") keeps its own metrics key and gives the ranks of a beam search scored by
    log P_valid run directly; beam_scoring pairs it with the default on the same users."""
    import numpy as np

    from llmrec import runs
    from llmrec.core.samplers import sample_rows
    from llmrec.llm import decode

    monkeypatch.setenv("LLMREC_RUNS", str(tmp_path / "runs"))
    run = profile_runs.llm_run("smoke", "msl", None, "cpu", progress=False, seed=0)
    full = profile_runs.llm_eval(run, "smoke", "test", progress=False)
    table = llm_losses.beam_scoring({"MSL": (run, full)}, "smoke", names=("MSL",))
    keys = set(runs.rundir.load_metrics(run))
    assert {"test/beam/n8/k4", "test/beam/n8/k4/score-valid"} <= keys
    pv = runs.rundir.load_metrics(run)["test/beam/n8/k4/score-valid"]
    rec = runs.load(run)
    windows = rec.ds.split("test")
    df = windows.iloc[sample_rows(len(windows), 8, seed=0)]
    beams = decode.beam_search_batch(rec.model, rec.prompts([list(h) for h in df["history"]]), rec.trie, num_beams=4,
                                     score="valid")
    direct = [decode.rank_from_beams(b, int(t)) for b, t in zip(beams, df["target"])]
    assert np.array_equal(np.asarray(pv["ranks"], dtype=float), np.asarray(direct, dtype=float))
    assert table.loc[("MSL", "ndcg@10"), "users"] == 8


def test_a_beam_panel_without_any_hit_says_so_instead_of_drawing_zeros(tmp_path):
    import json

    import pandas as pd

    from llmrec import plots

    def run(name, ranks):
        (tmp_path / name).mkdir()
        (tmp_path / name / "done.json").write_text(json.dumps({"train_seconds": 10.0}))
        return tmp_path / name, {"ranks": ranks, "user_ids": list(range(len(ranks)))}

    inf = float("inf")
    missed = {"A": run("a", [inf] * 48), "B": run("b", [inf, 20.0] * 24)}  # rank 20: outside the top 10
    ax = plots.plot_accuracy_vs_time(missed, "ndcg@10").axes[0]
    assert not ax.lines and not ax.collections and "(48 test)" in ax.texts[0].get_text()
    assert "laptop" not in ax.texts[0].get_text()  # no claim about where it resolves unless the caller makes it
    ax = plots.plot_accuracy_vs_time(missed, "ndcg@10", split="valid", hint="more users resolve it").axes[0]
    assert "(48 valid)" in ax.texts[0].get_text() and "more users resolve it" in ax.texts[0].get_text()
    hit = {"A": missed["A"], "C": run("c", [0.0] + [inf] * 47)}
    ax = plots.plot_accuracy_vs_time(hit, "ndcg@10").axes[0]
    assert not ax.texts and len(ax.containers) == 2 and ax.get_ylim()[0] == 0  # two points with intervals
    sweep = pd.DataFrame([{"dataset": "toy", "tau": t, "split": s, "nll_valid": 12.0, "lo": 11.0, "hi": 13.0,
                           "users": 500, "ndcg@10": 0.0, "ndcg@5": 0.0, "beam lo": 0.0, "beam hi": 0.0,
                           "beam metric": "ndcg@10" if s == "test" else "ndcg@5",
                           "beam users": 48 if s == "test" else 24} for t in (1, 2) for s in ("valid", "test")])
    fig = plots.plot_tau_sweep(sweep)
    said = fig.texts[0].get_text()
    assert len(fig.axes) == 1 and "48 test, 24 valid" in said and "NDCG@5/NDCG@10" in said  # no beam panel
    fig.canvas.draw()
    assert any(t.get_text() and t.get_visible() for t in fig.axes[0].get_xticklabels())  # the tau axis stays
    sweep.loc[0, ["ndcg@5", "beam hi"]] = 0.02, 0.05
    fig = plots.plot_tau_sweep(sweep)
    assert not fig.axes[1].texts and len(fig.axes[1].containers) == 2


def test_the_sce_grid_figure_draws_each_cell_with_its_interval():
    import pandas as pd

    from llmrec import plots

    grid = pd.DataFrame([{"K": K, "alpha": a, "ndcg@10": 0.008, "ndcg@10 lo": 0.006, "ndcg@10 hi": 0.010}
                         for K in (10, 100) for a in (1.0, 100.0)])
    ax = plots.plot_sce_grid(grid, ce_ndcg=0.009, ce_interval=(0.007, 0.011)).axes[0]
    bars = [c for c in ax.containers if c.has_yerr]
    assert len(bars) == 2  # one line per alpha, each cell with its interval
    lo, hi = bars[0].lines[2][0].get_segments()[0][:, 1]
    assert (lo, hi) == (0.006, 0.010) and ax.get_ylim()[0] == 0 and len(ax.patches) == 1  # CE's band


def test_the_experiments_do_no_work_at_import():
    """Importing every module of llmrec.experiments starts no subprocess: provenance's git call waits for the first
    results file."""
    import os
    import subprocess
    import sys

    code = """
import pkgutil, subprocess
started = []
class Recorded(subprocess.Popen):
    def __init__(self, args, *a, **k):
        started.append(args)
        super().__init__(args, *a, **k)
subprocess.Popen = Recorded
import llmrec.experiments as package
names = [m.name for m in pkgutil.iter_modules(package.__path__)]
for name in names:
    __import__(f"llmrec.experiments.{name}")
print(len(names), started)
"""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True).stdout
    n, started = out.split(" ", 1)
    assert int(n) >= 9 and started.strip() == "[]", out
