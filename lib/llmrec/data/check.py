"""The data boundary: read a dataset folder, report every problem (file, line, field), summarise what it holds.

:func:`check_folder` is the one reader of a dataset folder: :func:`~llmrec.data.load_dataset`, ``llmrec check``,
``train``, ``figures --dataset`` and the end of ``prepare`` all go through it, so what ``check`` accepts is
exactly what loads. It reads every file to the end and keeps going after a problem, so one run lists them all
(up to ``limit``; the rest are counted).

A problem is anything that would make a run wrong or fail later: a missing file, or ``x.csv`` beside
``x.csv.gz`` (which one is the data?); a file that is not UTF-8 text (a byte-order mark is fine) or not valid
gzip (truncated by an interrupted download, or corrupt); ``items.json`` that is not one JSON object of
``{"item id": "title"}``, an item id that is not a positive integer or appears twice, a title that is not a
non-empty string (a number, null, a list), ids that are not 1..N without gaps (the classic models score every id
up to the largest); a CSV without its columns (``user_id,item_ids,timestamp``) or with one of them twice, a
repeated header line, a row with too many or too few fields; a user id that is not a non-negative integer, an
item id that is not a positive integer or has no title, a window of fewer than 2 items (a history and a
target), a timestamp that is not a finite number; a split with no windows; a ``meta.json`` that is not a JSON
object. Accepted on purpose, and said in the summary: CRLF line ends, extra columns in any order, items that
share a title, histories shorter than the longest window (users with fewer interactions), any order of time.

``read_text_lines`` and ``read_csv`` are also the reading half of ``prepare``'s CSV input.
"""

from __future__ import annotations

import codecs
import csv
import functools
import gzip
import json
import math
import re
import zlib
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from ..core.io import cache_root
from .dataset import DOMAIN_CHOICES, SPLITS, DataError, Dataset

MAX_PROBLEMS = 20
WINDOW_COLUMNS = ("user_id", "item_ids", "timestamp")
DIGITS = re.compile(r"[0-9]+")  # ASCII digits only: int() would also take "1_000", "+5" or "٣"
NUMBER = re.compile(r"[+-]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][+-]?[0-9]+)?")  # no "nan", "inf" or "1_0"
INT64 = 2 ** 63


# ----------------------------------------------------------------------------- problems


@dataclass(frozen=True)
class Problem:
    """One problem of one file: ``file, line N, field F: message``."""

    file: Path
    message: str
    line: int | None = None
    field: str | None = None

    def __str__(self) -> str:
        line = f", line {self.line}" if self.line else ""
        return f"{self.file}{line}" + (f", field {self.field}" if self.field else "") + f": {self.message}"


class Problems:
    """The problems found so far: every one counted, the first ``limit`` kept."""

    def __init__(self, limit: int = MAX_PROBLEMS):
        self.kept: list[Problem] = []
        self.count = 0
        self.limit = limit

    def add(self, file: Path, message: str, line: int | None = None, field: str | None = None) -> None:
        self.count += 1
        if len(self.kept) < self.limit:
            self.kept.append(Problem(Path(file), message, line, field))

    def __bool__(self) -> bool:
        return self.count > 0

    def raise_if_any(self, hint: str = "") -> None:
        """A :class:`DataError` with the first problem (one line) and how many more there are (``hint``: where to
        see them), when there are any."""
        if self.count:
            more = self.count - 1
            raise DataError(str(self.kept[0]) + (f" (and {more} more problem{'s' * (more > 1)}{hint})" if more else ""),
                            self.kept)


# ----------------------------------------------------------------------------- files, lines, CSV


