"""Do the conclusions transfer? The verdict rule, the table on the committed results (the numbers the records give),
and ``llmrec verdicts`` on the synthetic catalogue: it trains, saves the table, and finds its runs again."""

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from llmrec.cli import main
from llmrec.core.results import read_record
from llmrec.experiments import transfer as T
from llmrec.experiments import transfer_runs as R

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "results"


def entry(values, users=None, metric="nll_valid"):
    """An evaluation entry holding per-window values of ``metric`` (a stored measure) for ``users``."""
    users = list(range(len(values))) if users is None else list(users)
    return {"user_ids": users, metric: list(map(float, values))}


def ranks_entry(ranks, users=None):
    return {"user_ids": list(range(len(ranks))) if users is None else list(users), "ranks": list(map(float, ranks))}


# ------------------------------------------------------------------------------------------------ the rule


@pytest.mark.parametrize("lo,hi,status,sign,want", [
    (0.1, 0.3, "resolved", 1, 1), (0.1, 0.3, "resolved", -1, -1), (-0.3, -0.1, "resolved", 1, -1),
    (-0.3, -0.1, "resolved", -1, 1), (-0.1, 0.3, "unresolved", 1, 0),
    (0.001, 0.3, "edge", 1, 0),  # a bound within the bootstrap's own noise of 0 excludes nothing
])
def test_side_is_the_side_of_zero_the_interval_excludes_relative_to_the_paper(lo, hi, status, sign, want):
    assert T.side({"lo": lo, "hi": hi, "verdict": status}, sign) == want


@pytest.mark.parametrize("sides,want", [
    ([1], "holds"), ([1, 1, 1], "holds"), ([-1], "reversed"), ([-1, -1], "reversed"), ([0], "unresolved"),
    ([1, 1, 0], "unresolved"), ([1, -1], "unresolved"), ([-1, 0], "unresolved"),
])
def test_a_claim_holds_only_where_every_interval_agrees(sides, want):
    assert T.claim_verdict(sides) == want


def test_a_verdict_needs_an_interval():
    with pytest.raises(ValueError, match="at least one"):
        T.claim_verdict([])


def test_every_seed_and_the_seed_mean():
    """Seed 0 far better, seed 1 no different: the every-seed verdict is unresolved, the seed mean holds; the
    differences are the means of the per-window differences, computed here by hand."""
    n, rng = 400, np.random.default_rng(0)
    base = rng.normal(10, 1, n)
    a = {0: entry(base), 1: entry(base + rng.normal(0, 0.01, n))}
    b = {0: entry(base - 1 + rng.normal(0, 0.1, n)), 1: entry(a[1]["nll_valid"] + rng.normal(0, 0.1, n))}
    r = T.compare_seeds(a, b, "nll_valid")  # lower is better: the method's likelihood is higher where it is lower
    assert (r["verdict"], r["mean_verdict"]) == ("unresolved", "holds")
    per = {s: np.mean(b[s]["nll_valid"]) - np.mean(a[s]["nll_valid"]) for s in (0, 1)}
    assert r["per_seed"][0]["diff"] == pytest.approx(per[0]) and r["per_seed"][1]["diff"] == pytest.approx(per[1])
    assert r["diff"] == pytest.approx((per[0] + per[1]) / 2)
    assert r["lo"] < r["diff"] < r["hi"] < 0 and (r["seeds_a"], r["seeds_b"]) == (2, 2)
    same = T.compare_seeds(a, {s: entry(np.asarray(b[0]["nll_valid"]) + 0) for s in (0, 1)}, "nll_valid")
    assert same["verdict"] == "holds"
    assert T.compare_seeds(b, a, "nll_valid")["mean_verdict"] == "reversed"


