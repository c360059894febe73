"""The results tables and the run-derived numbers of README.md, the book's introduction and docs/*.md, made from
the committed results records (``results/``, :mod:`llmrec.core.results`) and the benchmarks' JSON (``bench/*.json``):
``python -m llmrec tables`` (``make tables``) writes them into the pages' generated regions
(:mod:`.doc_regions`), ``--check`` only compares and names each page that differs. The generators live by
what they show: :mod:`.doc_llm` (chapters 05, 06 and 08), :mod:`.doc_classic` (chapter 07 and the quick batch's
tables), :mod:`.doc_bench` (``bench/*.json``), :mod:`.doc_transfer` (chapter 09), the chapters' times here;
:mod:`.doc_format` holds the registry, the formatting and the committed records they share.

Every region's generator is a function here: a **table** (:data:`TABLES`, a function of no arguments that returns
Markdown) or a **group of values** (:data:`VALUES`, a function that returns {key: text}; a page quotes one with
``<!-- llmrec:value GROUP KEY -->``). Every interval is a paired 95% bootstrap that resamples users (a user's
windows together, :func:`llmrec.core.metrics.user_bootstrap`), marked "unresolved" where it contains 0 (or a
bound lies within the bootstrap's own noise of 0); every comparison shows NDCG@10 and HR@10 and says where
their verdicts disagree. Nothing trains or evaluates here: a missing record is an error that names it.
"""

from __future__ import annotations

import difflib
import sys
from pathlib import Path

from ..core.io import atomic_write, read_json, repo_root
from . import doc_bench  # noqa: F401 (its tables and values register themselves)
from .doc_classic import _classic_lrs, _classic_runs, _protocol
from .doc_format import TABLES, VALUES, _COMPARED, _records, markdown, seconds, table
from .doc_llm import _lite_runs
from .doc_transfer import _reference
from .doc_regions import fill, regions

# ------------------------------------------------------------------------------------------ the chapters

COURSE_SESSIONS = {"01": 1, "02": 1, "03": 2, "04": 2, "05": 3, "06": 3, "07": 4, "08": 4}  # docs/course.md


@table
def chapter_times() -> str:
    """Each chapter's wall time in the last batch timed from scratch (``bench/figures_scratch.json``) and opened
    alone with its default parameters (``bench/chapters_alone.py``), its course session, and each session's sum
    from scratch. (The committed executed copies record their own time too, ``metadata.llmrec.seconds``, but a
    chapter re-made alone after a change records that run's time, so their sum is no batch's.)"""
    scratch = read_json(repo_root() / "bench" / "figures_scratch.json")["seconds"]
    alone = read_json(repo_root() / "bench" / "chapters_alone.json")["chapters"]
    cold, own = "from scratch (s)", "alone, by default (s)"
    rows, total, per_session = [], 0.0, {}
    for path in sorted((repo_root() / "notebooks" / "executed").glob("[0-9][0-9]_*.ipynb")):
        book = read_json(path)
        title = "".join(book["cells"][0]["source"]).splitlines()[0].lstrip("# ").split(":")[0]
        number = path.name[:2]
        session = COURSE_SESSIONS.get(number)
        value = scratch.get(number)
        per_session[session] = per_session.get(session, 0.0) + (value or 0.0)
        total += value or 0.0
        rows.append({"chapter": title, "session": str(session or "–"),
                     own: seconds(alone[number]["seconds"]) if number in alone else "–",
                     cold: "–" if value is None else seconds(value)})

    def minutes(v: float) -> str:
        return f"{seconds(v)} ({v / 60:.0f} min)"

    rows += [{"chapter": f"session {k}", "session": "", own: "", cold: minutes(v)}
             for k, v in sorted(per_session.items(), key=lambda kv: (kv[0] is None, kv[0] or 0)) if k is not None]
    rows.append({"chapter": "all", "session": "", own: "", cold: minutes(total)})
    return markdown(rows, "lrrr")


