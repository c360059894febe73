"""Sphinx configuration of the study's book (``make book``): the committed executed chapters, an introduction, the
course page, the glossary and the docs pages, rendered to static HTML offline, with no training and no execution.

The source directory is the repository root (so that the docs pages' relative links to ``results/``, ``bench/``
and ``lib/`` resolve as they do on a code host); ``include_patterns`` takes only the book's pages. Why Sphinx with
myst-nb and not Jupyter Book 2 or MkDocs: docs/book.md.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

project = "llmrec-study"
author = "the llmrec-study authors"
copyright = "2026, the llmrec-study authors"  # noqa: A001 (Sphinx's name)

root_doc = "book/index"
include_patterns = ["book/*.md", "docs/*.md", "notebooks/executed/[0-9][0-9]_*.ipynb"]
exclude_patterns = ["book/_build", "**/.ipynb_checkpoints"]

extensions = ["myst_nb", "sphinx-mathjax-offline"]  # MathJax bundled: no CDN (the extension's name has hyphens)
myst_enable_extensions = ["dollarmath", "amsmath", "colon_fence", "deflist"]
myst_heading_anchors = 3
nb_execution_mode = "off"  # the book shows what the canonical batch computed; building it runs nothing
nb_ipywidgets_js = {}  # no require.js / widget manager from a CDN: the explorers are replaced by a note below
nb_merge_streams = True
nb_render_markdown_format = "myst"  # a narrative cell's Markdown output (its sentences) with its $math$, as the text
suppress_warnings = ["myst.header", "misc.highlighting_failure"]

html_theme = "sphinx_book_theme"
html_title = "llmrec-study"
html_favicon = "favicon.svg"  # a page without one makes the browser ask for /favicon.ico: a 404 in the console
html_theme_options = {"show_toc_level": 2, "use_download_button": True, "home_page_in_toc": True}
html_context = {"default_mode": "light"}  # without it the theme's script logs an error on every page
html_last_updated_fmt = None
html_copy_source = False

WIDGET = "application/vnd.jupyter.widget-view+json"
EXPLORER_NOTE = ("*An interactive explorer (ipywidgets) is here in the notebook; a static page cannot run it. "
                 "Open the chapter in JupyterLab (`make lab`) to use it.*")


CHAPTER_LINK = re.compile(r"(\]\((?:\.\./)*notebooks/)(\d\d_[\w-]+\.ipynb)")


def _chapter_links(app, docname: str, source: list[str]) -> None:
    """In the book, a page's link to a chapter's source notebook (``notebooks/NN_x.ipynb``, right on a code host)
    leads to the chapter with its outputs (``notebooks/executed/NN_x.ipynb``)."""
    if docname.startswith(("docs/", "book/")):
        source[0] = CHAPTER_LINK.sub(r"\1executed/\2", source[0])


def _static_explorers(app, docname: str, source: list[str]) -> None:
    """Replace each widget output of an executed chapter with a note: its state needs a kernel (or a CDN's widget
    manager) that an offline static book does not have, and its text form (``VBox(children=...)``) says nothing."""
    if not docname.startswith("notebooks/executed/"):
        return
    book = json.loads(source[0])
    for cell in book.get("cells", []):
        for i, out in enumerate(cell.get("outputs", [])):
            if WIDGET in out.get("data", {}):
                cell["outputs"][i] = {"output_type": "display_data", "metadata": {},
                                      "data": {"text/markdown": EXPLORER_NOTE}}
    book.get("metadata", {}).pop("widgets", None)
    source[0] = json.dumps(book)


GLOSSARY_LINK = re.compile(r"\[([^\]]+)\]\((?:\.\./)+docs/glossary\.md#([\w-]+)\)")


def _glossary_terms(path: Path) -> dict[str, str]:
    """{anchor: term} of the ``{glossary}`` in ``path``: a chapter links a term as ``[text](../docs/glossary.md#anchor)``,
    the anchor being the term in lower case with every run of other characters than letters and digits a hyphen
    ("P_valid" -> ``p-valid``, "NDCG@K" -> ``ndcgk``)."""
    block = path.read_text().split("```{glossary}", 1)[1].split("```", 1)[0]
    terms = [line.strip() for line in block.splitlines() if line.strip() and not line[0].isspace()]
    return {re.sub(r"[^a-z0-9]+", "-", t.lower().replace("@", "")).strip("-"): t for t in terms}


GLOSSARY = _glossary_terms(Path(__file__).resolve().parents[1] / "docs" / "glossary.md")


def _glossary_links(app, docname: str, source: list[str]) -> None:
    """In an executed chapter, each Markdown link to a glossary term (which reads as a link in JupyterLab and on a
    code host) becomes the ``{term}`` role, which Sphinx resolves to the term's entry (a link to the page alone
    would not find the entry's anchor, and its relative path is the source chapter's)."""
    if not docname.startswith("notebooks/executed/"):
        return
    book = json.loads(source[0])

    def term(m: re.Match) -> str:
        if m.group(2) not in GLOSSARY:
            raise ValueError(f"{docname}: a link to the glossary's #{m.group(2)}, which defines no such term "
                             f"(its anchors: {', '.join(sorted(GLOSSARY))})")
        return f"{{term}}`{m.group(1)} <{GLOSSARY[m.group(2)]}>`"

    for cell in book.get("cells", []):
        if cell.get("cell_type") == "markdown":
            text = "".join(cell["source"]) if isinstance(cell["source"], list) else cell["source"]
            cell["source"] = GLOSSARY_LINK.sub(term, text)
    source[0] = json.dumps(book)


REDIRECT = ('<!DOCTYPE html>\n<meta charset="utf-8">\n<meta http-equiv="refresh" content="0; url=book/index.html">\n'
            '<title>llmrec-study</title>\n<a href="book/index.html">llmrec-study</a>\n')


def _redirect(app, exception) -> None:
    """``index.html`` at the top of the output, sending the reader to the book's first page (``book/index``)."""
    if exception is None and app.builder.format == "html":
        (Path(app.outdir) / "index.html").write_text(REDIRECT)


def setup(app):
    app.connect("build-finished", _redirect)
    app.connect("source-read", _static_explorers)
    app.connect("source-read", _chapter_links)
    app.connect("source-read", _glossary_links)
    app.set_html_assets_policy("always")  # MathJax on every page: the sidebar's chapter titles hold equations