def test_ranking_metrics_expect_higher_and_an_arm_without_seeds_pairs_with_each():
    """NDCG@10 from ranks (1/log2(rank + 2) within the top 10, by hand); popularity (seed None) against two seeds."""
    n = 300
    pop = ranks_entry([50] * n)  # never in the top 10
    method = {s: ranks_entry([0 if (u + s) % 3 == 0 else 50 for u in range(n)]) for s in (0, 1)}
    r = T.compare_seeds({None: pop}, method, "ndcg@10")
    assert r["verdict"] == "holds" and (r["seeds_a"], r["seeds_b"]) == (2, 2) and sorted(r["per_seed"]) == [0, 1]
    hand = np.mean([[1.0 if (u + s) % 3 == 0 else 0.0 for u in range(n)] for s in (0, 1)])
    assert r["diff"] == pytest.approx(hand) and r["b"] == pytest.approx(hand) and r["a"] == 0
    assert T.compare_seeds(method, {None: pop}, "hr@10")["verdict"] == "reversed"
    assert T.expected_sign("nll_valid") == -1 and T.expected_sign("hr@10") == 1


def test_seeds_only_one_arm_has_are_averaged_but_not_paired():
    a = {0: ranks_entry([0, 50] * 100), 1: ranks_entry([0, 50] * 100), 2: ranks_entry([50, 50] * 100)}
    b = {0: ranks_entry([0, 0] * 100)}
    r = T.compare_seeds(a, b, "hr@10")
    assert sorted(r["per_seed"]) == [0] and (r["seeds_a"], r["seeds_b"]) == (3, 1)
    assert r["diff"] == pytest.approx(1 - np.mean([0.5, 0.5, 0.0]))


def test_runs_on_other_windows_are_refused():
    with pytest.raises(ValueError, match="different windows"):
        T.compare_seeds({0: entry([1, 2], [1, 2])}, {0: entry([1, 2], [1, 3])}, "nll_valid")


def test_ndcg_and_hr_disagreeing_is_said():
    assert T.disagreement({"ndcg@10": "holds", "hr@10": "unresolved"}) == \
        "NDCG@10 and HR@10 disagree (holds / unresolved)"
    assert T.disagreement({"ndcg@10": "holds", "hr@10": "holds", "nll_valid": "reversed"}) == ""
    assert T.disagreement({"nll_valid": "holds"}) == ""
    evals = {(arm, 0): {"ndcg@10": ranks_entry([50] * 20), "hr@10": ranks_entry([50] * 20)}
             for arm in ("SASRec + CE", "Lite-LLM4Rec")}
    rows = T.claim_rows(T.claims(["lite-sasrec"])[0], "toy", evals, (0,), "train")
    assert [r["note"] for r in rows] == ["no target in either arm's top 10 on these windows"] * 2


def test_claims_are_data_with_a_direction_from_the_paper():
    assert len({c.key for c in T.CLAIMS}) == len(T.CLAIMS)
    for c in T.CLAIMS:
        assert c.baseline in R.ARMS and c.method in R.ARMS and set(c.metrics) >= {"ndcg@10", "hr@10"}
    with pytest.raises(ValueError, match="choose among"):
        T.claims(["lite-beats-everything"])


# ------------------------------------------------------------------------------------------------ committed results


def _ndcg(path) -> np.ndarray:
    ev = read_record(path).evaluations["test/full/nall"]
    r = np.array([np.inf if x is None else x for x in ev.ranks])
    return np.where(r < 10, 1 / np.log2(np.where(r < 10, r, 0) + 2), 0.0)


def _llm_record(loss: str):
    (rec,) = [r for p in sorted((RESULTS / "laptop" / "llm").glob(f"toy-smollm2-135m-{loss}-*.json"))
              if (r := read_record(p)).config["loss"] == loss and r.config["seed"] == 0
              and r.config["lr"] == 1e-3 and r.config["tau"] == 1.0]
    return rec


