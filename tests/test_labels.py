"""What readers see: every loss named and coloured once for every chapter, figures labelled in words, and tables
shown with headers in words, intervals in one column and no NaN (the raw frames unchanged for code)."""

import json
import re

import numpy as np
import pandas as pd
import pytest

from llmrec.core import labels
from llmrec.core.io import repo_root
from llmrec.core.labels import LOSS_COLOURS, LOSS_NAMES, loss_of
from llmrec.experiments import tables


def trainable_losses() -> set[str]:
    from llmrec.lite.config import LOSSES as LITE
    from llmrec.llm.config import LOSSES as LLM
    from llmrec.seqrec.config import LOSSES as SEQREC

    return set(LLM) | set(SEQREC) | set(LITE)


def test_every_loss_the_library_trains_has_a_readers_name_and_one_colour():
    """A new loss in any family's LOSSES fails here until it has a name and a colour."""
    for loss in trainable_losses():
        assert loss in LOSS_NAMES and loss in LOSS_COLOURS, f"{loss}: no reader's name or colour in core.labels"
        assert loss_of(loss) == loss == loss_of(LOSS_NAMES[loss])  # both names lead back to the loss
    assert set(LOSS_NAMES) == set(LOSS_COLOURS)
    assert set(labels.LLM_LOSSES) | set(labels.ITEM_LOSSES) == set(LOSS_COLOURS)
    for group in (labels.LLM_LOSSES, labels.ITEM_LOSSES, labels.CROSS_FAMILY):  # the names one figure can compare
        colours = [LOSS_COLOURS[loss] for loss in group]
        assert len(set(colours)) == len(colours), f"two losses of {group} share a colour"
    # grey: what trains no loss (popularity, a beam search drawn beside a loss)
    assert [loss for loss, colour in LOSS_COLOURS.items() if colour == labels.NEUTRAL] == ["popularity"]


def test_each_method_the_chapters_name_is_drawn_in_the_colour_of_the_loss_it_trains():
    from llmrec.experiments.classic_protocol import PROTOCOL_VARIANTS, sce_protocol_variants
    from llmrec.experiments.lite_vs_sasrec import LITE_VARIANTS

    for name, over in {**PROTOCOL_VARIANTS, **sce_protocol_variants()}.items():  # chapter 07
        assert loss_of(name) == over["loss"], name
    chapter_05 = {"LML": "lml", "LML + tuning τ": "lml-tau", "MSL (w/o τ)": "msl", "MSL + tuning lr": "msl",
                  "MSL + α": "msl-alpha", "MSL + tuning τ": "msl", "MSL (w/ ATS)": "msl-ats"}
    chapter_02_06_07 = {"optimise LML": "lml", "optimise L2 only": "l2-only", "S-DPO": "sdpo",
                        "MSL + ATS": "msl-ats", "LLM + LML": "lml", "LLM + MSL + ATS": "msl-ats",
                        "full-softmax CE": "ce", "popularity": "popularity",
                        "projection head (Lite-LLM4Rec)": "lite"}
    for name, loss in {**chapter_05, **chapter_02_06_07}.items():
        assert loss_of(name) == loss, name
    assert loss_of("Lite-LLM4Rec") == "lite" and loss_of(LITE_VARIANTS["SCE (K 500, α 100)"]["loss"]) == "sce"
    for name in ("dot-product head", "frozen recommendation LLM", "constrained beam search (10 beams)",
                 "exact ranking (P_valid of every title)"):
        assert loss_of(name) is None and labels.loss_colour(name) == labels.NEUTRAL, name  # no loss: grey


def evals_with_popularity(tmp_path):
    """Two evaluated runs and popularity (no run: its epochs and training time are missing), on 200 users."""
    rng = np.random.default_rng(0)
    out = {}
    for name in ("MSL + ATS", "LML"):
        run = tmp_path / name
        run.mkdir()
        (run / "done.json").write_text(json.dumps({"seconds_per_step": 0.5, "train_seconds": 30.0,
                                                   "seconds_total": 31.0, "best_epoch": 1, "epochs_run": 1}))
        (run / "config.json").write_text(json.dumps({"epochs": 1}))
        out[name] = run, {"ranks": rng.choice([0.0, 4.0, 50.0], 200).tolist(), "user_ids": list(range(200)),
                          "n_users": 200}
    out["popularity"] = {}, {"ranks": rng.choice([2.0, 80.0], 200).tolist(), "user_ids": list(range(200)),
                             "n_users": 200}
    return out


