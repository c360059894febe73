"""``make check-widgets``: the chapters' explorers, worked by hand in a real browser.

Opens chapters 01 (trie explorer), 03 (tau slider) and 06 (user explorer) in JupyterLab, in headless
Chromium driven by Playwright, runs them (profile ``smoke``: the synthetic catalogue and the tiny model, a
few minutes in all), works every control of each explorer once, checks that the explorer's output changed
each time and that the browser console logged no error, and saves a screenshot of each step under ``--out``
(default ``runs/widget-check/``, git-ignored) with ``report.json``.

Chromium is the system's: ``$CHROMIUM``, else ``chromium``, ``chromium-browser``, ``google-chrome`` (or
``-stable``) on the PATH, else a browser Playwright installed under ``~/.cache/ms-playwright``. Without one
the check prints why it is skipped and exits 0 (nothing is downloaded); ``make check-widgets`` installs the
``widgets`` extra (playwright, jupyterlab) only when a Chromium is there.

    python bench/check_widgets.py --which-chromium   # the Chromium it would use (exit 1: none)
    python bench/check_widgets.py [--only 01 03] [--profile smoke] [--out DIR] [--timeout 600]

Exit status: 0 all checks passed (or skipped: no Chromium), 1 a check failed, 2 a usage or setup error.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SKIP = "skipped: no Chromium found (set CHROMIUM=/path or install chromium); nothing checked"
NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable", "chrome")
# chapter -> the call that builds its explorer (how its cell is found); the controls are worked by WORKERS
EXPLORERS = {"01": "trie_explorer(", "03": "tau_slider(", "06": "user_explorer("}
# console messages JupyterLab itself may log that say nothing about the explorers (kept short on purpose)
BENIGN = ("favicon.ico",)


# ----------------------------------------------------------------------------- finding Chromium (stdlib only)


def find_chromium(env: dict | None = None, home: Path | None = None) -> Path | None:
    """The Chromium to drive: ``$CHROMIUM`` (an error when it names no executable file), a known name on the
    PATH, or the newest Playwright-installed build under ``~/.cache/ms-playwright``; None when there is none."""
    env = os.environ if env is None else env
    given = env.get("CHROMIUM")
    if given:
        path = Path(given).expanduser()
        if not (path.is_file() and os.access(path, os.X_OK)):
            raise FileNotFoundError(f"CHROMIUM={given}: no executable file there")
        return path
    for name in NAMES:
        found = shutil.which(name, path=env.get("PATH", ""))
        if found:
            return Path(found)
    cache = Path(home or Path.home()) / ".cache" / "ms-playwright"
    builds = sorted(cache.glob("chromium*/chrome-linux*/chrome"), reverse=True) + \
        sorted(cache.glob("chromium_headless_shell*/chrome-linux*/headless_shell"), reverse=True)
    return next((b for b in builds if os.access(b, os.X_OK)), None)


# ----------------------------------------------------------------------------- the notebooks and the server


def kernel_name() -> str:
    """The project's kernel (``make install`` registers ``llmrec``) when Jupyter knows it, else ``python3``."""
    from jupyter_client.kernelspec import KernelSpecManager

    return "llmrec" if "llmrec" in KernelSpecManager().find_kernel_specs() else "python3"


def prepare_chapters(dest: Path, chapters=tuple(EXPLORERS), profile: str = "smoke", kernel: str = "python3") -> list[Path]:
    """Copies of the chapters with the ``profile`` parameter injected (papermill, not executed) in ``dest``."""
    import nbformat
    import papermill as pm

    from llmrec.chapters import chapters as find

    dest.mkdir(parents=True, exist_ok=True)
    out = []
    for nb in find(ROOT / "notebooks", list(chapters)):
        path = dest / nb.name
        pm.execute_notebook(str(nb), str(path), parameters={"profile": profile}, prepare_only=True,
                            kernel_name=kernel, progress_bar=False)
        with warnings.catch_warnings():  # the missing id, set below
            warnings.simplefilter("ignore")
            book = nbformat.read(path, as_version=4)
        book.metadata["kernelspec"] = {"name": kernel, "display_name": kernel, "language": "python"}
        for i, cell in enumerate(book.cells):  # papermill's injected cell has no id (nbformat 4.5 wants one)
            cell.setdefault("id", f"check-{i}")
        nbformat.write(book, path)
        out.append(path)
    return out


