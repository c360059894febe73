"""Generated regions in Markdown pages: hand-written prose stays, the numbers between markers are made by code.

Two kinds of region, each closed by ``<!-- llmrec:end -->``:

* a **table**: ``<!-- llmrec:table NAME -->`` alone on its line, the generated lines, then the end marker alone
  on its line;
* a **value**: ``<!-- llmrec:value GROUP KEY -->text<!-- llmrec:end -->`` inside one line (a sentence or a table
  cell): one number or phrase of a group of values.

:func:`regions` finds them (a start without its end, an end without its start, a region inside another or a
table marker that shares its line is an error naming the file and line); :func:`fill` replaces each region's
content with what ``render(kind, name, key)`` gives, and names the file and line of a region it cannot fill.
The markers are HTML comments, so a rendered page shows only the content.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable

START = re.compile(r"<!-- llmrec:(?P<kind>table|value) (?P<name>[^\s>]+)(?: (?P<key>[^\s>]+))? -->")
END = "<!-- llmrec:end -->"
ANY = re.compile(r"<!-- llmrec:(?P<word>\S*)")


class RegionError(ValueError):
    """A region that cannot be read or filled; the message starts with ``file:line:``."""


@dataclasses.dataclass(frozen=True)
class Region:
    kind: str  # "table" or "value"
    name: str
    key: str | None  # a value's key within its group
    line: int  # of the start marker, from 1
    start: int  # the content's first character (offset in the text)
    end: int  # one past its last character: the end marker begins here


def _line(text: str, offset: int) -> int:
    return text.count("\n", 0, offset) + 1


def regions(text: str, where: str = "<text>") -> list[Region]:
    """The regions of ``text`` in order; ``where`` names the file in errors."""
    out, open_ = [], None
    for m in ANY.finditer(text):
        line = _line(text, m.start())
        if text.startswith(END, m.start()):
            if open_ is None:
                raise RegionError(f"{where}:{line}: {END} without a region to close")
            kind, name, key, start, start_line = open_
            if kind == "value" and "\n" in text[start:m.start()]:
                raise RegionError(f"{where}:{start_line}: value region {name} {key} does not end on its line "
                                  f"(a value is closed by {END} on the same line)")
            if kind == "table" and not _alone(text, m.start(), m.start() + len(END)):
                raise RegionError(f"{where}:{line}: {END} of table {name} must stand alone on its line")
            end = text.rfind("\n", 0, m.start()) + 1 if kind == "table" else m.start()  # a table: its line's start
            out.append(Region(kind, name, key, start_line, start, end))
            open_ = None
            continue
        s = START.match(text, m.start())
        if s is None:
            raise RegionError(f"{where}:{line}: unreadable marker {text[m.start():text.find('-->', m.start()) + 3]!r}"
                              f" (use <!-- llmrec:table NAME -->, <!-- llmrec:value GROUP KEY --> or {END})")
        if open_ is not None:
            raise RegionError(f"{where}:{line}: a region starts inside {open_[0]} {open_[1]} "
                              f"(opened on line {open_[4]}, not closed by {END})")
        kind, name, key = s["kind"], s["name"], s["key"]
        if kind == "table":
            if key is not None:
                raise RegionError(f"{where}:{line}: table {name} takes no key (got {key!r})")
            if not _alone(text, s.start(), s.end()):
                raise RegionError(f"{where}:{line}: the table marker of {name} must stand alone on its line")
            start = text.find("\n", s.end()) + 1 or len(text)  # the content begins on the next line
        else:
            if key is None:
                raise RegionError(f"{where}:{line}: value {name} needs a key (<!-- llmrec:value GROUP KEY -->)")
            start = s.end()
        open_ = (kind, name, key, start, line)
    if open_ is not None:
        raise RegionError(f"{where}:{open_[4]}: {open_[0]} {open_[1]} is not closed by {END}")
    return out


def _alone(text: str, start: int, end: int) -> bool:
    """Whether ``text[start:end]`` fills its line (surrounding spaces aside)."""
    before = text[text.rfind("\n", 0, start) + 1:start]
    after_end = text.find("\n", end)
    after = text[end:after_end if after_end >= 0 else len(text)]
    return not before.strip() and not after.strip()


def fill(text: str, render: Callable[[str, str, str | None], str], where: str = "<text>") -> str:
    """``text`` with each region's content replaced by ``render(kind, name, key)``: a table's lines (then one
    blank line before the end marker), or a value's one line. An error from ``render`` comes back naming the
    file and line."""
    parts, pos = [], 0
    for r in regions(text, where):
        try:
            content = render(r.kind, r.name, r.key)
        except RegionError:
            raise
        except (LookupError, ValueError) as e:
            message = e.args[0] if isinstance(e, KeyError) and e.args else e
            raise RegionError(f"{where}:{r.line}: {r.kind} {r.name}{' ' + r.key if r.key else ''}: {message}") \
                from e
        if r.kind == "value" and "\n" in content:
            raise RegionError(f"{where}:{r.line}: value {r.name} {r.key} rendered more than one line")
        if r.kind == "table":  # a blank line ends the table before the end marker (markdown-it reads on otherwise)
            content = content.rstrip("\n") + "\n\n"
        parts += [text[pos:r.start], content]
        pos = r.end
    return "".join(parts) + text[pos:]
