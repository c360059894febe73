"""README.md and docs/*.md name only library objects and repository paths that exist; README fits on a screen.

The pages are parsed with markdown-it (CommonMark and tables). What counts as a name or a path is chosen narrowly,
so that the test fails on drift, not on prose:

* **Library names.** A dotted name that starts with ``llmrec.`` anywhere in a page (URLs removed), and an inline
  code span that starts with a dotted name whose first part is a top-level module of ``llmrec``
  (``core.losses.sce_loss``, ``runs.evaluate(run, …)``: the short form architecture.md uses). A name resolves
  by importing its longest module prefix and looking the rest up as attributes (a dataclass field counts); no
  other code runs. A dotted word whose last part is a file suffix (``data.json``) is a file, not a name.
  Bare names (``ItemTrie``, ``LLMRecommender.likelihood``) are not checked: nothing says where they live.
* **Repository paths.** Only paths under a top-level folder of the repository (:data:`ROOT_DIRS`) are checked:
  an inline code span that is one such path (``lib/llmrec/lite/``, ``results/quick/``), and, inside longer code
  spans and fenced code (shell commands), each such word that ends in a file suffix
  (``papermill notebooks/06_training_comparison.ipynb out.ipynb``: the notebook; not ``--out data/films``, an
  output). A checked path must exist, or be git-ignored (an output a command makes, e.g.
  ``notebooks/executed/``). Markdown link and image targets must exist, relative to the page that holds them,
  and a ``#fragment`` on a link to a page must name one of its headings (GitHub's anchors).
* **MyST directives.** The body of a directive fence (```` ```{glossary} ````, ```` ```{note} ````) is read as
  Markdown by the same rules; a ```` ```{code-cell} ```` is code.
* **Never checked:** URLs (``scheme:``); paths outside those folders (``runs/…``, ``~/.cache/llmrec``, a run
  directory's ``checkpoints/``); anything with a placeholder or a glob: ``<…>``, ``*``, ``?``, ``[``, ``{``, ``$``,
  ``…`` or ``...``, or a path part in capitals (``FOLDER``, ``RUN``, ``PATH``).

And README.md has at most 150 lines: the rest belongs in docs/.
"""

from __future__ import annotations

import dataclasses
import importlib
import importlib.util
import pkgutil
import re
import subprocess
from pathlib import Path

import pytest
from markdown_it import MarkdownIt

import llmrec

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
README_MAX_LINES = 150
ROOT_DIRS = ("bench", "data", "docs", "figures", "instructor", "lib", "notebooks", "results", "tests")
SUFFIXES = {"py", "json", "jsonl", "md", "csv", "gz", "png", "ipynb", "toml", "yml", "yaml", "txt", "pt"}
TOP_MODULES = {m.name for m in pkgutil.iter_modules(llmrec.__path__)}

URL = re.compile(r"[A-Za-z][\w+.-]*://\S+")
FULL_NAME = re.compile(r"(?<![\w./-])llmrec(?:\.[A-Za-z_]\w*)+")
LEADING_NAME = re.compile(r"(?:llmrec\.)?([A-Za-z_]\w*(?:\.[A-Za-z_]\w*)+)")
PLACEHOLDER = re.compile(r"[<>*?\[\]{}$…]|\.\.\.|(?:^|/)[A-Z][A-Z0-9_]*(?:/|$)")
PARSER = MarkdownIt("commonmark").enable("table")
MYST_DIRECTIVE = re.compile(r"\{(?!code)[\w-]+\}")  # ```{glossary}, ```{note}: Markdown inside; not {code-cell}


def is_file_name(dotted: str) -> bool:
    return dotted.rsplit(".", 1)[-1] in SUFFIXES


def resolve(dotted: str) -> None:
    """Import the longest module prefix of ``dotted`` and look up the rest as attributes; LookupError if absent."""
    parts = dotted.split(".")
    obj = importlib.import_module(parts[0])
    for i, part in enumerate(parts[1:], start=2):
        if hasattr(obj, part):
            obj = getattr(obj, part)
        elif hasattr(obj, "__path__") and importlib.util.find_spec(".".join(parts[:i])) is not None:
            obj = importlib.import_module(".".join(parts[:i]))
        elif dataclasses.is_dataclass(obj) and part in {f.name for f in dataclasses.fields(obj)}:
            return
        else:
            raise LookupError(f"{'.'.join(parts[:i - 1])} has no {part!r}")


def git_ignored(path: str) -> bool:
    """Whether git would ignore ``path`` (relative to the repository), as an output of some command."""
    for p in {path, path.rstrip("/") + "/"}:
        try:
            if subprocess.run(["git", "check-ignore", "-q", "--no-index", p], cwd=ROOT).returncode == 0:
                return True
        except FileNotFoundError:  # no git: nothing counts as ignored
            return False
    return False


def repo_path(word: str) -> str | None:
    """``word`` as a repository path to check, or None when it is not one (see the module's rules)."""
    word = word.strip("\"'(),;:")
    if "/" not in word or word.split("/", 1)[0] not in ROOT_DIRS or PLACEHOLDER.search(word):
        return None
    return word


def anchors(page: Path) -> set[str]:
    """The anchors GitHub gives a page's headings: lower case, punctuation dropped, spaces as hyphens."""
    tokens = PARSER.parse(page.read_text(encoding="utf-8"))
    return {re.sub(r"[^\w\- ]", "", nxt.content.lower()).replace(" ", "-")
            for tok, nxt in zip(tokens, tokens[1:]) if tok.type == "heading_open"}


