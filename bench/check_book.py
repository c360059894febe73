"""``make check-book``: every page of the built book, opened in headless Chromium (Playwright), as a reader would.

Serves ``book/_build/html`` (``make book`` builds it) on a local port and opens every HTML page in turn. A page
passes when it loads with no console error and no failed request (the book must work offline: a script or
font from a CDN is a failure), every image has loaded (``naturalWidth > 0``), and every equation has been
typeset by the bundled MathJax with no MathJax error. The report (each page: images, equations, problems)
goes to ``--out`` (default ``book/_build/check.json``).

Chromium is found as ``make check-widgets`` finds it (``bench/check_widgets.py``: ``$CHROMIUM``, a known name on
the PATH, or a Playwright build); without one the check says why it is skipped and exits 0 (``bench/check_widgets.py``'s ``chromium_or_status``).

    python bench/check_book.py [--html book/_build/html] [--out FILE] [--page-limit 30]

Exit status: 0 every page passed (or skipped: no Chromium), 1 a page failed, 2 a usage or setup error.
"""

from __future__ import annotations

import argparse
import functools
import http.server
import json
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from check_widgets import CHROMIUM_ARGS, chromium_or_status  # noqa: E402 (bench/ is not a package)

ROOT = Path(__file__).resolve().parents[1]
# what the page reports once MathJax is done: equations in the source, typeset ones, MathJax errors, images
PAGE_STATE = """async () => {
  if (window.MathJax && MathJax.startup && MathJax.startup.promise) { await MathJax.startup.promise; }
  const imgs = [...document.images];
  return {
    images: imgs.length,
    broken: imgs.filter(i => !(i.complete && i.naturalWidth > 0)).map(i => i.getAttribute('src')),
    math: document.querySelectorAll('.math').length,
    typeset: document.querySelectorAll('mjx-container').length,
    math_errors: document.querySelectorAll('mjx-merror, .MathJax_Error').length,
  };
}"""


def pages(html: Path) -> list[Path]:
    """Every HTML page of the book but Sphinx's generated index and search pages (no content of the book's) and
    the redirect at the top (to ``book/index.html``, which is checked)."""
    skip = {html / "genindex.html", html / "search.html", html / "index.html"}
    return sorted(p for p in html.rglob("*.html") if p not in skip and "_static" not in p.parts)


def serve(html: Path) -> tuple[http.server.ThreadingHTTPServer, str]:
    """A quiet local HTTP server of ``html`` on a free port, in a daemon thread; (server, base URL)."""

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args):  # the report says what failed; the access log says nothing more
            pass

    class Server(http.server.ThreadingHTTPServer):
        def handle_error(self, request, client_address):  # a page closed while a file was sent: not the book's
            if not isinstance(sys.exc_info()[1], (BrokenPipeError, ConnectionResetError)):
                super().handle_error(request, client_address)

    server = Server(("127.0.0.1", 0), functools.partial(Quiet, directory=str(html)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}/"


def check_page(page, url: str, limit_s: float) -> dict:
    """Open ``url`` in ``page``; what it shows and every problem found."""
    console, failed = [], []
    page.on("console", lambda m: console.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: console.append(str(e)))
    page.on("requestfailed", lambda r: failed.append(f"{r.url} ({r.failure})"))
    page.on("response", lambda r: failed.append(f"{r.url} (HTTP {r.status})") if r.status >= 400 else None)
    page.goto(url, wait_until="load", timeout=limit_s * 1000)
    state = page.evaluate(PAGE_STATE)
    problems = [f"console: {c}" for c in console] + [f"request failed: {f}" for f in failed]
    problems += [f"image not loaded: {src}" for src in state["broken"]]
    if state["math"] and state["typeset"] < state["math"]:
        problems.append(f"equations: {state['typeset']} of {state['math']} typeset")
    if state["math_errors"]:
        problems.append(f"equations: {state['math_errors']} MathJax errors")
    return {**{k: state[k] for k in ("images", "math", "typeset")}, "problems": problems}


def check(chromium: Path, html: Path, limit_s: float) -> dict:
    """Open every page of the book at ``html``; the report."""
    from playwright.sync_api import sync_playwright

    server, base = serve(html)
    t0 = time.perf_counter()
    report = {"chromium": None, "pages": {}}
    try:
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=str(chromium), args=CHROMIUM_ARGS)
            report["chromium"] = browser.version
            for path in pages(html):
                rel = path.relative_to(html).as_posix()
                page = browser.new_page()
                try:
                    report["pages"][rel] = check_page(page, base + rel, limit_s)
                except Exception as e:  # a page that does not load in time is a failure, named
                    report["pages"][rel] = {"problems": [f"{type(e).__name__}: {str(e).splitlines()[0]}"]}
                finally:
                    page.close()
            browser.close()
    finally:
        server.shutdown()
    report["seconds"] = round(time.perf_counter() - t0, 1)
    report["ok"] = bool(report["pages"]) and not any(p["problems"] for p in report["pages"].values())
    return report


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="check_book", description=__doc__.split("\n\n")[0])
    ap.add_argument("--html", default=str(ROOT / "book" / "_build" / "html"), help="the built book")
    ap.add_argument("--out", default=None, help="the report (default: check.json beside the html folder)")
    ap.add_argument("--page-limit", type=float, default=30.0, help="seconds a page may take to load (default 30)")
    args = ap.parse_args(argv)
    html = Path(args.html)
    if not (html / "index.html").is_file():
        print(f"check-book: error: {html}/index.html: no book there (make book builds it)", file=sys.stderr)
        return 2
    chromium, status = chromium_or_status("check-book")
    if chromium is None:
        return status
    try:
        import playwright  # noqa: F401
    except ImportError:
        print("check-book: error: playwright is missing: pip install -e '.[book]' (make check-book does)",
              file=sys.stderr)
        return 2
    report = check(chromium, html, args.page_limit)
    out = Path(args.out) if args.out else html.parent / "check.json"
    out.write_text(json.dumps(report, indent=1) + "\n")
    bad = {p: r["problems"] for p, r in report["pages"].items() if r["problems"]}
    n = len(report["pages"])
    print(f"check-book: {n - len(bad)} of {n} pages passed in {report['seconds']} s (Chromium {report['chromium']}); "
          f"images {sum(r.get('images', 0) for r in report['pages'].values())}, "
          f"equations {sum(r.get('typeset', 0) for r in report['pages'].values())} typeset; report: {out}")
    for page, problems in bad.items():
        print(f"  FAILED {page}", *(f"    {p}" for p in problems[:8]), sep="\n")
    return 0 if report["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
