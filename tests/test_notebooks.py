"""Every chapter executes under ``profile=smoke`` through papermill and writes its figures."""

import json
import os
from pathlib import Path

import pytest

from llmrec.chapters import chapters, run_batch
from llmrec.core.provenance import versions

NB_DIR = Path(__file__).resolve().parents[1] / "notebooks"
CHAPTERS = chapters(NB_DIR)
# seconds: a hung cell fails its chapter by name instead of holding the suite (the slowest smoke chapter takes
# under a minute on 2 cores)
CELL_TIMEOUT = 300


def saved_figures(nb: Path) -> set[str]:
    """Names passed to save_figure(fig, "NAME") in the notebook's code cells."""
    import re

    src = "\n".join("".join(c["source"]) for c in json.loads(nb.read_text())["cells"] if c["cell_type"] == "code")
    return set(re.findall(r"save_figure\([^,]+,\s*f?\"([^\"{]+)", src))


def test_chapters_follow_the_rules():
    assert len(CHAPTERS) >= 6
    for nb in CHAPTERS:
        cells = json.loads(nb.read_text())["cells"]
        code = [c for c in cells if c["cell_type"] == "code"]
        assert "parameters" in code[0]["metadata"].get("tags", []), f"{nb.name}: first code cell not tagged"
        params = "".join(code[0]["source"])
        assert "profile" in params, f"{nb.name}: no profile parameter"
        # one parameter selects the dataset (a name or a folder); None: the chapter's own
        assert "\ndataset = None " in params and "datasets =" not in params, f"{nb.name}: not one dataset parameter"
        assert all(not c.get("outputs") and c.get("execution_count") is None for c in code), \
            f"{nb.name}: committed with outputs"
        assert cells[0]["cell_type"] == "markdown" and "what this shows" in "".join(
            "".join(c["source"]) for c in cells if c["cell_type"] == "markdown").lower(), nb.name
        assert saved_figures(nb), f"{nb.name}: saves no figure"


@pytest.mark.parametrize("nb", CHAPTERS, ids=[p.stem for p in CHAPTERS])
def test_chapter_runs_under_smoke(nb, tmp_path, monkeypatch, smoke_runs):
    figs = tmp_path / "figures"
    monkeypatch.setenv("LLMREC_FIGURES", str(figs))
    monkeypatch.setenv("LLMREC_RUNS", smoke_runs)
    status = run_batch(profile="smoke", only=[nb.stem], notebooks=NB_DIR, out_dir=tmp_path / "executed",
                       cell_timeout=CELL_TIMEOUT)
    assert status == 0, f"{nb.name} failed under the smoke profile (see {tmp_path / 'executed'})"
    assert (tmp_path / "executed" / nb.name).exists()
    for name in saved_figures(nb):
        assert (figs / f"{name}.png").stat().st_size > 1000, f"{nb.name}: figure {name} not written"


def test_batch_reports_a_failing_chapter_and_goes_on(tmp_path, capsys):
    import nbformat

    bar = ("import sys\nfrom tqdm.auto import tqdm\nfrom llmrec.core.io import progress_bars\n"
           "x = sum(tqdm(range(3), disable=not progress_bars()))\nprint('kept', file=sys.stderr)")
    for name, src in (("01_ok", bar), ("02_bad", "raise RuntimeError('boom')"), ("03_ok", "y = 2")):
        nb = nbformat.v4.new_notebook()
        nb.cells = [nbformat.v4.new_code_cell("profile = 'smoke'\ndevice = 'cpu'", metadata={"tags": ["parameters"]}),
                    nbformat.v4.new_code_cell(src)]
        nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
        nbformat.write(nb, tmp_path / f"{name}.ipynb")
    status = run_batch(profile="smoke", notebooks=tmp_path, out_dir=tmp_path / "out")
    out = capsys.readouterr()
    assert status == 1
    assert (tmp_path / "out" / "01_ok.ipynb").exists() and (tmp_path / "out" / "03_ok.ipynb").exists()
    assert (tmp_path / "out" / "02_bad.FAILED.ipynb").exists()
    for name in ("01_ok.ipynb", "02_bad.FAILED.ipynb"):  # each executed copy says what executed it
        book = nbformat.read(tmp_path / "out" / name, as_version=4)
        assert book.metadata["llmrec"]["versions"] == versions() and book.metadata["llmrec"]["kernel"] == "python3"
        assert book.metadata["llmrec"]["seconds"] > 0
        assert "start_time" not in book.metadata["papermill"]  # nothing volatile: no times, no machine's paths
        assert "input_path" not in book.metadata["papermill"]
        assert all("execution" not in c.metadata for c in book.cells)
    outputs = nbformat.read(tmp_path / "out" / "01_ok.ipynb", as_version=4).cells[-1].outputs
    assert [o.get("text") for o in outputs] == ["kept\n"]  # the bar drew nothing; a message stays
    assert "TQDM_DISABLE" not in os.environ  # the kernels' environment is restored after the batch
    assert "02_bad.ipynb: FAILED" in out.out and "boom" in out.out
    with pytest.raises(ValueError, match="no chapter"):
        run_batch(profile="smoke", only=["99"], notebooks=tmp_path)