def pieces(text: str) -> tuple[list[str], list[str], list[str]]:
    """The page's inline code spans, fenced or indented code blocks, and link / image targets."""
    spans, blocks, targets = [], [], []
    for tok in PARSER.parse(text):
        if tok.type == "fence" and MYST_DIRECTIVE.match(tok.info):  # a MyST directive's body is Markdown
            for mine, inner in zip((spans, blocks, targets), pieces(tok.content)):
                mine.extend(inner)
            continue
        if tok.type in ("fence", "code_block"):
            blocks.append(tok.content)
        for child in tok.children or []:
            if child.type == "code_inline":
                spans.append(child.content)
            elif child.type in ("link_open", "image"):
                targets.append(str(child.attrs.get("href") or child.attrs.get("src") or ""))
    return spans, blocks, targets


def names_in(text: str) -> set[str]:
    """Every library name a page mentions (see the module's rules)."""
    spans, _, _ = pieces(text)
    names = {m.group(0) for m in FULL_NAME.finditer(URL.sub("", text))}
    for span in spans:
        m = LEADING_NAME.match(span.strip())
        if m and m.group(1).split(".")[0] in TOP_MODULES:
            names.add("llmrec." + m.group(1))
    return {n for n in names if not is_file_name(n)}


def paths_in(text: str) -> set[str]:
    """Every repository path a page mentions, relative to the repository (see the module's rules)."""
    spans, blocks, _ = pieces(text)
    paths = set()
    for span in spans:
        words = span.split()
        if len(words) == 1:
            paths.add(repo_path(words[0]))
        else:
            blocks.append(span)
    for block in blocks:
        paths.update(p for w in block.split() if (p := repo_path(w)) and p.rsplit(".", 1)[-1] in SUFFIXES)
    return paths - {None}


def link_targets(text: str, page: Path) -> set[tuple[Path, str]]:
    """The local targets of a page's links and images, resolved against the page's folder, with their fragment
    ("" for none; a bare ``#fragment`` is the page itself)."""
    _, _, targets = pieces(text)
    local = (t.partition("#") for t in targets if t and not re.match(r"[a-z][a-z0-9+.-]*:", t))
    return {((page.parent / path).resolve() if path else page, fragment) for path, _, fragment in local}


def problems(text: str, page: Path) -> list[str]:
    """What a page names that does not exist, one line each."""
    out = []
    for name in sorted(names_in(text)):
        try:
            resolve(name)
        except (ImportError, LookupError) as e:
            out.append(f"name {name}: {e}")
    for path in sorted(paths_in(text)):
        if not (ROOT / path).exists() and not git_ignored(path):
            out.append(f"path {path}: no such file or folder (and not an ignored output)")
    for target, fragment in sorted(link_targets(text, page)):
        shown = target.relative_to(ROOT) if target.is_relative_to(ROOT) else target
        if not target.exists():
            out.append(f"link {shown}: missing")
        elif fragment and target.suffix == ".md" and fragment not in anchors(target):
            out.append(f"link {shown}#{fragment}: no such heading")
    return out


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_page_names_only_what_exists(page):
    found = problems(page.read_text(encoding="utf-8"), page)
    assert not found, f"{page.relative_to(ROOT)} names what does not exist:\n" + "\n".join(found)


def test_readme_fits_on_a_screen():
    n = len((ROOT / "README.md").read_text(encoding="utf-8").splitlines())
    assert n <= README_MAX_LINES, f"README.md has {n} lines; at most {README_MAX_LINES} (move detail to docs/)"


def test_the_rules_catch_drift_and_leave_prose_alone():
    page = ROOT / "docs" / "page.md"
    text = """`llmrec.core.losses.sce_loss` and `core.metrics.ndcg_at_k(ranks, k)` exist; `llmrec.losses.sce_loss`,
`core.metrics.ndcg_at_100` and llmrec.core.profiles.NO_SUCH in prose do not. `core.families.REGISTRY`,
`llmrec.llm.config.TrainConfig.domain` (a dataclass field) exist. `config.json`, `ItemTrie`, `data.json` are not names.

Paths: `lib/llmrec/lite/`, `notebooks/executed/` (ignored output), `results/nope/` (missing),
`papermill notebooks/00_missing.ipynb out.ipynb -p dataset data/films`, `results/<profile>/llm/`, `data/FOLDER/x`,
`runs/<run>`, `lib/llmrec/*.py`, see [the library](library.md), [its profiles](library.md#profiles),
[gone](nothing.md#x), [no such heading](library.md#nope), [web](https://example.org/a.md).

```bash
python -m llmrec prepare --out data/films      # an output, not checked
papermill notebooks/99_gone.ipynb out.ipynb
```

```{glossary}
term
  Read as Markdown: `core.metrics.no_such`, [a chapter](../notebooks/00_none.ipynb), [ok](library.md).
```
"""
    assert sorted(problems(text, page)) == sorted([
        "name llmrec.core.metrics.ndcg_at_100: llmrec.core.metrics has no 'ndcg_at_100'",
        "name llmrec.core.profiles.NO_SUCH: llmrec.core.profiles has no 'NO_SUCH'",
        "name llmrec.losses.sce_loss: llmrec has no 'losses'",
        "path notebooks/00_missing.ipynb: no such file or folder (and not an ignored output)",
        "path notebooks/99_gone.ipynb: no such file or folder (and not an ignored output)",
        "path results/nope/: no such file or folder (and not an ignored output)",
        "link docs/nothing.md: missing",
        "link docs/library.md#nope: no such heading",
        "name llmrec.core.metrics.no_such: llmrec.core.metrics has no 'no_such'",
        "link notebooks/00_none.ipynb: missing",
    ])
