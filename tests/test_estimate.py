"""`make figures` estimates each chapter's time (issue 25, item 5): the work each chapter does at a profile
(llmrec.experiments.workload) priced by the cost table (bench/costs.json), and the lines it prints."""

import math
import re

import pytest

from llmrec import chapters
from llmrec.core import rundir
from llmrec.core.io import repo_root
from llmrec.experiments import workload as W


COSTS = {"cpu": {"source": "measured here", "when": "2026-12-06", "setting": {"max_history": 5},
                 "units": {"chapter": 10.0, "llm_train:lml": 0.1, "llm_train:msl": 0.05, "beam_user": 1.0}},
         "cuda": {"source": "quoted", "setting": {"max_history": 10}, "units": {"llm_train:lml": 0.001}}}


def test_an_estimate_is_the_sum_of_counts_times_unit_costs():
    work = [W.Work("chapter", 1, "a", ""), W.Work("llm_train:lml", 200, "b", ""), W.Work("llm_train:msl", 40, "c", ""),
            W.Work("beam_user", 7.5, "d", ""), W.Work("item_vector", 3, "e", "")]
    cpu = W.estimate(work, COSTS, "cpu")
    assert cpu["seconds"] == pytest.approx(10 + 200 * 0.1 + 40 * 0.05 + 7.5)
    assert cpu["missing"] == ["item_vector"] and cpu["fallback"] == [] and cpu["device_kind"] == "cpu"
    # on a GPU: its own prices where it has them, the CPU's (named) where not
    gpu = W.estimate(work, COSTS, "cuda:0")
    assert gpu["by_unit"]["llm_train:lml"] == pytest.approx(200 * 0.001)
    assert gpu["fallback"] == ["beam_user", "chapter", "llm_train:msl"]
    # per-window LLM units grow with the history: priced at history 10 by a table measured at 5, twice
    scaled = W.estimate(work, COSTS, "cpu", max_history=10)
    assert scaled["by_unit"]["llm_train:lml"] == pytest.approx(2 * cpu["by_unit"]["llm_train:lml"])
    assert scaled["by_unit"]["beam_user"] == cpu["by_unit"]["beam_user"]


def toy_train():
    from llmrec.data import load_dataset

    return load_dataset("toy").train


def test_an_llm_run_counts_its_windows_blocks_gradient_norms_and_frozen_pass():
    work = {w.unit: w for w in W.llm_train("quick", "lml", "toy", "cpu")}
    # quick: 256 windows, 1 epoch, LoRA on the top 4 of 30 blocks, gradient norms every 4th of 32 steps
    assert work["llm_train:lml"].count == 256 * 4
    assert work["llm_grad_norms"].count == 8 * 8 * 4
    assert work["llm_frozen"].count == 256 * 26
    paper = {w.unit: w for w in W.llm_train("paper", "msl-ats", "toy", "cuda")}
    toy = len(toy_train())  # n_train 10,000 of Toy's 5,000 windows: all of them, 10 epochs, every block
    assert paper["llm_train:msl-ats"].count == toy * 10 * 30 and "llm_frozen" not in paper
    assert paper["likelihood_user_block"].count == 500 * 10 * 30  # validation: 500 users' likelihood, every epoch
    beam = {w.unit: w for w in W.llm_train("paper", "msl-ats", "toy", "cuda", valid_by="ndcg@5")}
    assert beam["beam_user"].count == 500 * 10  # by beam search: 500 users, 10 beams, every epoch
    sdpo = [w.unit for w in W.llm_train("quick", "sdpo", "toy", "cpu")]
    assert sdpo[0] == "llm_train:lml" and "llm_train:sdpo" in sdpo  # its LML reference first


def test_the_windows_counted_are_those_a_run_trains(tmp_path, monkeypatch):
    """An independent count: the steps a smoke run logs x its batch size."""
    from llmrec.core.profiles import train_config
    from llmrec.llm import train

    monkeypatch.setenv("LLMREC_RUNS", str(tmp_path))
    run = train(train_config("smoke", loss="msl", dataset="synthetic"), progress=False)
    done, cfg = rundir.read_json(run / "done.json"), rundir.read_json(run / "config.json")
    work = {w.unit: w for w in W.llm_train("smoke", "msl", "synthetic", None)}
    assert work["llm_train:msl"].count == done["steps"] * cfg["batch_size"] * W.model_blocks("tiny")


def test_work_an_earlier_chapter_did_is_not_counted_again():
    alone = W.chapter_workload("03_gradient_weights", "quick")
    assert any(w.unit == "llm_train:lml" for w in alone)  # chapter 03 alone trains its LML run
    batch = W.batch_workload(["02_lml_decomposition.ipynb", "03_gradient_weights.ipynb"], "quick")
    assert not any(w.unit.startswith("llm_train") for w in batch["03_gradient_weights.ipynb"])  # 02 trained it
    assert [w.unit for w in batch["03_gradient_weights.ipynb"]] == ["chapter", "llm_frozen"]
    assert sum(w.unit == "chapter" for ws in batch.values() for w in ws) == 2  # every chapter's fixed cost
    with pytest.raises(ValueError, match="no workload for chapter '09_mine'"):
        W.chapter_workload("09_mine", "quick")


def test_every_chapter_has_a_workload():
    assert set(W.CHAPTERS) == {p.stem for p in chapters.chapters()}


