"""The book (docs/book.md): the committed executed chapters are the sources as the canonical batch executed them,
clean; the book builds from them offline with no warning and no CDN."""

import json
import re
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

from llmrec.chapters import BATCH, CANONICAL, _is_progress, chapter_parameters, chapters, clean_executed

ROOT = Path(__file__).resolve().parents[1]
SOURCES = chapters(ROOT / "notebooks")
EXECUTED = ROOT / "notebooks" / "executed"


def without_injected(book) -> list[tuple[str, str]]:
    return [(c.cell_type, c.source) for c in book.cells if "injected-parameters" not in c.metadata.get("tags", [])]


@pytest.mark.parametrize("source", SOURCES, ids=lambda p: p.stem[:2])
def test_each_executed_chapter_is_its_source_run_by_the_canonical_batch(source):
    path = EXECUTED / source.name
    assert path.exists(), f"{path} is missing: the canonical batch (make figures) writes it"
    done, src = nbformat.read(path, as_version=4), nbformat.read(source, as_version=4)
    # the source as the batch cleans its copy (links out of notebooks/ rebased one folder down)
    assert without_injected(done) == without_injected(clean_executed(src)), \
        f"{path.name} was executed from another version of {source.name}: run make figures (profile quick)"
    # the canonical batch's parameters: quick on the CPU, and retrain / export_results where the chapter has them
    assert done.metadata["papermill"]["parameters"] == chapter_parameters(
        source, {"profile": "quick", "device": "cpu"}, {**BATCH, **CANONICAL})
    assert done.metadata["llmrec"]["versions"]["commit"] and done.metadata["llmrec"]["seconds"] > 0
    assert not {"start_time", "end_time", "duration", "input_path", "output_path"} & set(done.metadata["papermill"])
    for i, cell in enumerate(done.cells):
        assert "execution" not in cell.metadata, f"cell {i}: timestamps"
        for out in cell.get("outputs", []):
            assert out.output_type != "error", f"cell {i} raised {out.get('ename')}"
            assert not _is_progress(out), f"cell {i}: progress-bar residue"
    assert done.cells and any(c.get("outputs") for c in done.cells if c.cell_type == "code")


def test_the_book_builds_offline_with_no_warning(tmp_path):
    pytest.importorskip("myst_nb", reason="make test installs the book's lock (requirements/book.txt)")
    out = tmp_path / "html"
    run = subprocess.run([sys.executable, "-m", "sphinx", "-b", "html", "-c", "book", "-q", "-W", "--keep-going",
                          ".", str(out)], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    assert (out / "index.html").read_text().count("book/index.html") >= 1  # the redirect to the first page
    for source in SOURCES:
        page = (out / "notebooks" / "executed" / f"{source.stem}.html").read_text()
        assert "<img" in page, f"{source.stem}: no figure in the book's page"
    for page in out.rglob("*.html"):
        text = page.read_text()
        assert not re.search(r"<(script|link)[^>]+(src|href)=\"(https?:)?//", text), \
            f"{page.relative_to(out)} loads something from the network"
        assert "application/vnd.jupyter.widget" not in text
    for term in ("docs/course.html", "docs/glossary.html", "docs/results.html", "docs/gpu.html"):
        assert (out / term).exists()


def test_the_book_shows_a_note_in_place_of_each_explorer():
    sys.path.insert(0, str(ROOT / "book"))
    try:
        import conf
    finally:
        sys.path.remove(str(ROOT / "book"))
    widget = {"output_type": "display_data", "metadata": {},
              "data": {conf.WIDGET: {"model_id": "x"}, "text/plain": "VBox(children=(...))"}}
    table = {"output_type": "execute_result", "metadata": {}, "execution_count": 1, "data": {"text/plain": "1"}}
    book = {"cells": [{"cell_type": "code", "outputs": [widget, table]}], "metadata": {"widgets": {"state": {}}}}
    source = [json.dumps(book)]
    conf._static_explorers(None, "notebooks/executed/01_data_and_trie", source)
    shown = json.loads(source[0])
    assert shown["cells"][0]["outputs"] == [
        {"output_type": "display_data", "metadata": {}, "data": {"text/markdown": conf.EXPLORER_NOTE}}, table]
    assert "widgets" not in shown["metadata"]
    untouched = [json.dumps(book)]
    conf._static_explorers(None, "docs/results", untouched)  # only executed chapters are rewritten
    assert untouched == [json.dumps(book)]


def test_the_book_links_a_page_to_the_chapter_with_its_outputs():
    sys.path.insert(0, str(ROOT / "book"))
    try:
        import conf
    finally:
        sys.path.remove(str(ROOT / "book"))
    page = ["see [chapter 07](../notebooks/07_classic_sce.ipynb) and [the data](../data/README.md)"]
    conf._chapter_links(None, "docs/glossary", page)
    assert page == ["see [chapter 07](../notebooks/executed/07_classic_sce.ipynb) and [the data](../data/README.md)"]