def assert_for_readers(shown: pd.DataFrame, raw: pd.DataFrame):
    headers = list(shown.columns) + [n for n in shown.index.names if n]
    raw_names = set(raw.columns) | {n for n in raw.index.names if n}
    words = {n for n in raw_names if labels.MEASURES.get(n) == n}  # "loss", "method", "seeds": words already
    for h in headers:
        assert h not in raw_names - words, f"the raw column {h!r} shown to a reader"
        assert not re.search(r"(^|[ _])(lo|hi)$|\b[a-z]+_[a-z]|ndcg@|hr@", h), f"a raw column name in {h!r}"
    cells = shown.to_numpy().ravel().tolist() + [v for level in range(shown.index.nlevels)
                                                 for v in shown.index.get_level_values(level)]
    assert all(isinstance(c, str) for c in cells)
    assert not any(re.search(r"\bnan\b|\bNone\b", c, re.I) for c in cells), "NaN shown to a reader"


def test_the_readers_table_has_headers_in_words_one_interval_column_and_no_nan(tmp_path):
    evals = evals_with_popularity(tmp_path)
    accuracy = tables.accuracy_table(evals)
    before = accuracy.copy()
    shown = tables.for_reader(accuracy)
    assert_for_readers(shown, accuracy)
    pd.testing.assert_frame_equal(accuracy, before)  # the raw frame stays as it was, for code
    assert pd.isna(accuracy.loc["popularity", "best_epoch"]) and shown.loc["popularity", "best epoch"] == "–"
    m, lo, hi = (accuracy.loc["LML", c] for c in ("ndcg@10", "ndcg@10 lo", "ndcg@10 hi"))
    assert shown.loc["LML", "NDCG@10 [95% interval]"] == f"{m:.4f} [{lo:.4f}, {hi:.4f}]"
    paired = tables.paired_table(evals, baseline="LML", metrics=("ndcg@10", "hr@10"))
    shown = tables.for_reader(paired)
    assert_for_readers(shown, paired)
    row = paired.iloc[0]
    assert shown["difference [95% interval]"].iloc[0] == \
        f"{row['diff']:+.4f} [{row['lo']:+.4f}, {row['hi']:+.4f}]".replace("-", "−").replace("+0.0000", "0.0000")
    assert shown["measure"].tolist() == ["NDCG@10", "HR@10"] * 2 and shown["against"].iloc[0] == "LML"
    assert "resolved" in paired and shown["verdict"].tolist() == paired["verdict"].tolist()  # said once, in words
    assert "interval excludes 0" not in shown
    # a table read back from a results record: columns in alphabetical order, lo and hi still go with diff
    back = tables.for_reader(paired[sorted(paired.columns)])
    assert back["difference [95% interval]"].tolist() == shown["difference [95% interval]"].tolist()


def test_the_readers_table_writes_losses_splits_and_pivots_in_words():
    grid = pd.DataFrame([{"K": K, "alpha": a, "ndcg@10": 0.01 * K / (K + a)} for K in (10, 500) for a in (1.0, 100.0)])
    shown = tables.for_reader(grid.pivot(index="K", columns="alpha", values="ndcg@10"))
    assert list(shown.columns) == ["scale α = 1", "scale α = 100"] and shown.index.name == "negatives K"
    cost = pd.DataFrame({"loss": ["ce", "sampled-softmax", "sce"], "K": [None, 500, 500], "alpha": [None, 1.0, 100.0],
                         "seconds_per_epoch": [3.71, 1.5, 1.52], "score_matrix_mb": [44.9, 1.9, 1.9]})
    shown = tables.for_reader(cost)
    assert_for_readers(shown, cost)
    assert shown["loss"].tolist() == ["CE", "sampled softmax", "SCE"] and shown["negatives K"].tolist()[0] == "–"
    assert shown["time per epoch (s)"].tolist() == ["3.71", "1.50", "1.52"]
    sweep = pd.DataFrame([{"dataset": "toy", "tau": t, "split": s, "nll_valid": 12.0, "lo": 11.5, "hi": 12.5,
                           "beam metric": "ndcg@10", "beam": 0.0, "beam lo": 0.0, "beam hi": 0.0, "run": "/x"}
                          for t in (1.0, 4.5) for s in ("valid", "test")]).set_index(["dataset", "tau", "split"])
    shown = tables.for_reader(sweep)
    assert_for_readers(shown, sweep)
    assert shown.index.get_level_values("split").tolist() == ["validation", "test"] * 2
    assert shown.index.get_level_values("temperature τ").tolist() == ["1", "1", "4.5", "4.5"]
    assert "run" not in shown.columns and shown.iloc[0, 0] == "12.00 [11.50, 12.50]"
    with pytest.raises(ValueError, match="two columns of this table read 'users'"):
        tables.for_reader(pd.DataFrame({"users": [1], "n_users": [1]}))


