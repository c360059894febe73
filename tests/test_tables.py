"""The results tables of README.md and docs/*.md are made from results/ by `python -m llmrec tables`: the pages
hold what the committed results give (the drift test), the generated regions keep the prose around them, and a
region that cannot be read or filled is an error naming its file and line."""

from __future__ import annotations

import io
import re

import numpy as np
import pytest

from llmrec.cli import main
from llmrec.core.metrics import ndcg_at_k, user_bootstrap
from llmrec.core.results import entry_from_evaluation, records
from llmrec.experiments import doc_bench, doc_format, doc_llm
from llmrec.experiments import doc_tables as T
from llmrec.experiments.doc_regions import RegionError, fill, regions
from llmrec.experiments.published import results_root


# ------------------------------------------------------------------------------------------- the drift test


def test_the_pages_hold_what_the_committed_results_give():
    out = io.StringIO()
    status = T.tables_command(check=True, out=out)
    assert status == 0, "README.md or docs/*.md differ from results/ (run `make tables`):\n" + out.getvalue()


def test_every_generator_is_quoted_by_a_page_and_every_page_region_names_one():
    used = {(r.kind, r.name) for page in T.pages() for r in regions(page.read_text(encoding="utf-8"), str(page))}
    registered = {("table", n) for n in doc_format.TABLES} | {("value", n) for n in doc_format.VALUES}
    assert used == registered, f"unused generators {registered - used}; unknown regions {used - registered}"


def test_generated_headers_are_words_not_column_names():
    for name, fn in doc_format.TABLES.items():
        header = fn().splitlines()[0]
        cells = [c.strip() for c in header.strip("|").split("|")]
        # a code name: snake_case (P_valid, the probability's name, aside), a lower-case metric, hi/lo columns
        raw = [c for c in cells if re.search(r"\b(?!P_valid\b)\w+_\w+|\b(ndcg|hr|mrr)@|\b(lo|hi|s/run|diff)\b", c)]
        assert not raw, f"table {name} has raw column names in its header: {raw}"


def test_a_generated_mean_and_interval_agree_with_an_independent_computation():
    """Lite-LLM4Rec's NDCG@10 in the table is the mean of 1/log2(rank + 2) over the ranks in its record, and
    its interval against SASRec + CE resamples users (a user's windows together), not windows."""
    recs = {r.name: r for r in records(results_root() / "quick" / "08_lite").values()}
    lite, ce = (entry_from_evaluation(next(iter(recs[n].evaluations.values())))
                for n in ("Lite-LLM4Rec", "SASRec + CE"))
    ranks = np.minimum(np.array(lite["ranks"], dtype=float), 1e9)  # a miss: beyond every list
    by_hand = np.where(ranks < 10, 1 / np.log2(ranks + 2), 0).mean()
    row = cells(doc_llm.lite_accuracy())["Lite-LLM4Rec"]
    assert row["NDCG@10 [95% interval]"].startswith(f"{by_hand:.4f} [")
    users = np.asarray(lite["user_ids"])
    assert len(np.unique(users)) < len(users)  # several windows per user: the two bootstraps differ
    want = user_bootstrap(ndcg_at_k(ce["ranks"], 10), ndcg_at_k(lite["ranks"], 10), users)
    assert cells(doc_llm.lite_vs_sasrec())["Lite-LLM4Rec"]["NDCG@10 − SASRec + CE [95% interval]"] == doc_format.interval(want)


def cells(table: str) -> dict[str, dict[str, str]]:
    """A generated pipe table as {first cell: {header: cell}}."""
    rows = [[c.strip() for c in line.strip().strip("|").split("|")] for line in table.splitlines()]
    header, body = rows[0], rows[2:]
    return {r[0]: dict(zip(header, r)) for r in body}


# ----------------------------------------------------------------------------------------- the formatting


def test_intervals_say_unresolved_where_they_contain_zero_and_comparisons_mark_disagreement():
    resolved = {"diff": 0.0043, "lo": 0.0011, "hi": 0.0085, "verdict": "resolved"}
    crossing = {"diff": -0.0016, "lo": -0.0049, "hi": 0.0014, "verdict": "unresolved"}
    edge = {"diff": -0.0028, "lo": -0.0057, "hi": 0.00001, "verdict": "edge"}
    worse = {"diff": -0.0041, "lo": -0.0055, "hi": -0.0028, "verdict": "resolved"}
    assert doc_format.interval(resolved) == "+0.0043 [+0.0011, +0.0085]"
    assert doc_format.interval(crossing) == "\u22120.0016 [\u22120.0049, +0.0014] unresolved"
    assert doc_format.interval(edge).endswith("unresolved (at the edge)")
    assert doc_format.agreement(resolved, resolved) == doc_format.agreement(crossing, edge) == doc_format.agreement(worse, worse) == "agree"
    for a, b in ((resolved, crossing), (worse, crossing), (resolved, worse)):
        assert "disagree" in doc_format.agreement(a, b)
    assert doc_format.lr_text(0.003) == "3e-3" and doc_format.lr_text(0.01) == "1e-2" and doc_format.lr_text(3e-4) == "3e-4"


