"""bench/figures_scratch.py: the from-scratch batch's times read back from the executed copies it wrote."""

import json
import subprocess
import sys

import nbformat
import pytest

from llmrec.core.io import repo_root

SCRIPT = repo_root() / "bench" / "figures_scratch.py"


def _clone(tmp_path, seconds):
    executed = tmp_path / "clone" / "notebooks" / "executed"
    executed.mkdir(parents=True)
    for name, s in seconds.items():
        book = nbformat.v4.new_notebook(metadata={"llmrec": {"seconds": s}} if s is not None else {})
        nbformat.write(book, executed / f"{name}_chapter.ipynb")
    subprocess.run(["git", "init", "-q", str(tmp_path / "clone")], check=True)
    subprocess.run(["git", "-C", str(tmp_path / "clone"), "-c", "user.name=t", "-c", "user.email=t@t", "commit",
                    "-q", "--allow-empty", "-m", "x"], check=True)
    return tmp_path / "clone"


def _run(*args):
    return subprocess.run([sys.executable, str(SCRIPT), *map(str, args)], capture_output=True, text=True)


def test_reads_each_chapters_seconds_and_the_load(tmp_path):
    clone = _clone(tmp_path, {"01": 12.5, "02": 300.0})
    load = tmp_path / "load"
    load.write_text("1.5 2.0 2.1 3/100 9\n2.5 2.0 2.1 3/100 9\n0.5 2.0 2.1 3/100 9\n")
    out = tmp_path / "out.json"
    assert _run(clone, "--load", load, "--out", out).returncode == 0
    got = json.loads(out.read_text())
    assert got["seconds"] == {"01": 12.5, "02": 300.0} and got["total seconds"] == 312.5
    assert got["load average during (1 min)"] == {"min": 0.5, "median": 1.5, "max": 2.5, "samples": 3}
    assert len(got["commit"]) == 40


@pytest.mark.parametrize("seconds", [{}, {"01": 12.5, "02": None}])
def test_an_executed_copy_without_its_time_is_an_error_and_nothing_is_written(tmp_path, seconds):
    clone = _clone(tmp_path, seconds)
    out = tmp_path / "out.json"
    done = _run(clone, "--out", out)
    assert done.returncode != 0 and not out.exists()
    assert ("no executed chapters" if not seconds else "02_chapter.ipynb: no metadata.llmrec.seconds") in done.stderr


def test_the_slow_cells_seconds_are_reported_by_chapter(tmp_path):
    clone = _clone(tmp_path, {"01": 12.5, "02": 300.0})
    path = clone / "notebooks" / "executed" / "02_chapter.ipynb"
    book = nbformat.read(path, as_version=4)
    book.metadata["llmrec"]["cell seconds"] = {"3": 250.0, "5": 40.5}
    nbformat.write(book, path)
    out = tmp_path / "out.json"
    assert _run(clone, "--out", out).returncode == 0
    assert json.loads(out.read_text())["cell seconds (cells of 5 s or more, by index)"] == {"02": {"3": 250.0, "5": 40.5}}