@table
def course_gpu() -> str:
    """Each course session's chapters under the quick profile on one GPU (``-p device cuda``), estimated from the
    cost table's CUDA entry (quoted from issue 25, not measured) for a batch of every chapter, beside the same
    estimate on the CPU and the CPU batch measured from scratch."""
    gpu, cpu = doc_bench._estimated("quick", "cuda"), doc_bench._estimated("quick", "cpu")
    scratch = doc_bench._measured()
    rows = []
    for session in sorted(set(COURSE_SESSIONS.values())):
        chapters = [n for n in gpu if COURSE_SESSIONS.get(n[:2]) == session]
        rows.append({"session": str(session), "chapters": ", ".join(n[:2] for n in chapters),
                     "one GPU (estimate)": f"{sum(gpu[n] for n in chapters) / 60:.1f} min",
                     "2-core CPU (estimate)": f"{sum(cpu[n] for n in chapters) / 60:.1f} min",
                     "2-core CPU, from scratch (measured)":
                         f"{sum(scratch[n] or 0.0 for n in chapters) / 60:.1f} min"})
    return markdown(rows, "llrrr")


# ------------------------------------------------------------------------------------------------ the pages


def render(kind: str, name: str, key: str | None) -> str:
    """The content of one region: a table of :data:`TABLES`, or the value ``key`` of a group of :data:`VALUES`."""
    if kind == "table":
        if name not in TABLES:
            raise LookupError(f"no table named {name!r} (known: {', '.join(sorted(TABLES))})")
        return TABLES[name]()
    if name not in VALUES:
        raise LookupError(f"no group of values named {name!r} (known: {', '.join(sorted(VALUES))})")
    group = VALUES[name]()
    if key not in group:
        close = difflib.get_close_matches(key, group, n=3)
        raise LookupError(f"the group {name} has no value {key!r}"
                          + (f" (did you mean {', '.join(close)}?)" if close else ""))
    return group[key]


def pages(root: str | Path | None = None) -> list[Path]:
    """README.md, the book's introduction and docs/*.md of the checkout ``root`` (default: this one)."""
    root = Path(root or repo_root())
    return [p for p in [root / "README.md", root / "book" / "index.md", *sorted((root / "docs").glob("*.md"))]
            if p.exists()]


def _forget() -> None:
    """Drop what earlier calls read or computed (records, comparisons, groups of values): each run reads anew."""
    for fn in (*VALUES.values(), _records, _lite_runs, _classic_runs, _classic_lrs, _protocol, _reference):
        fn.cache_clear()
    _COMPARED.clear()


def generate(paths=None, root: str | Path | None = None) -> dict[Path, tuple[str, str]]:
    """{page: (its text, the text with every region filled)} for each page of ``paths`` (default :func:`pages`)."""
    root = Path(root or repo_root())
    _forget()
    out = {}
    for path in map(Path, paths if paths is not None else pages(root)):
        text = path.read_text(encoding="utf-8")
        where = path.relative_to(root) if path.is_relative_to(root) else path
        out[path] = (text, fill(text, render, str(where)))
    return out


def tables_command(check: bool = False, paths=None, root: str | Path | None = None, out=None) -> int:
    """``python -m llmrec tables``: fill every generated region of the pages from the committed results and
    write the pages that changed (all are made before any is written: an error leaves every page as it was);
    ``check``: write nothing, print a unified diff of each page that differs and return 1 if any does."""
    out = out or sys.stdout
    root = Path(root or repo_root())
    made = generate(paths, root)
    changed = {p: new for p, (old, new) in made.items() if old != new}
    for path, new in changed.items():
        name = str(path.relative_to(root) if path.is_relative_to(root) else path)
        if check:
            out.writelines(difflib.unified_diff(made[path][0].splitlines(keepends=True), new.splitlines(keepends=True),
                                                f"{name} (committed)", f"{name} (from results/)"))
        else:
            atomic_write(path, new.encode("utf-8"))
            print(f"{name}: regenerated", file=out)
    n = sum(len(regions(text)) for text, _ in made.values())
    if check and changed:
        print(f"{len(changed)} page(s) differ from the committed results: run `python -m llmrec tables` "
              f"(make tables)", file=out)
        return 1
    print(f"{n} regions in {len(made)} pages {'match the results' if check else 'made from the results'}", file=out)
    return 0