def read_text_lines(path: Path, problems: Problems) -> Iterator[tuple[int, str]]:
    """``(line number, text)`` of each line of ``path`` (gzip when it is named ``.gz``): UTF-8, with or without a
    byte-order mark, line ends kept. What cannot be read (not UTF-8, a NUL character, corrupt or truncated gzip)
    adds one problem naming the line, and ends the lines."""
    lineno = 0
    try:
        with open(path, "rb") as raw:
            if path.name.endswith(".gz"):
                stream = gzip.GzipFile(fileobj=raw)
            elif raw.read(2) == b"\x1f\x8b":
                problems.add(path, f"gzip-compressed data in a file not named .gz: name it {path.name}.gz")
                return
            else:
                raw.seek(0)
                stream = raw
            for lineno, data in enumerate(stream, start=1):
                if lineno == 1:
                    if data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
                        problems.add(path, "UTF-16 text: save the file as UTF-8", line=1)
                        return
                    data = data.removeprefix(codecs.BOM_UTF8)
                try:
                    text = data.decode("utf-8")
                except UnicodeDecodeError as e:
                    problems.add(path, f"not UTF-8 text: byte 0x{data[e.start]:02x} at column {e.start + 1} (save the "
                                       "file as UTF-8)", line=lineno)
                    return
                if "\x00" in text:
                    problems.add(path, "a NUL character: UTF-16 or binary data? (save the file as UTF-8 text)",
                                 line=lineno)
                    return
                yield lineno, text
    except EOFError:
        problems.add(path, f"truncated gzip data: the file ends after line {lineno}, before the end of its compressed "
                           "data (an interrupted download or copy?)")
    except (gzip.BadGzipFile, zlib.error) as e:
        problems.add(path, f"corrupt gzip data after line {lineno} ({e})")
    except OSError as e:
        problems.add(path, f"cannot read ({e.strerror or e})")


def read_csv(path: Path, columns: Sequence[str], problems: Problems) -> Iterator[tuple[int, list[str]]]:
    """``(line number, values of columns)`` for each row of a CSV file whose header line names ``columns`` (in any
    order; other columns are ignored), the values stripped of surrounding spaces. Blank lines are skipped; a
    missing or repeated column, a repeated header line, a row with another number of fields than the header adds
    a problem (the rows go on when they can)."""
    before = problems.count
    reader = csv.reader(text for _, text in read_text_lines(path, problems))
    header, index, last = None, None, 0
    try:
        for row in reader:
            start, last = last + 1, reader.line_num
            if not row or (len(row) == 1 and not row[0].strip()):
                continue
            row = [v.strip() for v in row]
            if header is None:
                header = row
                counts = Counter(header)
                twice = [c for c in columns if counts[c] > 1]
                missing = [c for c in columns if c not in counts]
                if twice or missing:
                    problems.add(path, (f"column {' and '.join(twice)} appears more than once in the header" if twice
                                        else f"missing column(s) {', '.join(missing)}") +
                                 f"; the header is {','.join(header)!r} (expected {','.join(columns)})", line=start)
                    return
                index = [header.index(c) for c in columns]
            elif row == header:
                problems.add(path, "the header line again (files joined together?)", line=start)
            elif len(row) != len(header):
                problems.add(path, f"{len(row)} fields where the header has {len(header)}", line=start)
            else:
                yield start, [row[i] for i in index]
    except csv.Error as e:
        problems.add(path, f"not CSV ({e})", line=reader.line_num)
    if header is None and problems.count == before:
        problems.add(path, f"empty file: expected a header line {','.join(columns)} and rows")


def parse_number(text: str) -> int | None:
    """A finite number (``1700000000``, ``-5``, ``1.7e9``, ``12.0``) as an int64 (decimals cut), else None."""
    if not NUMBER.fullmatch(text):
        return None
    if DIGITS.fullmatch(text.lstrip("+-")):
        if len(text.lstrip("+-0")) > 19:  # beyond int64 (and int() refuses 4,300 digits)
            return None
        value = int(text)
    else:
        number = float(text)
        if not math.isfinite(number):  # 1e999
            return None
        value = int(number)
    return value if -INT64 <= value < INT64 else None


def _id(text: str, least: int) -> int | None:
    """A non-negative integer id (ASCII digits) of at least ``least``, below 2**63; else None."""
    return int(text) if len(text) <= 19 and text.isascii() and text.isdigit() and least <= int(text) < INT64 else None


# ----------------------------------------------------------------------------- the files of a dataset


class _Object(list):
    """A JSON object as the list of its (key, value) pairs: repeated keys stay visible."""


def quoted(text: str) -> str:
    """``repr`` of a value in a message, cut to 40 characters: a garbled file can hold very long ones."""
    return repr(text if len(text) <= 40 else text[:40] + "...")