def lab_settings(folder: Path) -> Path:
    """User settings for a predictable page: every cell rendered (no windowing), no news or update checks."""
    files = {"@jupyterlab/notebook-extension/tracker.jupyterlab-settings": {"windowingMode": "none"},
             "@jupyterlab/apputils-extension/notification.jupyterlab-settings":
                 {"fetchNews": "false", "checkForUpdates": False}}
    for name, value in files.items():
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(value))
    return folder


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_lab(root: Path, out: Path, timeout: float = 120.0) -> tuple[subprocess.Popen, str, str]:
    """JupyterLab on ``root`` (runs and figures go under ``out``); returns (process, base url, token)."""
    port, token = free_port(), secrets.token_hex(16)
    env = {**os.environ, "LLMREC_RUNS": str(out / "runs"), "LLMREC_FIGURES": str(out / "figures")}
    cmd = [sys.executable, "-m", "jupyterlab", "--no-browser", f"--port={port}", "--ip=127.0.0.1",
           f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={root}",
           f"--LabApp.user_settings_dir={lab_settings(out / 'lab-settings')}",
           f"--LabApp.workspaces_dir={out / 'lab-workspaces'}"]
    if hasattr(os, "getuid") and os.getuid() == 0:
        cmd.append("--allow-root")
    log = open(out / "jupyterlab.log", "w")
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env)
    base = f"http://127.0.0.1:{port}"
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        if proc.poll() is not None:
            raise RuntimeError(f"JupyterLab exited ({proc.returncode}); see {out / 'jupyterlab.log'}")
        try:
            with urllib.request.urlopen(f"{base}/api/status?token={token}", timeout=2):
                return proc, base, token
        except OSError:
            time.sleep(0.5)
    proc.terminate()
    raise RuntimeError(f"JupyterLab did not answer within {timeout:.0f} s; see {out / 'jupyterlab.log'}")


# ----------------------------------------------------------------------------- working the explorers


class Check:
    """One chapter's explorer: its cell, the steps worked, the screenshots taken."""

    def __init__(self, page, chapter: str, shots: Path, timeout_s: float, title: str = ""):
        self.page, self.chapter, self.shots, self.timeout_ms = page, chapter, shots, int(timeout_s * 1000)
        self.title = title  # a catalogue title of the chapter's dataset: the trie explorer types its start
        self.steps: list[dict] = []
        self.cell = None

    def shot(self, label: str) -> str:
        path = self.shots / f"{self.chapter}_{len(self.steps):02d}_{label.replace(' ', '_')}.png"
        (self.cell or self.page).screenshot(path=str(path))
        return str(path)

    def run_all(self, marker: str) -> None:
        """Run every cell, then wait for the explorer's widget in the output of the cell that builds it."""
        page = self.page
        page.locator(".jp-Notebook").first.wait_for(timeout=120_000)
        try:
            page.get_by_role("menuitem", name="Run", exact=True).first.click()
            page.get_by_role("menuitem", name="Run All Cells", exact=True).first.click()
        except Exception:  # the command palette instead of the menu
            page.keyboard.press("Control+Shift+C")
            page.keyboard.type("Run All Cells")
            page.keyboard.press("Enter")
        self.cell = page.locator(".jp-CodeCell").filter(has_text=marker).last
        try:
            self.cell.locator(".jp-OutputArea-output .jupyter-widgets").first.wait_for(timeout=self.timeout_ms)
        except Exception:
            errors = page.locator(".jp-OutputArea-output[data-mime-type='application/vnd.jupyter.stderr']")
            tail = errors.last.inner_text()[-2000:] if errors.count() else "no error output on the page"
            raise RuntimeError(f"chapter {self.chapter}: the explorer never appeared ({tail})") from None
        self.steps.append({"step": "run all cells", "screenshot": self.shot("built")})

    def work(self, name: str, act, output) -> None:
        """Do ``act()``; the explorer's ``output`` (a locator) must change within the timeout."""
        before = output.inner_html()
        act()
        t0, after = time.monotonic(), before
        while time.monotonic() - t0 < self.timeout_ms / 1000:
            after = output.inner_html()
            if after != before and "beam search …" not in after:
                break
            time.sleep(0.25)
        changed = after != before
        self.steps.append({"step": name, "changed": changed, "output_chars": [len(before), len(after)],
                           "screenshot": self.shot(name)})
        if not changed:
            raise AssertionError(f"chapter {self.chapter}: '{name}' did not change the explorer's output")


def work_trie_explorer(c: Check) -> None:
    out = c.cell.locator(".widget-html-content").last
    text = c.cell.locator("input[type='text']").first
    select = c.cell.locator("select").first
    c.work("type a title's start", lambda: (text.fill(c.title[:8]), text.press("Enter")), out)
    c.work("pick a next token", lambda: select.select_option(index=0), out)
    c.work("back", lambda: c.cell.get_by_role("button", name="back").click(), out)
    c.work("reset", lambda: c.cell.get_by_role("button", name="reset").click(), out)


def work_tau_slider(c: Check) -> None:
    readout = c.cell.locator(".widget-readout").first
    out = c.cell.locator(".widget-image").first

    def set_tau():
        readout.click()
        c.page.keyboard.press("Control+A")
        c.page.keyboard.type("3.00")
        c.page.keyboard.press("Enter")

    c.work("set tau", set_tau, out)