def test_only_the_canonical_batch_writes_the_committed_figures(monkeypatch):
    import matplotlib.pyplot as plt

    from llmrec.core.io import repo_root
    from llmrec.plots import figures_dir, save_figure

    monkeypatch.delenv("LLMREC_FIGURES", raising=False)
    monkeypatch.setenv("LLMREC_PUBLISH_FIGURES", "0")
    assert figures_dir() == repo_root() / "runs" / "figures"
    fig = plt.figure()
    path = save_figure(fig, "test_not_published")
    assert path.parent == repo_root() / "runs" / "figures" and path.exists()
    path.unlink()
    monkeypatch.setenv("LLMREC_PUBLISH_FIGURES", "1")
    assert figures_dir() == repo_root() / "figures"


@pytest.mark.parametrize("nb,size", [("03", "n_windows"), ("04", "n_windows"), ("04", "min_valid")])
def test_chapter_sizes_must_be_positive(nb, size, tmp_path, monkeypatch):
    """A chapter's size parameter is checked before anything trains, and the error names it."""
    import papermill as pm

    from llmrec.experiments.parameters import size as check_size

    assert check_size("n_windows", None, 64) == 64 and check_size("n_windows", 3, 64) == 3
    for bad in (0, -1, 2.5, True):
        with pytest.raises(ValueError, match="n_windows must be a positive integer"):
            check_size("n_windows", bad, 64)
    monkeypatch.setenv("LLMREC_RUNS", str(tmp_path / "runs"))
    (path,) = chapters(NB_DIR, [nb])
    with pytest.raises(pm.PapermillExecutionError, match=f"{size} must be a positive integer"):
        pm.execute_notebook(str(path), str(tmp_path / "out.ipynb"), parameters={"profile": "smoke", size: 0},
                            kernel_name="python3", cwd=str(NB_DIR), progress_bar=False)
    assert not (tmp_path / "runs").exists()  # nothing trained


def test_llm_chapters_publish_their_runs_and_redraw_them_without_training(tmp_path, monkeypatch, smoke_runs):
    """Chapters 05 and 06 with export_results publish their runs (no weights); with `results` they redraw every
    table and figure from them with an empty run cache, and nothing is trained or evaluated; by default they
    read them beneath the run cache."""
    import papermill as pm

    monkeypatch.setenv("LLMREC_RESULTS", str(tmp_path / "results"))
    (tmp_path / "results").mkdir()
    (tmp_path / "results" / "laptop").symlink_to(NB_DIR.parent / "results" / "laptop")  # the committed reference the text cites
    monkeypatch.setenv("LLMREC_RUNS", smoke_runs)  # the runs are published whether trained here or found
    nbs = [NB_DIR / "05_tau_sweep_ablation.ipynb", NB_DIR / "06_training_comparison.ipynb"]
    for nb in nbs:
        monkeypatch.setenv("LLMREC_FIGURES", str(tmp_path / "figures-trained"))
        pm.execute_notebook(str(nb), str(tmp_path / f"trained-{nb.name}"), cwd=str(NB_DIR), progress_bar=False,
                            kernel_name="python3", parameters={"profile": "smoke", "export_results": True})
    published = sorted(p.name for p in (tmp_path / "results" / "smoke" / "llm").iterdir())
    assert published and all(not (tmp_path / "results" / "smoke" / "llm" / n / "adapter").exists() for n in published)
    monkeypatch.setenv("LLMREC_RUNS", str(tmp_path / "empty-runs"))
    for nb in nbs:
        monkeypatch.setenv("LLMREC_FIGURES", str(tmp_path / "figures-results"))
        pm.execute_notebook(str(nb), str(tmp_path / f"results-{nb.name}"), cwd=str(NB_DIR), progress_bar=False,
                            kernel_name="python3", parameters={"results": "smoke"})
        for name in saved_figures(nb):
            assert (tmp_path / "figures-results" / f"{name}.png").stat().st_size > 1000, name
    assert not (tmp_path / "empty-runs").exists()  # nothing trained, nothing evaluated
    assert sorted(p.name for p in (tmp_path / "results" / "smoke" / "llm").iterdir()) == published
    # by default (retrain=False) a chapter reads the committed runs beneath an empty run cache: neither trains
    # (06's explorer, which needs weights, says how to train them instead)
    monkeypatch.setenv("LLMREC_RUNS", str(tmp_path / "fresh-runs"))
    monkeypatch.setenv("LLMREC_FIGURES", str(tmp_path / "figures-default"))
    pm.execute_notebook(str(nbs[0]), str(tmp_path / f"default-{nbs[0].name}"), cwd=str(NB_DIR), progress_bar=False,
                        kernel_name="python3", parameters={"profile": "smoke"})
    assert not (tmp_path / "fresh-runs").exists()
    pm.execute_notebook(str(nbs[1]), str(tmp_path / f"default-{nbs[1].name}"), cwd=str(NB_DIR), progress_bar=False,
                        kernel_name="python3", parameters={"profile": "smoke"})
    assert not (tmp_path / "fresh-runs").exists()