def _describe(value) -> str:
    if isinstance(value, _Object):
        return "an object"
    if isinstance(value, list):
        return "a list"
    if value is None or isinstance(value, bool):
        return json.dumps(value)
    if isinstance(value, (int, float)):
        return f"the number {quoted(str(value))[1:-1]}"  # a long one cut
    return "an empty string" if not value else f"only spaces ({value!r})" if not value.strip() else quoted(value)


def _read_json(path: Path, problems: Problems, shape: str = "") -> _Object | None:
    """A file of one JSON object ``shape`` (as an :class:`_Object`, nested ones too), or None with a problem."""
    before = problems.count
    text = "".join(t for _, t in read_text_lines(path, problems))
    if problems.count > before:
        return None
    if not text.strip():
        problems.add(path, f"empty file: expected one JSON object {shape}")
        return None
    try:
        value = json.loads(text, object_pairs_hook=_Object)
    except json.JSONDecodeError as e:
        problems.add(path, f"not JSON ({e.msg}, column {e.colno})", line=e.lineno)
        return None
    except (ValueError, RecursionError) as e:  # a number of over 4,300 digits; nesting too deep
        problems.add(path, f"not JSON that can be read ({e or 'nested too deeply'})")
        return None
    if not isinstance(value, _Object):
        problems.add(path, f"expected one JSON object {shape}, got {_describe(value)}")
        return None
    return value


def parse_items(path: Path, problems: Problems) -> tuple[dict[int, str], set[int]]:
    """``items.json``: ``{item id: title}`` of the well-formed entries, and every well-formed id (a window that
    names an id whose title is wrong is not reported again as naming an unknown item)."""
    raw = _read_json(path, problems, '{"item id": "title", ...}')
    items: dict[int, str] = {}
    ids: dict[int, str] = {}
    if raw is None:
        return items, set()
    for key, title in raw:
        iid = _id(key, least=1)
        if iid is None:
            problems.add(path, f"an item id must be a positive integer, got {quoted(key)}", field=f"item {quoted(key)}")
            continue
        if iid in ids:
            problems.add(path, f"item {iid} appears twice (as {ids[iid]!r} and {quoted(key)})", field=f"item {key}")
            continue
        ids[iid] = key
        if isinstance(title, str) and title.strip():
            items[iid] = title
        else:
            problems.add(path, f"the title must be a non-empty string, got {_describe(title)}", field=f"item {key}")
    if not ids:
        problems.add(path, "no items")
    elif max(ids) != len(ids):
        missing = next(i for i in range(1, max(ids) + 1) if i not in ids)
        problems.add(path, f"item ids must be 1..N without gaps (the classic models score every id up to the "
                           f"largest): {len(ids):,} ids, the largest {max(ids):,}, {missing} is missing")
    return items, set(ids)


def parse_id_list(text: str) -> list[str]:
    """The ids of an ``item_ids`` field, as written: ``"1 2 3"`` (also ``"[1, 2, 3]"``)."""
    s = text.strip()
    if s.startswith("[") and s.endswith("]"):
        s = s[1:-1]
    return s.replace(",", " ").split()


def parse_windows(path: Path, known: set[int] | None, problems: Problems,
                  catalogue: str = "the catalogue") -> pd.DataFrame | None:
    """A window CSV (``user_id,item_ids,timestamp``) as a frame of the rows without problems (None when the file
    cannot be read); ``known``: the catalogue's ids (None: not checked), named ``catalogue`` in a problem."""
    users, hists, targets, stamps = [], [], [], []
    rows = 0
    before = problems.count
    for line, (u, ids, ts) in read_csv(path, WINDOW_COLUMNS, problems):
        rows += 1
        found = problems.count
        user, seq, stamp = _id(u, least=0), [_id(i, least=1) for i in parse_id_list(ids)], parse_number(ts)
        if user is None:
            problems.add(path, f"a user id must be a non-negative integer, got {quoted(u)}", line, "user_id")
        if None in seq:
            problems.add(path, f"item ids must be positive integers, got {quoted(parse_id_list(ids)[seq.index(None)])}",
                         line, "item_ids")
        elif len(seq) < 2:
            problems.add(path, f"a window needs a history of at least 1 item and a target, got {quoted(ids)}", line,
                         "item_ids")
        elif known is not None and any(i not in known for i in seq):
            unknown = [i for i in seq if i not in known]
            problems.add(path, f"item {unknown[0]} has no title in {catalogue}"
                               + (f" (nor {len(unknown) - 1} more of this window)" if len(unknown) > 1 else ""),
                         line, "item_ids")
        if stamp is None:
            problems.add(path, f"a timestamp must be a finite number, got {quoted(ts)}", line, "timestamp")
        if problems.count == found:
            users.append(user)
            hists.append(seq[:-1])
            targets.append(seq[-1])
            stamps.append(stamp)
    if rows == 0 and problems.count == before:
        problems.add(path, "no windows: a header line and no rows")
    if problems.count > before and not users:
        return None
    return pd.DataFrame({"user_id": np.asarray(users, dtype=np.int64), "history": hists,
                         "target": np.asarray(targets, dtype=np.int64),
                         "timestamp": np.asarray(stamps, dtype=np.int64)})


