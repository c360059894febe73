"""How a measured number becomes words in a chapter's text (:mod:`.narrative` writes the sentences): counts,
significant digits, durations, sizes, and the verbs a paired difference earns ("beats" only where its interval
resolves it, :func:`compare`)."""

from __future__ import annotations

import math
from collections.abc import Iterable

from IPython.display import Markdown

from .doc_format import MINUS, interval


def show(*paragraphs: str) -> Markdown:
    """The chapter's sentences as rendered Markdown (empty paragraphs left out): in JupyterLab, in the executed
    copy and in the book alike."""
    return Markdown("\n\n".join(p for p in paragraphs if p))


def bullets(*items: str) -> str:
    """A Markdown list of the non-empty ``items``."""
    return "\n".join(f"* {item}" for item in items if item)


def count(n: float) -> str:
    """A count with thousands separators: 11,758."""
    return f"{int(round(n)):,}"


def possessive(name: str) -> str:
    """"Toy's", "Books'"."""
    return f"{name}'" if name.endswith("s") else f"{name}'s"


def share(x: float, digits: int = 0) -> str:
    """A fraction as a percentage: 0.677 -> 68%."""
    return f"{100 * x:.{digits}f}%"


def sig(x: float, digits: int = 3) -> str:
    """``x`` to ``digits`` significant digits (a typographic minus), as a reader writes a measured value:
    0.000015 -> 1.5e−5 (below 0.001), 0.5714 -> 0.571, 53.466 -> 53.5, 8795.9 -> 8,796."""
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "–"
    if float(x).is_integer() and abs(x) < 1e6:
        return count(x).replace("-", MINUS)
    if abs(x) < 1e-3:
        mantissa, exponent = f"{x:.{digits - 1}e}".split("e")
        return f"{mantissa}e{int(exponent)}".replace("-", MINUS)
    decimals = max(digits - 1 - math.floor(math.log10(abs(x))), 0)
    return f"{x:,.{decimals}f}".replace("-", MINUS)


def seconds(s: float) -> str:
    """A duration: 0.57 s, 12.6 s, 3.2 min."""
    return f"{sig(s / 60, 2)} min" if s >= 120 else f"{sig(s, 2)} s"


def megabytes(mb: float) -> str:
    """A memory size given in MB: 0.027 MB, 3.8 MB, 8.8 GB."""
    return f"{sig(mb / 1024, 2)} GB" if mb >= 1024 else f"{sig(mb, 2)} MB"


def listing(words: Iterable[str], last: str = "and") -> str:
    """"a", "a and b", "a, b and c"."""
    words = list(words)
    return words[0] if len(words) == 1 else f"{', '.join(words[:-1])} {last} {words[-1]}"


def relation(ours: float, theirs: float, close: float = 0.1) -> str:
    """How a measured value stands to a published one: "close to" (within ``close``, relative), "larger than" or
    "smaller than"."""
    if abs(ours - theirs) <= close * abs(theirs):
        return "close to"
    return "larger than" if ours > theirs else "smaller than"


def compare(name: str, base: str, d: dict, unit: str = "", digits: int = 2, lower_is_better: bool = True) -> str:
    """A paired difference ``name − base`` (a row of :func:`llmrec.experiments.tables.paired_table`, or any dict
    with diff, lo, hi and verdict) in words: "MSL beats LML by −2.18 [−2.38, −2.00] nats", "… is worse than …",
    or, where the interval does not resolve it, "MSL and LML are not told apart: … (unresolved)"."""
    unit = f" {unit}" if unit else ""
    text = interval(d, digits, word=False) + unit
    if d["verdict"] != "resolved":
        word = "unresolved" if d["verdict"] == "unresolved" else "unresolved at the edge"
        return f"{name} and {base} are not told apart: {text} ({word})"
    better = (d["diff"] < 0) == lower_is_better
    return f"{name} {'beats' if better else 'is worse than'} {base}: {text}"


def holds(claim: str, ok: bool) -> str:
    """"the paper's claim (…) holds" or "… does not hold here"."""
    return f"the paper's claim ({claim}) {'holds' if ok else 'does not hold here'}"


def _isnan(x) -> bool:
    return x is None or (isinstance(x, float) and math.isnan(x))
