"""The instructor edition (``instructor/NN_solutions.ipynb``): one notebook of worked solutions per chapter, every
exercise of the chapter quoted and answered after it, and every notebook executing under ``profile=smoke``."""

import json
import os
import re
from pathlib import Path

import pytest

from llmrec.chapters import chapters, run_batch

ROOT = Path(__file__).resolve().parents[1]
CHAPTERS = chapters(ROOT / "notebooks")
SOLUTIONS = chapters(ROOT / "instructor")
CELL_TIMEOUT = 300  # seconds: a hung cell fails its notebook by name


def cells(nb: Path) -> list[tuple[str, str, list[str]]]:
    """(cell type, source, tags) of every cell."""
    return [(c["cell_type"], "".join(c["source"]), c["metadata"].get("tags", []))
            for c in json.loads(nb.read_text())["cells"]]


def words(text: str) -> str:
    return " ".join(text.split())


def exercises(chapter: Path) -> list[str]:
    """The numbered exercises of a chapter's "## Exercises" section, each as one line of text."""
    (section,) = [src.split("## Exercises", 1)[1] for kind, src, _ in cells(chapter)
                  if kind == "markdown" and "## Exercises" in src]
    items = re.split(r"^\d+\. ", section, flags=re.M)[1:]
    return [words(item) for item in items]


def solution_of(chapter: Path) -> Path:
    return ROOT / "instructor" / f"{chapter.name[:2]}_solutions.ipynb"


def test_every_chapter_has_its_solutions_and_papermill_finds_them():
    assert [solution_of(c) for c in CHAPTERS] == SOLUTIONS


@pytest.mark.parametrize("chapter", CHAPTERS, ids=[c.stem for c in CHAPTERS])
def test_solutions_quote_every_exercise_and_answer_after_it(chapter):
    """Exercise k's statement (quoted word for word from the chapter) comes under "## Exercise k", then code,
    then a "**Answer.**" before the next exercise: no answer above its exercise, none missing."""
    nb = solution_of(chapter)
    found = cells(nb)
    code = [src for kind, src, _ in found if kind == "code"]
    first = next(c for c in found if c[0] == "code")
    assert "parameters" in first[2] and 'profile = "smoke"' in first[1] and 'device = "cpu"' in first[1], nb.name
    assert all(not c.get("outputs") and c.get("execution_count") is None
               for c in json.loads(nb.read_text())["cells"] if c["cell_type"] == "code"), f"{nb.name}: outputs committed"
    assert code, nb.name
    heads = [i for i, (kind, src, _) in enumerate(found) if kind == "markdown" and re.match(r"## Exercise \d+\n", src)]
    statements = exercises(chapter)
    assert len(heads) == len(statements), f"{nb.name}: {len(heads)} exercises solved, the chapter has {len(statements)}"
    for k, (start, end, statement) in enumerate(zip(heads, heads[1:] + [len(found)], statements), start=1):
        head = found[start][1]
        assert head.startswith(f"## Exercise {k}\n"), f"{nb.name}: exercise {k} out of order"
        quoted = words(" ".join(line[1:] for line in head.splitlines() if line.startswith(">")))
        assert quoted == statement, f"{nb.name}, exercise {k}: the quote differs from the chapter's text"
        part = found[start + 1:end]
        answers = [i for i, (kind, src, _) in enumerate(part) if kind == "markdown" and "**Answer.**" in src]
        assert answers, f"{nb.name}, exercise {k}: no answer"
        assert any(kind == "code" for kind, _, _ in part[:answers[0]]), f"{nb.name}, exercise {k}: answer before code"
    before = found[:heads[0]]
    assert not any("**Answer.**" in src for _, src, _ in before), f"{nb.name}: an answer before the first exercise"


@pytest.fixture(scope="module")
def shared_runs(tmp_path_factory):
    """One run cache for the module: the notebooks reuse each other's runs, as the chapters do in a batch."""
    return os.environ.get("LLMREC_TEST_RUNS", str(tmp_path_factory.mktemp("runs")))


@pytest.mark.parametrize("nb", SOLUTIONS, ids=[p.stem for p in SOLUTIONS])
def test_solutions_run_under_smoke(nb, tmp_path, monkeypatch, shared_runs):
    monkeypatch.setenv("LLMREC_FIGURES", str(tmp_path / "figures"))
    monkeypatch.setenv("LLMREC_RUNS", shared_runs)
    status = run_batch(profile="smoke", only=[nb.stem], notebooks=ROOT / "instructor", out_dir=tmp_path / "executed",
                       publish=False, cell_timeout=CELL_TIMEOUT)
    assert status == 0, f"{nb.name} failed under the smoke profile (see {tmp_path / 'executed'})"
    assert (tmp_path / "executed" / nb.name).exists()