# ------------------------------------------------------------------------------------------ the regions

PAGE = """# A page

Prose before.

<!-- llmrec:table demo -->
| old | table |
|---|---|
| 1 | 2 |
<!-- llmrec:end -->

A sentence with <!-- llmrec:value numbers pi -->3.1<!-- llmrec:end --> in it.

| cell | <!-- llmrec:value numbers e -->2<!-- llmrec:end --> |
"""


def render(kind, name, key):
    if kind == "table" and name == "demo":
        return "| new |\n|---|\n| 42 |"
    if kind == "value" and name == "numbers":
        return {"pi": "3.14", "e": "2.72"}[key]
    raise LookupError(f"no {kind} named {name!r}")


def test_fill_replaces_only_the_regions_and_is_idempotent():
    once = fill(PAGE, render, "page.md")
    assert once == PAGE.replace("| old | table |\n|---|---|\n| 1 | 2 |\n", "| new |\n|---|\n| 42 |\n\n") \
        .replace("-->3.1<", "-->3.14<").replace("-->2<", "-->2.72<")
    assert fill(once, render, "page.md") == once
    assert [(r.kind, r.name, r.key, r.line) for r in regions(PAGE)] == [
        ("table", "demo", None, 5), ("value", "numbers", "pi", 11), ("value", "numbers", "e", 13)]


@pytest.mark.parametrize("text, where", [
    ("a\n\n<!-- llmrec:table demo -->\n| x |\n", "page.md:3: table demo is not closed"),
    ("a\n<!-- llmrec:end -->\n", "page.md:2: <!-- llmrec:end --> without a region"),
    ("<!-- llmrec:table demo -->\n<!-- llmrec:table demo -->\n<!-- llmrec:end -->\n",
     "page.md:2: a region starts inside table demo (opened on line 1"),
    ("x\ntext <!-- llmrec:table demo -->\n<!-- llmrec:end -->\n", "page.md:2: the table marker of demo must stand alone"),
    ("<!-- llmrec:table demo -->\n| x | <!-- llmrec:end -->\n", "page.md:2: <!-- llmrec:end --> of table demo"),
    ("a <!-- llmrec:value numbers pi -->3\n.1<!-- llmrec:end -->\n", "page.md:1: value region numbers pi does not end"),
    ("a <!-- llmrec:value numbers -->3<!-- llmrec:end -->\n", "page.md:1: value numbers needs a key"),
    ("\n\n<!-- llmrec:tabel demo -->\n", "page.md:3: unreadable marker '<!-- llmrec:tabel demo -->'"),
], ids=["no end", "stray end", "nested", "table marker in a sentence", "table end in a row", "value across lines",
        "value without key", "misspelt"])
def test_a_broken_region_is_an_error_naming_file_and_line(text, where):
    with pytest.raises(RegionError, match=re.escape(where)):
        fill(text, render, "page.md")


def test_an_unknown_table_or_value_names_the_page_and_line(tmp_path):
    page = tmp_path / "docs" / "page.md"
    page.parent.mkdir()
    page.write_text("# p\n\n<!-- llmrec:table no_such_table -->\n<!-- llmrec:end -->\n")
    with pytest.raises(RegionError, match=r"docs/page\.md:3: table no_such_table: no table named 'no_such_table' "
                                          r"\(known: .*laptop_table6"):
        T.generate([page], root=tmp_path)
    page.write_text("# p\n\nTrain <!-- llmrec:value bench seqrec.toy.ce_z -->x<!-- llmrec:end --> s.\n")
    with pytest.raises(RegionError, match=r"docs/page\.md:3: value bench seqrec\.toy\.ce_z: the group bench has no "
                                          r"value 'seqrec\.toy\.ce_z' \(did you mean seqrec\.toy\.ce_s"):
        T.generate([page], root=tmp_path)
    page.write_text("<!-- llmrec:value no_group k -->x<!-- llmrec:end -->\n")
    with pytest.raises(RegionError, match=r"docs/page\.md:1: value no_group k: no group of values named 'no_group'"):
        T.generate([page], root=tmp_path)