def test_clean_executed_removes_progress_residue_only():
    import nbformat

    from llmrec.chapters import clean_executed

    widget = {"application/vnd.jupyter.widget-view+json": {"model_id": "a", "version_major": 2, "version_minor": 0}}
    cell = nbformat.v4.new_code_cell("x", metadata={"execution": {"iopub.status.busy": "2026"},
                                                    "papermill": {"duration": 1.0, "status": "completed"}})
    cell.outputs = [
        nbformat.v4.new_output("stream", name="stderr", text="Loading weights:   0%|          | 0/272 [00:00<?, ?it/s]"),
        nbformat.v4.new_output("display_data", data={**widget, "text/plain": "likelihood (500 users):  40%|####  | 2/5"}),
        nbformat.v4.new_output("display_data", data={**widget, "text/plain": "FloatSlider(value=1.0)"}),  # a slider
        nbformat.v4.new_output("stream", name="stderr", text="UserWarning: 12% of titles are shared\n"),
        nbformat.v4.new_output("stream", name="stdout", text="epoch 1: 50%|#| printed by the chapter itself\n"),
    ]
    book = nbformat.v4.new_notebook(cells=[cell], metadata={"papermill": {"start_time": "t", "parameters": {"a": 1}}})
    clean = clean_executed(book)
    kept = clean.cells[0].outputs
    assert [o.get("text", o.get("data", {}).get("text/plain")) for o in kept] == [
        "FloatSlider(value=1.0)", "UserWarning: 12% of titles are shared\n", "epoch 1: 50%|#| printed by the chapter itself\n"]
    assert clean.cells[0].metadata == {"papermill": {"status": "completed"}}
    assert clean.metadata["papermill"] == {"parameters": {"a": 1}}


def test_record_versions_keeps_the_seconds_of_slow_cells_only(tmp_path):
    """Where a chapter's time goes: each cell of 5 s or more by its index, read before the durations are stripped."""
    import nbformat

    from llmrec.chapters import record_versions

    cells = [nbformat.v4.new_code_cell(f"c{i}", metadata={"papermill": {"duration": d, "status": "completed"}})
             for i, d in enumerate((0.4, 12.34, 5.0, 4.99, None))]
    path = tmp_path / "ch.ipynb"
    nbformat.write(nbformat.v4.new_notebook(cells=[nbformat.v4.new_markdown_cell("# t"), *cells]), path)
    record_versions(path, "python3", seconds=22.0)
    book = nbformat.read(path, as_version=4)
    assert book.metadata["llmrec"]["seconds"] == 22.0
    assert book.metadata["llmrec"]["cell seconds"] == {"2": 12.3, "3": 5.0}  # the markdown cell is index 0
    assert all("duration" not in c.metadata.get("papermill", {}) for c in book.cells)


def test_clean_executed_rebases_links_out_of_the_notebooks_folder():
    """The executed copy lies in notebooks/executed/: a chapter's link to the glossary must still find the file
    there (on a code host), a link between chapters must lead to the sibling executed copy, and cleaning twice
    must not rebase twice."""
    import nbformat

    from llmrec.chapters import clean_executed

    text = "See [NDCG@10](../docs/glossary.md#ndcgk) and [chapter 03](03_gradient_weights.ipynb)."
    book = nbformat.v4.new_notebook(cells=[nbformat.v4.new_markdown_cell(text), nbformat.v4.new_code_cell("# ](../x)")])
    once = clean_executed(book)
    assert once.cells[0].source == ("See [NDCG@10](../../docs/glossary.md#ndcgk) and "
                                    "[chapter 03](03_gradient_weights.ipynb).")
    assert once.cells[1].source == "# ](../x)"  # code is not Markdown
    assert (NB_DIR / "executed" / "../../docs/glossary.md").resolve().is_file()
    assert clean_executed(once).cells[0].source == once.cells[0].source


def test_committed_executed_chapters_links_resolve():
    """Every relative Markdown link of a committed executed chapter names a file that exists from its folder."""
    import re

    for path in sorted((NB_DIR / "executed").glob("[0-9][0-9]_*.ipynb")):
        book = json.loads(path.read_text())
        for cell in book["cells"]:
            if cell["cell_type"] != "markdown":
                continue
            for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", "".join(cell["source"])):
                if "://" not in target:
                    assert (path.parent / target).is_file(), f"{path.name}: a link to {target}, which is not there"