def work_user_explorer(c: Check) -> None:
    out = c.cell.locator(".widget-html-content").last
    row = c.cell.locator("input[type='number']").first
    # the row alone shows nothing (the explorer computes only on the button): one step, row then button
    c.work("pick row 1 and recommend", lambda: (row.fill("1"), row.press("Enter"), row.press("Tab"),
                                                c.cell.get_by_role("button", name="recommend").click()), out)
    html = out.inner_html()
    if "history" not in html or "Error" in html:
        raise AssertionError(f"chapter 06: the explorer showed no recommendation: {html[:300]}")


WORKERS = {"01": work_trie_explorer, "03": work_tau_slider, "06": work_user_explorer}


def check(chromium: Path, out: Path, chapters=tuple(EXPLORERS), profile: str = "smoke", timeout: float = 600.0) -> dict:
    """Run the whole check; returns the report (also written to ``out/report.json``)."""
    from playwright.sync_api import sync_playwright

    out.mkdir(parents=True, exist_ok=True)
    shots = out / "screenshots"
    shots.mkdir(exist_ok=True)
    root = out / "notebooks"
    prepare_chapters(root, chapters, profile, kernel_name())
    from llmrec.core.profiles import dataset_for
    from llmrec.data import load_dataset

    items = load_dataset(dataset_for(profile, None)).items
    title = items[min(items)]
    report = {"chromium": str(chromium), "profile": profile, "chapters": {}, "console_errors": []}

    def on_console(message):
        if message.type == "error" and not any(b in message.text for b in BENIGN):
            report["console_errors"].append(f"console.error: {message.text}")

    proc, base, token = start_lab(root, out)
    try:
        with sync_playwright() as p:
            root_user = hasattr(os, "getuid") and os.getuid() == 0
            browser = p.chromium.launch(executable_path=str(chromium), headless=True,
                                        args=["--no-sandbox"] if root_user else [])
            context = browser.new_context(viewport={"width": 1400, "height": 1000})
            for nb in sorted(root.glob("*.ipynb")):
                chapter = nb.name[:2]
                page = context.new_page()  # a page, and a fresh JupyterLab workspace, per chapter
                page.on("console", on_console)
                page.on("pageerror", lambda e: report["console_errors"].append(f"pageerror: {e}"))
                c = Check(page, chapter, shots, timeout, title)
                entry = report["chapters"][nb.name] = {"ok": False, "steps": c.steps}
                try:
                    page.goto(f"{base}/lab/workspaces/check-{chapter}/tree/{nb.name}?reset&token={token}")
                    c.run_all(EXPLORERS[chapter])
                    WORKERS[chapter](c)
                    entry["ok"] = True
                except Exception as e:  # report, go on with the next chapter
                    entry["error"] = f"{type(e).__name__}: {e}"
                    page.screenshot(path=str(shots / f"{chapter}_failed.png"), full_page=True)
                page.close()  # without JupyterLab's beforeunload prompt
            browser.close()
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
    report["ok"] = all(e["ok"] for e in report["chapters"].values()) and not report["console_errors"]
    (out / "report.json").write_text(json.dumps(report, indent=1, allow_nan=False) + "\n")  # strict JSON
    return report


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="check_widgets", description=__doc__.split("\n\n")[0])
    ap.add_argument("--which-chromium", action="store_true", help="print the Chromium found and exit (1: none)")
    ap.add_argument("--only", nargs="*", default=None, choices=sorted(EXPLORERS), help="chapters to check")
    ap.add_argument("--profile", default="smoke", help="the chapters' profile (default smoke: minutes)")
    ap.add_argument("--out", default=str(ROOT / "runs" / "widget-check"), help="screenshots and report.json")
    ap.add_argument("--timeout", type=float, default=600.0, help="seconds to wait for a chapter or a control")
    args = ap.parse_args(argv)
    try:
        chromium = find_chromium()
    except FileNotFoundError as e:
        print(f"check-widgets: error: {e}", file=sys.stderr)
        return 2
    if chromium is None:
        print(SKIP)
        return 1 if args.which_chromium else 0
    if args.which_chromium:
        print(chromium)
        return 0
    try:
        import playwright  # noqa: F401
        import jupyterlab  # noqa: F401
    except ImportError as e:
        print(f"check-widgets: error: {e.name} is missing: pip install -e '.[widgets]' (make check-widgets does)",
              file=sys.stderr)
        return 2
    report = check(chromium, Path(args.out), tuple(args.only or EXPLORERS), args.profile, args.timeout)
    for name, entry in report["chapters"].items():
        steps = ", ".join(s["step"] + ("" if s.get("changed", True) else " (no change)") for s in entry["steps"])
        print(f"{'ok    ' if entry['ok'] else 'FAILED'} {name}: {steps}" + (f"\n       {entry['error']}"
                                                                          if "error" in entry else ""))
    for line in report["console_errors"]:
        print(f"console: {line}")
    print(f"screenshots and report.json in {args.out}")
    return 0 if report["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