def test_the_committed_tables_read_for_readers():
    """Chapter 08's accuracy table from the committed quick results: popularity's missing epochs show as "–"."""
    from llmrec.experiments import published

    folder = repo_root() / "results" / "quick" / "08_lite"
    if not folder.exists():
        pytest.skip("no committed quick results (make results-lite)")
    table = tables.accuracy_table(published.read_runs(folder, "toy"))
    assert table.isna().any().any()  # the raw frame has the NaN the reader must not see
    assert_for_readers(tables.for_reader(table), table)
    for name in ("beam-users", "beam-users-paired", "inference-cost"):
        raw = published.read_table(folder, "toy", name)
        assert_for_readers(tables.for_reader(raw), raw)


def test_the_figures_draw_each_loss_in_its_colour_with_axes_in_words(tmp_path):
    from matplotlib.colors import to_hex

    from llmrec import plots

    evals = {k: v for k, v in evals_with_popularity(tmp_path).items() if k != "popularity"}
    for metric in ("ndcg@10", "nll_valid"):
        if metric == "nll_valid":
            evals = {k: (run, {**ev, "nll_valid": np.linspace(10, 14, 200).tolist()}) for k, (run, ev) in evals.items()}
        ax = plots.plot_accuracy_vs_time(evals, metric).axes[0]
        drawn = {c.get_label(): to_hex(c.lines[0].get_color()).upper() for c in ax.containers}
        assert drawn == {"MSL + ATS": LOSS_COLOURS["msl-ats"], "LML": LOSS_COLOURS["lml"]}
        assert ax.get_xlabel() == "training time (s)" and metric not in ax.get_ylabel()
    assert ax.get_ylabel().startswith("−log P_valid of the target (nats)")
    table = pd.DataFrame({"diff": [0.1, -0.2], "lo": [0.0, -0.3], "hi": [0.2, -0.1]},
                         index=["SASRec + BCE", "CE, post-LN blocks"])
    ax = plots.plot_paired(table, "diff").axes[0]
    assert [to_hex(c.lines[0].get_color()).upper() for c in ax.containers] == \
        [LOSS_COLOURS["ce"], LOSS_COLOURS["bce"]]  # drawn bottom-up
    ax = plots.plot_paired(table, "diff", loss="lite").axes[0]
    assert {to_hex(c.lines[0].get_color()).upper() for c in ax.containers} == {LOSS_COLOURS["lite"]}


def test_a_quick_chapter_shows_the_committed_laptop_figure_beside_its_own_and_says_which():
    from llmrec import plots

    shown = plots.reference_figure("06_accuracy_vs_time", "quick", "toy")
    if not (repo_root() / "figures" / "laptop" / "06_accuracy_vs_time.png").exists():
        assert shown == []
        pytest.skip("no committed laptop figures")
    caption, image = shown
    text = caption.data
    assert "`laptop` reference" in text and "results/laptop/llm/" in text and "-p results laptop" in text
    assert "500 test users" in text and "`quick` run above has 16" in text and image.data[:4] == b"\x89PNG"
    assert plots.reference_figure("06_accuracy_vs_time", "laptop", "toy") == []  # the reference itself
    assert plots.reference_figure("06_accuracy_vs_time", "quick", "books") == []  # the reference is Toy only
    assert plots.reference_figure("06_accuracy_vs_time", "paper", "toy") == []  # every test user: nothing to add
    assert plots.reference_figure("no_such_figure", "quick", "toy") == []