def _find(folder: Path, stem: str, problems: Problems) -> Path | None:
    """``folder/stem.gz`` or ``folder/stem``; both, or neither, is a problem."""
    plain, gz = folder / stem, folder / f"{stem}.gz"
    if plain.exists() and gz.exists():
        problems.add(folder, f"both {stem} and {stem}.gz: which one is the data? remove the other")
        return None
    path = gz if gz.exists() else plain if plain.exists() else None
    if path is None:
        problems.add(folder, f"missing {stem} (or {stem}.gz)")
    elif not path.is_file():
        problems.add(path, "not a file")
        return None
    return path


# ----------------------------------------------------------------------------- the folder


@dataclass
class Report:
    """What :func:`check_folder` found: the problems, a summary (label -> text) and, without problems, the data."""

    folder: Path
    problems: Problems
    summary: dict[str, str] = field(default_factory=dict)
    dataset: Dataset | None = None

    def raise_if_problems(self) -> None:
        self.problems.raise_if_any(f": `python -m llmrec check {self.folder}` lists them")

    def __str__(self) -> str:
        p = self.problems
        head = (f"{self.folder}: no problems" if not p else
                f"{self.folder}: {p.count} problem{'s' * (p.count > 1)}" +
                (f" (the first {len(p.kept)} below)" if p.count > len(p.kept) else ""))
        lines = [head, *(f"  {q}" for q in p.kept)]
        if self.summary:
            lines.append("summary" + (" (of what could be read)" if p else "") + ":")
            lines += [f"  {k:<14} {v}" for k, v in self.summary.items()]
        return "\n".join(lines)


def check_folder(folder: str | Path, limit: int = MAX_PROBLEMS, tokens: bool = False,
                 name: str | None = None, domain: str = "generic") -> Report:
    """Read every file of a dataset folder; the :class:`Report` holds every problem found (up to ``limit``), a
    summary, and (without problems) the :class:`Dataset` named ``name`` (default: the folder's name), whose domain
    is ``meta.json``'s, else ``domain``. ``tokens``: measure the titles in SmolLM2 tokens (``llmrec check``)."""
    folder = Path(folder)
    problems = Problems(limit)
    if not folder.is_dir():
        problems.add(folder, "no such dataset folder" if not folder.exists() else "not a folder")
        return Report(folder, problems)
    paths = {stem: _find(folder, stem, problems) for stem in ("items.json", *(f"{s}.csv" for s in SPLITS))}
    items, known = parse_items(paths["items.json"], problems) if paths["items.json"] else ({}, None)
    catalogue = paths["items.json"].name if paths["items.json"] else "the catalogue"
    frames = {s: parse_windows(paths[f"{s}.csv"], known or None, problems, catalogue) if paths[f"{s}.csv"] else None
              for s in SPLITS}
    notes = _read_meta(folder / "meta.json", problems) if (folder / "meta.json").exists() else {}
    domain = notes.get("domain", domain)
    report = Report(folder, problems, summarise(items, frames, domain, "domain" in notes, tokens))
    if not problems:
        report.dataset = Dataset(name or folder.name, items, frames["train"], frames["valid"], frames["test"],
                                 domain=domain, notes=notes)
    return report


def read_dataset_dir(directory: str | Path, name: str | None = None, domain: str = "generic") -> Dataset:
    """The :class:`Dataset` of a folder, or a :class:`DataError` with its first problem (and how many more)."""
    report = check_folder(directory, name=name, domain=domain)
    report.raise_if_problems()
    return report.dataset