def test_check_prints_a_diff_and_writes_nothing_then_the_command_writes_and_check_passes(tmp_path):
    (tmp_path / "docs").mkdir()
    page, bad = tmp_path / "README.md", tmp_path / "docs" / "later.md"
    stale = "# p\n\nProse.\n\n<!-- llmrec:table bench_training_step -->\n| stale |\n<!-- llmrec:end -->\n\nMore prose.\n"
    page.write_text(stale)
    out = io.StringIO()
    assert T.tables_command(check=True, root=tmp_path, out=out) == 1
    assert page.read_text() == stale
    assert "--- README.md (committed)" in out.getvalue() and "-| stale |" in out.getvalue()
    assert "+| b. fast MSL" in out.getvalue()
    bad.write_text("<!-- llmrec:table bench_training_step -->\n")  # not closed: nothing is written, not even README
    with pytest.raises(RegionError, match=r"docs/later\.md:1"):
        T.tables_command(root=tmp_path, out=io.StringIO())
    assert page.read_text() == stale
    bad.unlink()
    assert T.tables_command(root=tmp_path, out=io.StringIO()) == 0
    made = page.read_text()
    assert made.startswith("# p\n\nProse.\n\n") and made.endswith("<!-- llmrec:end -->\n\nMore prose.\n")
    assert "| stale |" not in made and "b. fast MSL" in made
    assert T.tables_command(check=True, root=tmp_path, out=io.StringIO()) == 0


def test_the_cli_check_exits_1_on_drift_and_names_the_page(tmp_path, monkeypatch, capsys):
    page = tmp_path / "README.md"
    stale = "Toy: <!-- llmrec:value bench seqrec.toy.speed -->1×<!-- llmrec:end --> faster.\n"
    page.write_text(stale)
    monkeypatch.setattr(T, "pages", lambda root=None: [page])
    assert main(["tables", "--check"]) == 1
    assert "README.md (committed)" in capsys.readouterr().out and page.read_text() == stale
    assert main(["tables"]) == 0 and main(["tables", "--check"]) == 0
    assert page.read_text() == stale.replace("-->1×<", f"-->{doc_bench.bench()['seqrec.toy.speed']}<")


# ------------------------------------------------------------------- the quick section: from the batch's records


def _quick_log(loss: str, dataset: str = "toy") -> list[dict]:
    (rec,) = [r for r in records(results_root() / "quick" / "llm").values()
              if (r.config["loss"], r.config["dataset"]) == (loss, dataset)]
    return [row for row in rec.log if "loss" in row]


def test_chapter_02s_numbers_are_recomputed_from_the_quick_runs_logs():
    """Figure 3's median |grad L1| / |grad L2| over the logged steps, the largest |L1 + L2 − LML| over every
    step, and Figure 4's mean L2 over the last 10 steps, each from the raw per-step log."""
    got = doc_llm.quick_llm()
    for dataset in ("toy", "books"):
        logged = [(r["grad_norm_l1"], r["grad_norm_l2"]) for r in _quick_log("lml", dataset) if "grad_norm_l1" in r]
        assert got[f"grad.{dataset}"] == f"{np.median([a / b for a, b in logged]):.2f}"
        assert got[f"grad.{dataset}.logged"] == str(len(logged))
    lml, alone = _quick_log("lml"), _quick_log("l2-only")
    gap = max(abs(r["l1"] + r["l2"] - r["loss"]) for r in lml)
    assert got["identity.gap"] == doc_bench.sci(gap) and 0 < gap < 1e-4
    assert got["first.l1"] == f"{lml[0]['l1'] / lml[0]['loss']:.0%}"
    assert (got["l2.alone"], got["l2.lml"]) == (f"{np.mean([r['l2'] for r in alone[-10:]]):.2f}",
                                                f"{np.mean([r['l2'] for r in lml[-10:]]):.2f}")


def test_the_quick_classic_table_holds_each_runs_ndcg_from_its_ranks():
    """A row of chapter 07's quick table is the mean of 1/log2(rank + 2) over the ranks in the run's record."""
    table = cells(T.TABLES["quick_classic"]())
    (rec,) = [r for r in records(results_root() / "quick" / "seqrec").values()
              if (r.config["model"], r.config["loss"], r.config["epochs"]) == ("gru4rec", "bpr", 12)]
    ranks = np.array([np.inf if x is None else x for x in entry_from_evaluation(
        max(rec.evaluations.values(), key=lambda ev: ev.n_users))["ranks"]], dtype=float)
    assert table["GRU4Rec + BPR"]["NDCG@10"] == f"{np.where(ranks < 10, 1 / np.log2(ranks + 2), 0).mean():.4f}"
    assert table["GRU4Rec + BPR"]["best epoch"] == f"{rec.training.best_epoch} / 12"
    assert set(table) >= {"SASRec + CE", "Caser + BPR", "popularity"}


def test_durations_and_dates_as_the_pages_write_them():
    assert [doc_format.hours(s) for s in (59 * 60, 3600, 3600 + 46 * 60 + 20, 2 * 3600 + 12 * 60)] == \
        ["59 min", "1 h", "1 h 46 min", "2 h 12 min"]

    class Rec:
        def __init__(self, date):
            self.provenance = type("P", (), {"date": date})

    assert doc_format._dates([Rec("2026-12-05"), Rec("2026-12-05")]) == "2026-12-05"
    assert doc_format._dates([Rec("2026-12-05"), Rec("2026-11-30")]) == "2026-11-30 to 2026-12-05"
    with pytest.raises(LookupError):
        doc_format._dates([])