def test_the_committed_toy_table_gives_the_numbers_of_the_committed_records():
    table = T.transfer_table("toy", keys=["lite-sasrec", "msl-ats", "lite-popularity"])
    assert table.attrs["source"] == "committed" and table.attrs["trained"] == [] and table.attrs["found"] == []
    row = table.query("key == 'lite-sasrec' and metric == 'ndcg@10'").iloc[0]
    # seed 0 is chapter 08's run; the others the reference's seed runs
    lite = [_ndcg(RESULTS / "quick" / "08_lite" / "toy-lite-llm4rec.json")] + [
        _ndcg(p) for p in sorted((RESULTS / "quick" / "transfer").glob("toy-lite-llm4rec-seed-*.json"))]
    ce = [_ndcg(RESULTS / "laptop" / "07_classic" / f"toy-sasrec-ce-seed-{s}.json") for s in (0, 1, 2)]
    seeds = "3" if len(lite) == 3 else f"{len(lite)} vs 3"
    assert row["seeds"] == seeds and row["windows"] == len(lite[0]) == 4794
    assert row["diff"] == pytest.approx(np.mean(lite) - np.mean(ce))
    assert row["method mean"] == pytest.approx(np.mean(lite))
    assert row["seed diffs"] == pytest.approx([l.mean() - c.mean() for l, c in zip(lite, ce)])
    assert row["lo"] < row["diff"] < row["hi"] and row["verdict"] in T.VERDICTS
    nll = table.query("key == 'msl-ats' and metric == 'nll_valid'").iloc[0]
    # every committed seed of each arm: seed 0 from chapter 05's runs, the others from the reference's seed runs
    seeds = {loss: [_llm_record(loss)] + [read_record(p) for p in
                                          sorted((RESULTS / "laptop" / "transfer").glob(f"toy-{loss}-seed-*.json"))]
             for loss in ("lml", "msl-ats")}
    means = [np.mean([r.evaluations["test/likelihood/n1000"].summary["nll_valid"].mean for r in seeds[loss]])
             for loss in ("lml", "msl-ats")]
    n = (len(seeds["msl-ats"]), len(seeds["lml"]))
    assert nll["seeds"] == (f"{n[0]}" if n[0] == n[1] else f"{n[0]} vs {n[1]}")
    assert nll["diff"] == pytest.approx(means[1] - means[0]) and nll["expects"] == "lower"
    assert nll["baseline mean"] == pytest.approx(means[0]) and nll["windows"] == 1000
    assert table.query("key == 'msl-ats' and metric != 'nll_valid'")["windows"].tolist() == [500, 500]
    pop = table.query("key == 'lite-popularity' and metric == 'ndcg@10'").iloc[0]  # computed, as committed
    assert pop["baseline mean"] == pytest.approx(_ndcg(RESULTS / "quick" / "08_lite" / "toy-popularity.json").mean())
    sentence = T.where_it_holds(table, "lite-sasrec")
    assert f"{row['verdict']} on toy ({T.interval_text(row['diff'], row['lo'], row['hi'], 'ndcg@10')}" in sentence
    assert ("3 seeds" if len(lite) == 3 else f"{len(lite)} seed") in sentence


def test_a_claim_without_committed_runs_says_so(tmp_path, monkeypatch):
    """Results holding SASRec + CE (and the rates the protocol chose) but no Lite-LLM4Rec: that cell says "no
    committed run", the popularity row is computed, and nothing trains."""
    classic = tmp_path / "laptop" / "07_classic"
    shutil.copytree(RESULTS / "laptop" / "07_classic" / "selection", classic / "selection")
    shutil.copy(RESULTS / "laptop" / "07_classic" / "toy-sasrec-ce-seed-1.json", classic)
    monkeypatch.setenv("LLMREC_RESULTS", str(tmp_path))
    monkeypatch.setenv("LLMREC_RUNS", str(tmp_path / "runs"))
    table = T.transfer_table("toy", keys=["lite-sasrec", "lite-popularity"])
    assert set(table["verdict"]) == {"no committed run"} and table["diff"].isna().all()
    assert "no run of Lite-LLM4Rec" in table["note"].iloc[0]
    assert table.attrs["computed"] == ["popularity"] and not (tmp_path / "runs").exists()
    assert T.where_it_holds(table, "lite-sasrec", ("ndcg@10", "hr@10")) == ("Lite-LLM4Rec beats SASRec + CE (method "
                                                                           "− baseline). NDCG@10: no committed run on "
                                                                           "toy. HR@10: no committed run on toy.")
    with pytest.raises(ValueError, match="reference"):
        T.transfer_table("synthetic", "smoke", source="reference")
    with pytest.raises(ValueError, match="publish"):
        T.transfer_table("toy", publish=True)