def read_items(path: str | Path) -> dict[int, str]:
    """One ``items.json(.gz)`` file: ``{item id: title}``, or a :class:`DataError` (:func:`parse_items`)."""
    problems = Problems()
    items, _ = parse_items(Path(path), problems)
    problems.raise_if_any()
    return items


def read_windows(path: str | Path, items: dict[int, str] | None = None) -> pd.DataFrame:
    """One window CSV file (``user_id,item_ids,timestamp``; extra columns ignored), its ids checked against
    ``items`` when given, or a :class:`DataError` (:func:`parse_windows`)."""
    problems = Problems()
    frame = parse_windows(Path(path), None if items is None else set(items), problems)
    problems.raise_if_any()
    return frame


def _read_meta(path: Path, problems: Problems) -> dict:
    """``meta.json``: one JSON object; its ``domain``, when there, a string."""
    raw = _read_json(path, problems, '{"domain": "toys", ...}')
    domain = dict(raw or []).get("domain", "")
    if not isinstance(domain, str):
        problems.add(path, f"the domain must be a string, got {_describe(domain)}", field="domain")
        return {}
    return _plain(raw) if raw is not None else {}


def _plain(value):
    """JSON read with :class:`_Object` back to dicts and lists."""
    if isinstance(value, _Object):
        return {k: _plain(v) for k, v in value}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


# ----------------------------------------------------------------------------- the summary


@functools.cache
def _tokenizer(path: Path):
    from tokenizers import Tokenizer  # only llmrec check counts tokens

    return Tokenizer.from_file(str(path))


def title_lengths(titles: list[str]) -> tuple[np.ndarray, str]:
    """Each title's length and its unit: SmolLM2 tokens when the LLM's tokenizer is cached (``llmrec`` converts
    SmolLM2 on first use), else words."""
    path = cache_root() / "smollm2-135m" / "tokenizer.json"  # llmrec.llm.model.smollm2_cache's tokenizer
    if path.exists():
        encoded = _tokenizer(path).encode_batch_fast(titles, add_special_tokens=False)
        return np.asarray([len(e.ids) for e in encoded]), "SmolLM2 tokens"
    return np.asarray([len(t.split()) for t in titles]), "words (SmolLM2 tokens once the LLM has been loaded once)"


def summarise(items: dict[int, str], frames: dict[str, pd.DataFrame | None], domain: str, from_meta: bool,
              tokens: bool) -> dict[str, str]:
    """The summary of a :class:`Report`: items and titles, windows per split, window lengths, users, the prompt's
    ``domain`` (``from_meta``: meta.json's)."""
    out = {}
    if items:
        shared = [n for n in Counter(items.values()).values() if n > 1]
        out["items"] = (f"{len(items):,}, {len(set(items.values())):,} distinct titles" +
                        (f" ({len(shared):,} title{'s' * (len(shared) > 1)} shared by {sum(shared):,} items: accepted, "
                         "a generated title stands for all of its items)" if shared else ""))
        if tokens:
            lengths, unit = title_lengths(list(items.values()))
            out["title length"] = f"mean {lengths.mean():.1f} {unit}, longest {lengths.max():,}"
    read = {s: df for s, df in frames.items() if df is not None}
    if read:
        out["windows"] = ", ".join(f"{s} {len(df):,}" for s, df in read.items())
        sizes = np.concatenate([df["history"].map(len).to_numpy() + 1 for df in read.values()])
        if len(sizes):
            longest = sizes.max()
            out["window length"] = (f"{sizes.min()}-{longest} items (history + target), mean {sizes.mean():.1f}; "
                                    f"{(sizes < longest).mean():.0%} shorter than {longest}: accepted, "
                                    "users with fewer interactions")
        users = {s: set(df["user_id"].tolist()) for s, df in read.items()}
        out["users"] = (f"{len(set().union(*users.values())):,} (" +
                        ", ".join(f"{s} {len(u):,}" for s, u in users.items()) + ")")
    out["domain"] = f"{domain!r}" + (" (meta.json)" if from_meta else ' (no meta.json "domain": the default)') + (
        "" if domain in DOMAIN_CHOICES else f": not a prompt template ({', '.join(DOMAIN_CHOICES)}); the LLM needs "
                                            "train --domain")
    return out
