"""``make check-widgets``: the chapters' explorers, worked by hand in a real browser.

Opens chapters 01 (trie explorer), 03 (tau slider) and 06 (user explorer) in JupyterLab, in headless
Chromium driven by Playwright, runs them (profile ``smoke``: the synthetic catalogue and the tiny model), works
every control of each explorer once, checks that the explorer's output changed each time and that the browser
console logged no error, and saves a screenshot of each step under ``--out`` (default ``runs/widget-check/``,
git-ignored) with ``report.json``.

The check chooses the kernel itself: it writes a kernelspec for the Python that runs it and starts each
chapter's kernel through JupyterLab's REST API before the page opens, so the page finds its kernel running and
JupyterLab asks nothing (a kernel-select dialog that appears all the same is answered with that kernel and
recorded). Every step (start the kernel, open the notebook, each control) has a time limit (``--step-limit``,
60 s), running a chapter's cells, where the smoke models train, one of its own (``--run-limit``, 90 s: chapter
06 took 22 s on the 2-core VM at a load average of 2.5, up to 72 s at 5), and the whole
check one more (``--limit``, 180 s, not counting the SmolLM2 cache made once per machine); a step that fails or
runs out of time is named, with what the page showed, and screenshotted (``<chapter>_<nn>_<step>_FAILED.png``).

Chromium is the system's: ``$CHROMIUM``, else ``chromium``, ``chromium-browser``, ``google-chrome`` (or
``-stable``) on the PATH, else a browser Playwright installed under ``~/.cache/ms-playwright``. Without one
the check prints why it is skipped and exits 0 (nothing is downloaded); ``make check-widgets`` installs the
locked ``widgets`` extra (playwright, jupyterlab) only when a Chromium is there. ``--against-lock`` (``make
check-widgets-latest``, in a venv of the newest releases) also names every version that differs from the lock
and, when a chapter fails, which of them broke it: each is put back to its locked version in turn and the failed
chapters run again.

    python bench/check_widgets.py --which-chromium   # the Chromium it would use (exit 1: none)
    python bench/check_widgets.py [--only 01 03] [--profile smoke] [--out DIR] [--step-limit 60] [--run-limit 90]
                                  [--limit 180] [--against-lock]

Exit status: 0 all checks passed (or skipped: no Chromium), 1 a check failed, 2 a usage or setup error.
"""

from __future__ import annotations

import argparse
import json
import os
import re
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
KERNEL = "llmrec-check"  # the kernelspec the check writes for its own Python
# what the report names beside a failure: the browser side of the check
STACK = ("jupyterlab", "jupyter-server", "jupyterlab-server", "notebook-shim", "ipykernel", "jupyter-client",
         "ipywidgets", "jupyterlab-widgets", "widgetsnbextension", "playwright", "matplotlib", "pillow")
