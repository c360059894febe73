"""`make check-widgets` (bench/check_widgets.py) without a browser: finding Chromium, the skip, the notebooks it
opens. The browser part runs only where a Chromium is (see the script); here the widgets are driven in Python."""

import importlib.util
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "bench" / "check_widgets.py"
spec = importlib.util.spec_from_file_location("check_widgets", SCRIPT)
cw = importlib.util.module_from_spec(spec)
spec.loader.exec_module(cw)


def executable(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("#!/bin/sh\nexit 0\n")
    path.chmod(0o755)
    return path


def test_find_chromium(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    assert cw.find_chromium({"PATH": str(empty)}, home=tmp_path) is None
    on_path = executable(tmp_path / "bin" / "chromium-browser")
    assert cw.find_chromium({"PATH": f"{empty}:{on_path.parent}"}, home=tmp_path) == on_path
    given = executable(tmp_path / "opt" / "my-chrome")
    assert cw.find_chromium({"CHROMIUM": str(given), "PATH": str(on_path.parent)}, home=tmp_path) == given
    with pytest.raises(FileNotFoundError, match="CHROMIUM=.*nothing-here: no executable file there"):
        cw.find_chromium({"CHROMIUM": str(tmp_path / "nothing-here")}, home=tmp_path)
    cached = executable(tmp_path / ".cache" / "ms-playwright" / "chromium-1187" / "chrome-linux" / "chrome")
    assert cw.find_chromium({"PATH": str(empty)}, home=tmp_path) == cached


def clean_env(tmp_path) -> dict:
    empty = tmp_path / "empty-path"
    empty.mkdir(exist_ok=True)
    env = {k: v for k, v in os.environ.items() if k != "CHROMIUM"}
    return {**env, "PATH": str(empty), "HOME": str(tmp_path)}


def test_without_chromium_the_check_is_skipped_and_exits_0(tmp_path):
    env = clean_env(tmp_path)
    run = subprocess.run([sys.executable, str(SCRIPT)], env=env, capture_output=True, text=True, timeout=60)
    assert run.returncode == 0 and run.stdout.strip() == cw.SKIP
    assert "nothing checked" in cw.SKIP and "CHROMIUM=/path" in cw.SKIP
    run = subprocess.run([sys.executable, str(SCRIPT), "--which-chromium"], env=env, capture_output=True, text=True)
    assert run.returncode == 1
    run = subprocess.run([sys.executable, str(SCRIPT)], env={**env, "CHROMIUM": str(tmp_path / "no")},
                         capture_output=True, text=True)
    assert run.returncode == 2 and "no executable file there" in run.stderr


@pytest.mark.skipif(shutil.which("make") is None, reason="no make")
def test_make_check_widgets_skips_before_installing_anything(tmp_path):
    env = clean_env(tmp_path)  # nothing on the PATH: the recipe's shell and python are named absolutely
    run = subprocess.run([shutil.which("make"), "-s", "-C", str(ROOT), "check-widgets", f"PYTHON={sys.executable}",
                          "VENV=/nonexistent-venv"], env=env, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == cw.SKIP
    assert not Path("/nonexistent-venv").exists()


def test_the_chapters_it_opens_are_parameterised_for_the_profile(tmp_path):
    import nbformat

    paths = cw.prepare_chapters(tmp_path, profile="smoke", kernel="python3")
    assert [p.name[:2] for p in paths] == ["01", "03", "06"]
    for p, marker in zip(paths, cw.EXPLORERS.values()):
        nb = nbformat.read(p, as_version=4)
        injected = [c for c in nb.cells if "injected-parameters" in c.metadata.get("tags", [])]
        assert injected and 'profile = "smoke"' in injected[0].source
        assert nb.metadata.kernelspec["name"] == "python3"
        assert any(marker in c.source for c in nb.cells if c.cell_type == "code")  # the explorer's cell is there
        assert not any(c.get("outputs") for c in nb.cells if c.cell_type == "code")  # not executed


def explorer_calls(source: str, name: str) -> tuple[int, int]:
    """(calls of ``widgets.<name>`` in the cell, those it displays: the cell's last top-level expression, or the
    argument of ``display(...)``); a call inside a block is an expression statement IPython does not show."""
    import ast

    tree = ast.parse(source)
    calls = [n for n in ast.walk(tree) if isinstance(n, ast.Call) and ast.unparse(n.func).endswith(f"widgets.{name}")]
    shown = {id(n.args[0]) for n in ast.walk(tree) if isinstance(n, ast.Call) and ast.unparse(n.func) == "display"
             and n.args}
    if tree.body and isinstance(tree.body[-1], ast.Expr):
        shown.add(id(tree.body[-1].value))
    return len(calls), sum(id(c) in shown for c in calls)


def test_each_explorer_the_check_opens_is_displayed():
    import json

    from llmrec.chapters import chapters

    assert explorer_calls("if x:\n    widgets.user_explorer(a)", "user_explorer") == (1, 0)  # chapter 06's old cell
    assert explorer_calls("if x:\n    display(widgets.user_explorer(a))", "user_explorer") == (1, 1)
    for nb in chapters(ROOT / "notebooks", list(cw.EXPLORERS)):
        name = cw.EXPLORERS[nb.name[:2]].rstrip("(")
        cells = ["".join(c["source"]) for c in json.loads(nb.read_text())["cells"] if c["cell_type"] == "code"]
        counts = [explorer_calls(src, name) for src in cells if f"widgets.{name}(" in src]
        assert counts and all(shown == n for n, shown in counts), f"{nb.name}: {name} is built but not displayed"


class FakePage:
    """What Check.step needs of a Playwright page: a screenshot (a file is written)."""

    def screenshot(self, path, **_):
        Path(path).write_bytes(b"png")


def test_a_step_is_named_timed_and_screenshotted_when_it_fails(tmp_path):
    import time

    c = cw.Check(FakePage(), "03", tmp_path, step_limit=60, deadline=time.monotonic() + 120)
    c.step("open the notebook", lambda limit: {"dialog": "'Select Kernel' answered with llmrec-check"})
    c.step("run all cells", lambda limit: None, limit=90)
    assert c.steps[1]["limit_s"] == 90
    assert c.steps[0]["ok"] and c.steps[0]["limit_s"] == 60 and c.steps[0]["dialog"].startswith("'Select Kernel'")

    def stuck(limit):
        raise TimeoutError("the explorer's output did not change (0 characters)")

    with pytest.raises(cw.StepFailed, match=r"chapter 03, step 'set tau' \(0.0 s of 60\): TimeoutError: the "
                                            r"explorer's output did not change"):
        c.step("set tau", stuck)
    failed = c.steps[-1]
    assert not failed["ok"] and failed["screenshot"].endswith("03_02_set_tau_FAILED.png")
    assert (tmp_path / "03_02_set_tau_FAILED.png").exists()
    late = cw.Check(FakePage(), "06", tmp_path, step_limit=60, deadline=time.monotonic() - 1)
    ran = []
    with pytest.raises(cw.StepFailed, match="the whole check's --limit ran out before this step"):
        late.step("set tau", lambda limit: ran.append(limit))
    assert not ran  # a step past the whole check's limit is not started


def test_the_check_writes_a_kernelspec_for_its_own_python(tmp_path):
    spec = json.loads(cw.write_kernelspec(tmp_path, python="/opt/venv/bin/python").read_text())
    assert spec["argv"][:3] == ["/opt/venv/bin/python", "-m", "ipykernel_launcher"]
    assert (tmp_path / "kernels" / cw.KERNEL / "kernel.json").exists()


def test_the_summary_names_the_failed_step_and_the_version_that_broke_it():
    step = {"step": "run all cells", "seconds": 12.0, "ok": False}
    report = {"chapters": {"01_data_and_trie.ipynb": {"ok": False, "steps": [step], "error": "chapter 01, step ..."}},
              "console_errors": ["console.error: Could not create a model.\n  at x"] * 2, "seconds": 27.0,
              "smollm2_cache_s": 0.0, "step_limit_s": 60.0, "run_limit_s": 90.0, "limit_s": 180.0, "ok": False,
              "versions": {"jupyterlab": "4.6.6"},
              "differs_from_lock": {"jupyterlab-widgets": {"installed": "1.1.11", "locked": "3.0.17"},
                                    "tqdm": {"installed": "5.0", "locked": "4.70.1"}},
              "blame": {"jupyterlab-widgets": True, "tqdm": False}}
    lines = cw.summary(report)
    assert "FAILED 01_data_and_trie.ipynb: run all cells 12 s FAILED" in lines
    assert "console: console.error: Could not create a model. (2 times)" in lines
    assert "jupyterlab-widgets 1.1.11 broke chapter(s) 01: they pass with the locked 3.0.17" in lines
    assert "tqdm 5.0: chapter(s) 01 fail with the locked 4.70.1 too" in lines
    assert lines[-1] == ("FAILED in 27 s, of which 0 s the SmolLM2 cache (limits: 60 s a step, 90 s to run all "
                         "cells, 180 s in all after the cache)")