def test_the_pages_quote_the_committed_reference():
    """README.md, the book's introduction and docs/transfer.md quote the committed reference through llmrec tables'
    regions (tests/test_tables.py holds every region to the records; after new results: python -m llmrec tables)."""
    from llmrec.experiments import doc_transfer

    sentence = T.where_it_holds(doc_transfer._reference(), "lite-sasrec", R.RANKING)
    for page in ("README.md", "book/index.md"):
        assert f"<!-- llmrec:value transfer_claims lite-sasrec -->{sentence}<!-- llmrec:end -->" in \
            (ROOT / page).read_text(), page
    text = (ROOT / "docs" / "transfer.md").read_text()
    assert "<!-- llmrec:table transfer_reference -->\n| claim " in text and "| Lite-LLM4Rec beats SASRec + CE " in text


# ------------------------------------------------------------------------------------------------ llmrec verdicts


@pytest.fixture(scope="module")
def runs_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("runs")


def test_verdicts_trains_saves_and_finds_its_runs_again(runs_dir, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("LLMREC_RUNS", str(runs_dir))
    out = tmp_path / "verdicts.json"
    args = ["verdicts", "--dataset", "synthetic", "--profile", "smoke", "--quiet", "--out", str(out)]
    assert main([*args, "--claims", "ce-bce"]) == 0
    first = capsys.readouterr().out
    assert "2 runs trained, 0 found" in first and "CE beats BCE (SASRec)" in first
    rows = read_record(out).rows
    assert [r["metric"] for r in rows] == ["ndcg@10", "hr@10"] and all(r["verdict"] in T.VERDICTS for r in rows)
    assert main([*args, "--claims", "ce-bce", "ce-bpr"]) == 0  # resumed: only BPR is new
    assert "1 runs trained, 2 found" in capsys.readouterr().out
    assert len(read_record(out).rows) == 4
    assert main([*args, "--claims", "ce-bce", "--publish"]) == 2
    assert "--reference" in capsys.readouterr().err


def test_a_published_reference_run_is_found_as_committed(runs_dir, tmp_path, monkeypatch):
    """train_jobs with publish writes the run's record where committed_record finds it again, by its configuration."""
    monkeypatch.setenv("LLMREC_RUNS", str(runs_dir))
    monkeypatch.setenv("LLMREC_RESULTS", str(tmp_path))
    arm = R.Arm("SASRec + CE", "seqrec", R.ARMS["SASRec + CE"].over, "smoke")
    keys = set(R.eval_keys(arm, "smoke").values())
    assert R.committed_record(arm, "synthetic", 0, keys) is None
    out = R.train_jobs([R.Job(arm, 0, "smoke", "synthetic")], progress=False, publish=True)
    path = R.transfer_path(arm, "synthetic", 0)
    assert path == tmp_path / "smoke" / "transfer" / "synthetic-sasrec-ce-seed-0.json" and path.exists()
    rec = R.committed_record(arm, "synthetic", 0, keys)
    assert rec is not None and rec.extra["arm"] == "SASRec + CE"
    assert rec.evaluations["test/full/nall"].ranks == \
        [None if r == np.inf else r for r in out[("SASRec + CE", 0)]["ndcg@10"]["ranks"]]
    assert R.committed_record(arm, "synthetic", 1, keys) is None  # another seed is another run
    assert json.loads(path.read_text())["extra"]["run"] == rec.extra["run"]


def test_a_published_llm_run_holds_its_beams_scored_both_ways(runs_dir, tmp_path, monkeypatch):
    """A reference LLM run is published with its validation beams scored both ways and its test beams scored by
    log P_valid (issue 26, item 2), on the users of the default scoring, so that the beam-scoring choice reads it."""
    from llmrec.experiments import beam_scoring as B

    monkeypatch.setenv("LLMREC_RUNS", str(runs_dir))
    monkeypatch.setenv("LLMREC_RESULTS", str(tmp_path))
    arm = R.Arm("LML", "llm", R.ARMS["LML"].over, "smoke")
    est = [R.estimate_seconds(arm, "smoke", "synthetic", publish=p) for p in (False, True)]
    assert est[1] > est[0]  # the scorings are priced
    R.train_jobs([R.Job(arm, 0, "smoke", "synthetic")], progress=False, publish=True)
    rec = read_record(R.transfer_path(arm, "synthetic", 0))
    scored = {k: e for k, e in rec.evaluations.items() if e.mode == "beam"}
    assert {(e.split, e.options.get("beam_score", "full")) for e in scored.values()} == \
        {("test", "full"), ("test", "valid"), ("valid", "full"), ("valid", "valid")}
    for split in ("valid", "test"):
        pair = [e for e in scored.values() if e.split == split]
        assert pair[0].user_ids == pair[1].user_ids and pair[0].k == pair[1].k
    assert list(B.scored_both_ways("valid", "synthetic", folders=("smoke/transfer",))) == ["LML (seed 0)"]


def test_every_arm_is_published_under_its_own_file_name():
    paths = {a: R.transfer_path(arm, "toy", 1).name for a, arm in R.ARMS.items() if arm.reference}
    assert len(set(paths.values())) == len(paths)
    assert paths["MSL + α"] == "toy-msl-alpha-seed-1.json" and paths["MSL + ATS"] == "toy-msl-ats-seed-1.json"


def test_plan_lists_the_runs_to_train_with_their_estimate_and_trains_nothing(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("LLMREC_RUNS", str(tmp_path / "runs"))
    assert main(["verdicts", "--dataset", "synthetic", "--profile", "smoke", "--claims", "ce-bce", "lite-popularity",
                 "--plan"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "popularity on synthetic: computed from the training windows"
    assert [line.split(",")[0] for line in lines[1:-1]] == ["SASRec + BCE", "SASRec + CE", "Lite-LLM4Rec"]
    assert lines[-1].startswith("4 runs to train, or to find in the run cache: about ")
    assert not (tmp_path / "runs").exists()
    *_, todo = T.plan("toy", keys=["lite-sasrec"], source="reference")
    planned = {(j.arm.name, j.seed) for j in todo}
    for seed in R.REFERENCE_SEEDS:  # the reference's runs that are not committed, and only those
        assert R.committed_record(R.ARMS["SASRec + CE"], "toy", seed) is not None
        committed = R.committed_record(R.ARMS["Lite-LLM4Rec"], "toy", seed) is not None
        assert (("Lite-LLM4Rec", seed) in planned) != committed and ("SASRec + CE", seed) not in planned


def test_the_cost_on_the_pages_comes_from_the_benchmark(tmp_path, monkeypatch):
    from llmrec.experiments import doc_transfer

    monkeypatch.setattr(doc_transfer, "repo_root", lambda: tmp_path)
    doc_transfer.transfer_cost.cache_clear()
    assert doc_transfer.transfer_cost()["cpu"].startswith("not measured yet on the CPU")
    (tmp_path / "bench").mkdir()
    (tmp_path / "bench" / "transfer_cost.json").write_text(json.dumps({"cpu": {
        "machine": {"cpus": 2, "cuda": None}, "when": "2026-12-05 12:00:00", "dataset": {"train windows": 10000,
                                                                                        "items": 5664},
        "trained": 10, "found in the run cache": 0, "estimate_s": 1200, "seconds": 1500.0}}))
    doc_transfer.transfer_cost.cache_clear()
    cost = doc_transfer.transfer_cost()
    assert cost["cpu"] == ("25 min on 2 CPU cores (10,000 training windows, 5,664 items; 10 runs trained, 0 found in "
                           "the run cache; estimated 20 min; 2026-12-05)")
    assert cost["cuda"].startswith("not measured yet on a GPU")
    doc_transfer.transfer_cost.cache_clear()


def test_the_figure_draws_each_claim_in_its_methods_colour():
    from matplotlib.colors import to_hex

    from llmrec import plots
    from llmrec.core.labels import LOSS_COLOURS

    table = T.transfer_table("toy", keys=["lite-sasrec", "ce-bce"])
    fig = plots.plot_transfer(table)
    ticks = {t.get_text(): to_hex(t.get_color()).upper() for t in fig.axes[0].get_yticklabels()}
    assert ticks == {"Lite-LLM4Rec beats SASRec + CE": LOSS_COLOURS["lite"], "CE beats BCE (SASRec)": LOSS_COLOURS["ce"]}
    points = {to_hex(c.get_edgecolor()[0]).upper() for ax in fig.axes for c in ax.collections}
    assert points == {LOSS_COLOURS["lite"], LOSS_COLOURS["ce"]}
    assert [ax.get_title() for ax in fig.axes] == ["NDCG@10", "HR@10"]