# Chromium in a closed network: no background connections (each would be refused), no GPU
CHROMIUM_ARGS = ["--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]


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


def chromium_or_status(prog: str) -> tuple[Path | None, int | None]:
    """(the Chromium, None), or (None, the exit status) after printing why there is none: a ``$CHROMIUM`` that is
    not an executable file is a setup error (2), no Chromium at all a skip (0)."""
    try:
        chromium = find_chromium()
    except FileNotFoundError as e:
        print(f"{prog}: error: {e}", file=sys.stderr)
        return None, 2
    if chromium is None:
        print(SKIP)
        return None, 0
    return chromium, None


# ----------------------------------------------------------------------------- the notebooks and the server


def prepare_chapters(dest: Path, chapters=tuple(EXPLORERS), profile: str = "smoke", kernel: str = KERNEL) -> list[Path]:
    """Copies of the chapters with the ``profile`` parameter injected (papermill, not executed) in ``dest``."""
    import nbformat
    import papermill as pm

    from llmrec.chapters import chapters as find

    dest.mkdir(parents=True, exist_ok=True)
    out = []
    for nb in find(ROOT / "notebooks", list(chapters)):
        path = dest / nb.name
        pm.execute_notebook(str(nb), str(path), parameters={"profile": profile}, prepare_only=True,
                            language="python", progress_bar=False)
        with warnings.catch_warnings():  # the missing id, set below
            warnings.simplefilter("ignore")
            book = nbformat.read(path, as_version=4)
        book.metadata["kernelspec"] = {"name": kernel, "display_name": kernel, "language": "python"}
        for i, cell in enumerate(book.cells):  # papermill's injected cell has no id (nbformat 4.5 wants one)
            cell.setdefault("id", f"check-{i}")
        nbformat.write(book, path)
        out.append(path)
    return out


def write_kernelspec(jupyter_path: Path, python: str = sys.executable) -> Path:
    """The kernelspec :data:`KERNEL` for ``python`` under ``jupyter_path/kernels`` (found through ``JUPYTER_PATH``):
    the chapters run in the environment whose versions the check reports, whatever other kernels are installed."""
    spec = jupyter_path / "kernels" / KERNEL / "kernel.json"
    spec.parent.mkdir(parents=True, exist_ok=True)
    spec.write_text(json.dumps({"argv": [python, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
                                "display_name": f"llmrec check ({Path(python).parent.parent.name})",
                                "language": "python"}))
    return spec


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


class Lab:
    """JupyterLab on ``root`` (runs and figures under ``out``), the app exposed to the page as ``window.jupyterapp``."""

    def __init__(self, root: Path, out: Path, limit: float = 60.0):
        port, self.token = free_port(), secrets.token_hex(16)
        env = {**os.environ, "LLMREC_RUNS": str(out / "runs"), "LLMREC_FIGURES": str(out / "figures"),
               "JUPYTER_PATH": os.pathsep.join(filter(None, (str(write_kernelspec(out / "jupyter").parents[2]),
                                                             os.environ.get("JUPYTER_PATH"))))}
        cmd = [sys.executable, "-m", "jupyterlab", "--no-browser", f"--port={port}", "--ip=127.0.0.1",
               f"--IdentityProvider.token={self.token}", f"--ServerApp.root_dir={root}",
               "--LabApp.expose_app_in_browser=True", f"--LabApp.user_settings_dir={lab_settings(out / 'lab-settings')}",
               f"--LabApp.workspaces_dir={out / 'lab-workspaces'}"]
        if hasattr(os, "getuid") and os.getuid() == 0:
            cmd.append("--allow-root")
        self.log = out / "jupyterlab.log"
        self.proc = subprocess.Popen(cmd, stdout=open(self.log, "w"), stderr=subprocess.STDOUT, env=env)
        self.base = f"http://127.0.0.1:{port}"
        t0 = time.monotonic()
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"JupyterLab exited ({self.proc.returncode}); see {self.log}")
            try:
                self.api("GET", "status")
                return
            except OSError:
                if time.monotonic() - t0 > limit:
                    self.close()
                    raise RuntimeError(f"JupyterLab did not answer within {limit:.0f} s; see {self.log}") from None
                time.sleep(0.5)

    def api(self, method: str, path: str, body: dict | None = None):
        req = urllib.request.Request(f"{self.base}/api/{path}", method=method,
                                     data=None if body is None else json.dumps(body).encode(),
                                     headers={"Authorization": f"token {self.token}",
                                              "Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=10) as r:
            text = r.read()
        return json.loads(text) if text else None

    def start_kernel(self, notebook: str) -> dict:
        """A session for ``notebook`` with the check's kernel, started before the page opens: the page connects
        to it (and then waits for it to be idle) instead of choosing a kernel."""
        session = self.api("POST", "sessions", {"path": notebook, "name": notebook, "type": "notebook",
                                                "kernel": {"name": KERNEL}})
        if session["kernel"]["name"] != KERNEL:
            raise RuntimeError(f"JupyterLab started kernel {session['kernel']['name']!r}, not {KERNEL!r}")
        return session

    def stop_kernel(self, session: dict | None) -> None:
        if session:
            try:
                self.api("DELETE", f"sessions/{session['id']}")
            except OSError:
                pass

    def close(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()


# ----------------------------------------------------------------------------- working the explorers

# the notebook's kernel as the page sees it
PAGE_KERNEL = """() => {
  const w = window.jupyterapp && window.jupyterapp.shell.currentWidget;
  const s = w && w.sessionContext, k = s && s.session && s.session.kernel;
  return {app: !!window.jupyterapp, notebook: !!s, ready: !!(s && s.isReady), kernel: k ? k.name : null,
          status: k ? k.status : null, connection: k ? k.connectionStatus : null};
}"""
# cells still queued or running ([*]) and the first of them
PENDING = """() => {
  const cells = [...document.querySelectorAll('.jp-Notebook .jp-CodeCell')];
  const busy = cells.filter(c => (c.querySelector('.jp-InputPrompt') || {}).textContent?.includes('*'));
  const src = busy.length ? (busy[0].querySelector('.cm-content') || {}).innerText || '' : '';
  return {pending: busy.length, first: busy.length ? cells.indexOf(busy[0]) + 1 : 0, source: src.split('\\n')[0]};
}"""


class StepFailed(Exception):
    pass


class Check:
    """One chapter's explorer: its steps, each within its time limit, and their screenshots."""

    def __init__(self, page, chapter: str, shots: Path, step_limit: float, deadline: float, title: str = ""):
        self.page, self.chapter, self.shots = page, chapter, shots
        self.step_limit, self.deadline = step_limit, deadline
        self.title = title  # a catalogue title of the chapter's dataset: the trie explorer types its start
        self.steps: list[dict] = []
        self.cell = None

    def shot(self, label: str, failed: bool = False) -> str:
        path = self.shots / f"{self.chapter}_{len(self.steps):02d}_{re.sub(r'[^a-z0-9]+', '_', label.lower())}" \
                            f"{'_FAILED' if failed else ''}.png"
        try:
            if failed or self.cell is None:
                self.page.screenshot(path=str(path), full_page=True, timeout=10_000)
            else:
                self.cell.screenshot(path=str(path), timeout=10_000)
        except Exception as e:  # the step's own error is the one to report
            return f"no screenshot: {type(e).__name__}"
        return str(path.relative_to(self.shots.parent))  # in --out

    def step(self, name: str, act, limit: float | None = None) -> None:
        """``act(limit_s)`` within this step's limit (the smaller of ``limit``, default ``--step-limit``, and what
        is left of ``--limit``); a failure or a step past its limit raises :class:`StepFailed` naming the step."""
        limit = min(limit or self.step_limit, self.deadline - time.monotonic())
        t0 = time.monotonic()
        entry = {"step": name, "limit_s": round(limit, 1)}
        try:
            if limit <= 0:
                raise TimeoutError("the whole check's --limit ran out before this step")
            note = act(limit)
            if time.monotonic() - t0 > limit:
                raise TimeoutError("finished, but past its limit")
        except Exception as e:
            entry.update(ok=False, seconds=round(time.monotonic() - t0, 1), error=f"{type(e).__name__}: {e}",
                         screenshot=self.shot(name, failed=True))
            self.steps.append(entry)
            raise StepFailed(f"chapter {self.chapter}, step '{name}' ({entry['seconds']} s of {limit:.0f}): "
                             f"{type(e).__name__}: {e}") from None
        entry.update(ok=True, seconds=round(time.monotonic() - t0, 1), **(note or {}), screenshot=self.shot(name))
        self.steps.append(entry)

    def open_notebook(self, url: str, limit: float) -> dict:
        """Open the notebook; wait until the page is connected to the check's idle kernel. A kernel-select dialog
        (there should be none: the kernel runs already) is answered with the check's kernel and recorded."""
        page, t0, note = self.page, time.monotonic(), {}
        page.goto(url, timeout=limit * 1000)
        state = {}
        while time.monotonic() - t0 < limit:
            dialog = page.locator(".jp-Dialog")
            if dialog.count() and dialog.first.is_visible():
                title = dialog.first.locator(".jp-Dialog-header").inner_text().strip()
                select = dialog.first.locator("select")
                if not select.count():
                    raise RuntimeError(f"a dialog '{title}' blocks the page")
                value = select.first.evaluate("(s, k) => [...s.options].map(o => o.value).find(v => v.includes(k))",
                                              KERNEL)  # JupyterLab's values: '{"name": "<kernelspec>"}'
                if value is None:
                    raise RuntimeError(f"a dialog '{title}' does not offer the kernel {KERNEL}")
                select.first.select_option(value=value)
                dialog.first.locator(".jp-mod-accept").first.click()
                note["dialog"] = f"'{title}' answered with {KERNEL}"
            state = page.evaluate(PAGE_KERNEL)
            if state["kernel"] not in (None, KERNEL):
                raise RuntimeError(f"the page runs kernel {state['kernel']!r}, not {KERNEL!r}")
            if state["ready"] and state["status"] == "idle" and state["connection"] == "connected":
                return note
            time.sleep(0.25)
        if not state.get("app"):
            raise TimeoutError("no window.jupyterapp on the page (--LabApp.expose_app_in_browser)")
        raise TimeoutError(f"the page's kernel never became idle and connected: {state}")

    def run_all(self, marker: str, limit: float) -> None:
        """Run every cell (JupyterLab's command), then wait for the explorer's widget in the cell that builds it;
        fail at once when every cell has run without it (the last error output named)."""
        page, t0 = self.page, time.monotonic()
        if not page.evaluate("() => window.jupyterapp.commands.isEnabled('notebook:run-all-cells')"):
            raise RuntimeError("JupyterLab's 'Run All Cells' is disabled")
        page.evaluate("() => { window.jupyterapp.commands.execute('notebook:run-all-cells'); }")
        self.cell = page.locator(".jp-CodeCell").filter(has_text=marker).last
        widget = self.cell.locator(".jp-OutputArea-output .jupyter-widgets").first
        idle_since, pending = None, {}
        while time.monotonic() - t0 < limit:
            if widget.count() and widget.is_visible():
                return
            pending = page.evaluate(PENDING)
            if pending["pending"] == 0 and page.evaluate(PAGE_KERNEL)["status"] == "idle":
                idle_since = idle_since or time.monotonic()
                if time.monotonic() - idle_since > 2:
                    raise RuntimeError(f"every cell ran, but no explorer appeared ({self.last_error()})")
            else:
                idle_since = None
            time.sleep(0.25)
        where = f"cell {pending['first']} still running: {pending['source'][:80]!r}" if pending.get("pending") else ""
        raise TimeoutError(f"the explorer did not appear ({where or self.last_error()})")

    def last_error(self) -> str:
        errors = self.page.locator(".jp-OutputArea-output[data-mime-type='application/vnd.jupyter.stderr']")
        return errors.last.inner_text()[-1500:] if errors.count() else "no error output on the page"

    def work(self, name: str, act, output) -> None:
        """Do ``act()``; the explorer's ``output`` (a locator; its outer HTML, so that an image's new source
        counts) must change within the step's limit."""
        def change(limit):
            html = lambda: output.evaluate("e => e.outerHTML")  # noqa: E731
            before = html()
            act()
            t0, after = time.monotonic(), before
            while time.monotonic() - t0 < limit:
                after = html()
                if after != before and "beam search …" not in after:
                    return {"output_chars": [len(before), len(after)]}
                time.sleep(0.25)
            raise TimeoutError(f"the explorer's output did not change ({len(before)} characters)")

        self.step(name, change)


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
    out = c.cell.locator(".widget-image").first  # an <img>: its src changes, it has no inner HTML

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
        raise StepFailed(f"chapter 06: the explorer showed no recommendation: {html[:300]}")


WORKERS = {"01": work_trie_explorer, "03": work_tau_slider, "06": work_user_explorer}


# ----------------------------------------------------------------------------- the whole check


def stack_versions(browser=None) -> dict:
    """Python, Chromium and the :data:`STACK` distributions this check runs with."""
    from llmrec.core.provenance import installed

    return {"python": sys.version.split()[0], **({"chromium": browser.version} if browser else {}),
            **{name: installed(name) for name in STACK}}


def lock_differences() -> dict[str, dict]:
    """{name: {"installed", "locked"}} of each installed distribution whose version differs from the lock of
    ``make check-widgets`` (requirements/widgets.txt)."""
    from llmrec.core.provenance import installed, locked

    pins = locked(ROOT / "requirements" / "widgets.txt")
    return {name: {"installed": installed(name), "locked": version} for name, version in sorted(pins.items())
            if installed(name) not in (None, version)}


def blame(report: dict, out: Path, rerun_args: list[str], most: int = 6) -> dict[str, bool]:
    """Which newer version broke the failed chapters: for each distribution that differs from the lock (the
    browser's side, :data:`STACK`, first; at most ``most``), its locked version alone is installed (``--no-deps``),
    the failed chapters run again in a fresh process, and the newer version is put back. {name: passed with the
    locked version}: True names a version that broke them."""
    failed = sorted(name[:2] for name, entry in report["chapters"].items() if not entry["ok"])
    differ = report["differs_from_lock"]
    pip = [sys.executable, "-m", "pip", "install", "-q", "--no-deps"]
    found = {}
    for name in sorted(differ, key=lambda n: (n not in STACK, n))[:most]:
        subprocess.run([*pip, f"{name}=={differ[name]['locked']}"], check=True)
        try:
            rerun = subprocess.run([sys.executable, __file__, "--only", *failed, "--out", str(out / f"blame-{name}"),
                                    *rerun_args], capture_output=True, text=True)
        finally:
            subprocess.run([*pip, f"{name}=={differ[name]['installed']}"], check=True)
        found[name] = rerun.returncode == 0
    return found


def check(chromium: Path, out: Path, chapters=tuple(EXPLORERS), profile: str = "smoke", step_limit: float = 60.0,
          run_limit: float = 90.0, limit: float = 180.0, against_lock: bool = False) -> dict:
    """Run the whole check; returns the report (also written to ``out/report.json``). ``limit`` counts from the
    start of the browser's part (after the SmolLM2 cache, made once per machine)."""
    from playwright.sync_api import sync_playwright

    t_start = time.monotonic()
    shutil.rmtree(out / "screenshots", ignore_errors=True)
    shots = out / "screenshots"
    shots.mkdir(parents=True)
    root = out / "notebooks"
    prepare_chapters(root, chapters, profile)
    from llmrec.core.profiles import dataset_for
    from llmrec.data import load_dataset

    from llmrec.llm.model import smollm2_cache

    items = load_dataset(dataset_for(profile, None)).items
    title = items[min(items)]
    from llmrec.core.provenance import commit

    report = {"date": time.strftime("%Y-%m-%d"), "commit": commit(), "chromium": str(chromium), "profile": profile,
              "step_limit_s": step_limit, "run_limit_s": run_limit, "limit_s": limit, "chapters": {},
              "console_errors": []}
    t0 = time.monotonic()
    smollm2_cache()  # converted once per machine (about 35 s on 2 cores), else chapter 01's first cell does it
    report["smollm2_cache_s"] = round(time.monotonic() - t0, 1)
    deadline = time.monotonic() + limit
    if against_lock:
        report["differs_from_lock"] = lock_differences()

    def on_console(message):
        if message.type == "error" and not any(b in message.text for b in BENIGN):
            report["console_errors"].append(f"console.error: {message.text}")

    lab = Lab(root, out, limit=step_limit)
    try:
        with sync_playwright() as p:
            root_user = hasattr(os, "getuid") and os.getuid() == 0
            browser = p.chromium.launch(executable_path=str(chromium), headless=True,
                                        args=CHROMIUM_ARGS + (["--no-sandbox"] if root_user else []))
            report["versions"] = stack_versions(browser)
            context = browser.new_context(viewport={"width": 1400, "height": 1000})
            for nb in sorted(root.glob("*.ipynb")):
                chapter = nb.name[:2]
                page = context.new_page()  # a page, and a fresh JupyterLab workspace, per chapter
                page.on("console", on_console)
                page.on("pageerror", lambda e: report["console_errors"].append(f"pageerror: {e}"))
                c = Check(page, chapter, shots, step_limit, deadline, title)
                entry = report["chapters"][nb.name] = {"ok": False, "steps": c.steps}
                session = {}
                url = f"{lab.base}/lab/workspaces/check-{chapter}/tree/{nb.name}?reset&token={lab.token}"
                try:
                    c.step("start the kernel", lambda t: session.update(lab.start_kernel(nb.name)))
                    c.step("open the notebook", lambda t: c.open_notebook(url, t))
                    c.step("run all cells", lambda t: c.run_all(EXPLORERS[chapter], t), run_limit)
                    WORKERS[chapter](c)
                    entry["ok"] = True
                except StepFailed as e:  # report, go on with the next chapter
                    entry["error"] = str(e)
                lab.stop_kernel(session)
                page.close()  # without JupyterLab's beforeunload prompt
            browser.close()
    finally:
        lab.close()
    report["seconds"] = round(time.monotonic() - t_start, 1)
    report["ok"] = all(e["ok"] for e in report["chapters"].values()) and not report["console_errors"]
    (out / "report.json").write_text(json.dumps(report, indent=1, allow_nan=False) + "\n")  # strict JSON
    return report


def summary(report: dict) -> list[str]:
    """The report as lines: each chapter's steps, the failure, the versions (beside the lock's, if compared)."""
    lines = []
    for name, entry in report["chapters"].items():
        steps = ", ".join(f"{s['step']} {s['seconds']:.0f} s" + ("" if s["ok"] else " FAILED") for s in entry["steps"])
        lines.append(f"{'ok    ' if entry['ok'] else 'FAILED'} {name}: {steps}")
        if "error" in entry:
            lines.append(f"       {entry['error']}")
        lines += [f"       ({s['dialog']})" for s in entry["steps"] if "dialog" in s]
    firsts = [line.splitlines()[0][:200] for line in report["console_errors"]]  # the report keeps them whole
    lines += [f"console: {line}" + (f" ({firsts.count(line)} times)" if firsts.count(line) > 1 else "")
              for line in dict.fromkeys(firsts)]
    lines.append("versions: " + ", ".join(f"{k} {v}" for k, v in report.get("versions", {}).items()))
    if "differs_from_lock" in report:
        differ = report["differs_from_lock"]
        lines.append("versions other than the lock's (requirements/widgets.txt): " + (", ".join(
            f"{n} {v['installed']} (locked {v['locked']})" for n, v in differ.items()) or "none"))
        failed = ", ".join(name[:2] for name, entry in report["chapters"].items() if not entry["ok"])
        for name, passed in report.get("blame", {}).items():
            v = differ[name]
            lines.append(f"{name} {v['installed']} broke chapter(s) {failed}: they pass with the locked {v['locked']}"
                         if passed else f"{name} {v['installed']}: chapter(s) {failed} fail with the locked "
                         f"{v['locked']} too")
    lines.append(f"{'passed' if report['ok'] else 'FAILED'} in {report['seconds']:.0f} s, of which "
                 f"{report['smollm2_cache_s']:.0f} s the SmolLM2 cache (limits: {report['step_limit_s']:.0f} s a "
                 f"step, {report['run_limit_s']:.0f} s to run all cells, {report['limit_s']:.0f} s in all after "
                 "the cache)")
    return lines


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="check_widgets", description=__doc__.split("\n\n")[0])
    ap.add_argument("--which-chromium", action="store_true", help="print the Chromium found and exit (1: none)")
    ap.add_argument("--only", nargs="*", default=None, choices=sorted(EXPLORERS), help="chapters to check")
    ap.add_argument("--profile", default="smoke", help="the chapters' profile (default smoke: seconds)")
    ap.add_argument("--out", default=str(ROOT / "runs" / "widget-check"), help="screenshots and report.json")
    ap.add_argument("--step-limit", type=float, default=60.0, help="seconds one step may take (default 60)")
    ap.add_argument("--run-limit", type=float, default=90.0,
                    help="seconds a chapter's cells may take to run, its explorer built (default 90)")
    ap.add_argument("--limit", type=float, default=180.0,
                    help="seconds the whole check may take after the SmolLM2 cache (default 180)")
    ap.add_argument("--against-lock", action="store_true",
                    help="name every installed version that differs from requirements/widgets.txt and, when a "
                         "chapter fails, which of them broke it (each put back to its locked version in turn)")
    args = ap.parse_args(argv)
    chromium, status = chromium_or_status("check-widgets")
    if chromium is None:
        return 1 if args.which_chromium and status == 0 else status
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
    report = check(chromium, Path(args.out), tuple(args.only or EXPLORERS), args.profile, args.step_limit,
                   args.run_limit, args.limit, args.against_lock)
    if args.against_lock and not report["ok"] and report["differs_from_lock"]:
        report["blame"] = blame(report, Path(args.out), ["--profile", args.profile, "--step-limit",
                                                          str(args.step_limit), "--run-limit", str(args.run_limit),
                                                          "--limit", str(args.limit)])
        (Path(args.out) / "report.json").write_text(json.dumps(report, indent=1, allow_nan=False) + "\n")
    print("\n".join(summary(report)))
    print(f"screenshots and report.json in {args.out}")
    return 0 if report["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