def test_early_stopped_runs_count_their_expected_epochs():
    assert W.expected_epochs(12, None) == 12
    assert W.expected_epochs(50, 5, best=12) == 17 and W.expected_epochs(12, 3, best=12) == 12
    best = W.median_best_epoch()  # from the committed classic runs trained to their plateau
    assert 1 <= best <= 50 and W.expected_epochs(200, 10) == min(200, best + 10)


def test_durations_read_as_seconds_minutes_or_hours():
    assert [W.duration(s) for s in (12.4, 89, 95, 5399, 5400, 4 * 3600)] == \
        ["12 s", "89 s", "2 min", "90 min", "1.5 h", "4.0 h"]


def test_the_lines_make_figures_prints():
    names = ["01_data_and_trie.ipynb", "03_gradient_weights.ipynb", "99_mine.ipynb"]
    planned = chapters.estimates(names, "quick", "cpu", costs=COSTS)
    assert planned["chapters"]["99_mine.ipynb"] == {"seconds": None}
    line = chapters.plan_line(planned, "quick", "cpu")
    assert re.fullmatch(r"\[figures\] estimated time \(profile=quick, device=cpu; costs: measured here, 2026-12-06; "
                        r"every run trained\): 01 10 s, 03 \d+ (s|min); total \d+ (s|min)", line), line
    three = planned["chapters"]["03_gradient_weights.ipynb"]
    assert three["missing"] == ["llm_frozen", "llm_grad_norms"]  # the test's table prices neither
    assert chapters._priced(three) == W.duration(three["seconds"]) + " (llm_frozen, llm_grad_norms unpriced)"
    gpu = chapters.estimates(names[:1], "quick", "cuda", costs=COSTS)["chapters"]["01_data_and_trie.ipynb"]
    assert chapters._priced(gpu) == "10 s (chapter at CPU cost)"
    assert chapters._priced({"seconds": None}) == "no estimate"
    missing = chapters.estimates(names, "quick", "cpu", costs={})
    assert chapters.plan_line(missing, "quick", "cpu").startswith("[figures] estimated time")
    nothing = chapters.estimates(names, "nope", "cpu", costs=COSTS)  # any error: the batch runs without
    assert chapters.plan_line(nothing, "nope", "cpu").startswith("[figures] no time estimate (ValueError: ")


def test_the_committed_cost_table_prices_every_unit_of_every_chapter():
    costs = W.load_costs()
    assert costs["cuda"]["source"] == "quoted from issue 25, H200, not measured by this project"
    for profile, device in (("quick", "cpu"), ("paper", "cuda")):
        planned = chapters.estimates([f"{c}.ipynb" for c in W.CHAPTERS], profile, device)
        for name, e in planned["chapters"].items():
            assert e["missing"] == [] and math.isfinite(e["seconds"]) and e["seconds"] > 0, (profile, name)
    assert (repo_root() / "bench" / "costs.json").exists()


def test_the_cuda_entry_is_the_issues_figures_per_unit():
    from llmrec import bench

    cpu = {"units": {"llm_train:lml": 2.0, "llm_train:msl": 1.0, "llm_train:sdpo": 4.0, "llm_grad_norms": 0.5,
                     "llm_frozen": 0.25}}
    cuda = bench.cuda_costs_from_issue(cpu)
    u, q = cuda["units"], bench.ISSUE_25_H200
    assert u["llm_train:lml"] == pytest.approx(0.22 / 16 / 30)  # 0.22 s per micro-batch of 16 windows, 30 blocks
    assert u["llm_train:msl-ats"] == u["llm_train:msl"] == pytest.approx(0.13 / 16 / 30)
    assert u["llm_train:sdpo"] == pytest.approx(4 * u["llm_train:msl"])  # the CPU's ratio S-DPO / MSL
    assert u["llm_grad_norms"] == pytest.approx(u["llm_train:lml"] / 4)
    assert u["beam_user"] == pytest.approx(0.185) and u["exact_user"] == q["exact_user_s"]
    assert set(cuda["derived"]) <= set(u) and cuda["setting"]["max_history"] == 10


def test_a_profile_validates_by_the_likelihood_where_beam_search_would_cost_more_than_training():
    from llmrec.core.profiles import profile

    paper = W.validation_choice("paper")  # the committed table's CUDA entry: 500 users x 10 beams x 10 epochs
    assert paper["beam"] > paper["train"] > paper["likelihood"] > 0
    assert paper["valid_by"] == profile("paper")["valid_by"] == "nll_valid"
    # priced by hand: LML at the paper's sizes, 30 blocks, every window of Toy's training split for 10 epochs
    units = {"llm_train:lml": 1e-4, "beam_user": 0.2, "likelihood_user_block": 1e-5}
    table = {"cuda": {"units": units}}
    by_hand = W.validation_choice("paper", table)
    assert by_hand["train"] == pytest.approx(len(toy_train()) * 10 * 30 * 1e-4)
    assert by_hand["beam"] == pytest.approx(500 * 10 * 0.2) and by_hand["likelihood"] == pytest.approx(500 * 10 * 30 * 1e-5)
    # beam search cheap enough: validation by beam NDCG@5 kept
    assert W.validation_choice("paper", {"cuda": {"units": {**units, "beam_user": 1e-3}}})["valid_by"] == "ndcg@5"
