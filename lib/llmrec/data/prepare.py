"""Turn raw interactions + titles into a dataset folder (``llmrec prepare``): Amazon 2014 review + metadata
files, or two CSV files of your own.

The protocol follows MSL (section 5.1.1) and BIGRec:

1. read the titles (Amazon metadata: ``asin``, ``title``; or a CSV with columns
   ``item_id,title``) and keep only items with a non-empty title (surrounding
   whitespace stripped; the first non-empty title of an item wins);
2. read the interactions (Amazon reviews: ``reviewerID``, ``asin``,
   ``unixReviewTime``; or a CSV with columns ``user_id,item_id,timestamp``, the
   timestamp a number such as unix seconds, or an ISO 8601 date, ``2021-03-04`` or
   ``2021-03-04T10:00:00``, UTC unless it names its offset), dropping those of
   untitled items; repeated (user, item) interactions are kept, as in the source data;
3. iterative ``core``-core filter: drop users and items with fewer than ``core``
   interactions (review lines), repeat until nothing changes;
4. ids: items get 1..N in sorted-asin (item id, as text) order, users 1..U in sorted-reviewerID (user id) order;
5. per user, sort the interactions by time (stable: ties keep the file order);
6. :func:`make_windows`: a sliding window of length ``window`` (history of
   ``window - 1`` items + the target), step 1; a shorter sequence gives one window;
7. :func:`chronological_split`: sort the windows by the timestamp of their last
   item (stable: ties keep user-id order, then position) and cut 8:1:1;
8. optionally keep a seeded random sample of ``sample`` training windows
   (:func:`llmrec.data.sample_windows`; valid/test are never sampled);
9. write ``items.json.gz``, ``{train,valid,test}.csv.gz`` (:func:`llmrec.data.save_dataset`),
   ``id_map.json.gz`` (id -> asin / reviewerID) and ``meta.json`` into a temporary
   folder next to ``out``, read it back with :func:`llmrec.data.check_folder` (the check ``train`` runs),
   and rename it to ``out`` only when everything succeeded.

The Amazon files may be ``.json`` or ``.json.gz`` with one record per line, strict JSON or
the Python-literal variant of the 2014 metadata (``{'asin': '0', 'title': "It's"}``); the
CSV files ``.csv`` or ``.csv.gz``, UTF-8, with a header row (other columns are ignored), read by
:func:`llmrec.data.check.read_csv`: every problem of a file is found before the first is reported.
"""

from __future__ import annotations

import argparse
import ast
import gzip
import json
import sys
import zlib
from collections.abc import Iterable, Iterator, Sequence
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm import tqdm

from ..core.io import atomic_write, dumps, publish_dir
from .check import Problems, check_folder, parse_number, quoted, read_csv
from .dataset import DOMAIN_CHOICES, Dataset, DataError, chronological_split, make_windows, sample_windows, save_dataset

OUTPUT_FILES = {"items.json.gz", "train.csv.gz", "valid.csv.gz", "test.csv.gz", "meta.json", "id_map.json.gz"}
REVIEW_FIELDS = ("reviewerID", "asin", "unixReviewTime")


# ----------------------------------------------------------------------------- windows and splits


def _open_lines(path: Path):
    try:
        if path.name.endswith(".gz"):
            return gzip.open(path, "rt", encoding="utf-8")
        return open(path, encoding="utf-8")
    except OSError as e:
        raise DataError(f"{path}: cannot open ({e.strerror or e})") from e


def iter_records(path: str | Path) -> Iterator[tuple[int, dict]]:
    """Yield ``(line_number, record)`` for each non-blank line: strict JSON, else a Python literal.

    Raises :class:`DataError` naming the file and the 1-based line for anything else.
    """
    path = Path(path)
    with _open_lines(path) as f:
        lines = tqdm(f, desc=f"reading {path.name}", unit=" lines", disable=None, mininterval=1.0, leave=False)
        try:
            for lineno, line in enumerate(lines, start=1):
                text = line.strip()
                if not text:
                    continue
                try:
                    rec = json.loads(text)
                except ValueError:  # not JSON (or a number of over 4,300 digits): perhaps a Python literal
                    try:
                        rec = ast.literal_eval(text)
                    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
                        raise DataError(f"{path}, line {lineno}: neither JSON nor a Python literal: {text[:80]!r}") from None
                if not isinstance(rec, dict):
                    raise DataError(f"{path}, line {lineno}: expected an object, got {type(rec).__name__}")
                yield lineno, rec
        except (OSError, EOFError, UnicodeDecodeError, zlib.error) as e:
            raise DataError(f"{path}: cannot read ({e or type(e).__name__})") from e


def read_titles(path: str | Path) -> dict[str, str]:
    """asin -> title for every metadata record with a non-empty string title."""
    titles: dict[str, str] = {}
    for lineno, rec in iter_records(path):
        if "asin" not in rec:
            raise DataError(f"{path}, line {lineno}: missing field 'asin'")
        title = rec.get("title")
        if isinstance(title, str) and title.strip():
            titles.setdefault(str(rec["asin"]), title.strip())
    return titles


def read_reviews(path: str | Path, keep: Iterable[str] | None = None) -> tuple[pd.DataFrame, int]:
    """Reviews as a frame ``user, asin, time, line`` (file order) and the number of records read.

    Only reviews of asins in ``keep`` are returned (all when ``keep`` is None).
    """
    keep = None if keep is None else set(keep)
    users, asins, times, lines = [], [], [], []
    n = 0
    for lineno, rec in iter_records(path):
        n += 1
        for name in REVIEW_FIELDS:
            if name not in rec:
                raise DataError(f"{path}, line {lineno}: missing field {name!r}")
        try:
            t = int(rec["unixReviewTime"])
        except (TypeError, ValueError, OverflowError):
            raise DataError(f"{path}, line {lineno}, field 'unixReviewTime': not an integer ({rec['unixReviewTime']!r})") from None
        asin = str(rec["asin"])
        if keep is None or asin in keep:
            users.append(str(rec["reviewerID"]))
            asins.append(asin)
            times.append(t)
            lines.append(lineno)
    frame = pd.DataFrame({"user": users, "asin": asins,
                          "time": np.asarray(times, dtype=np.int64), "line": np.asarray(lines, dtype=np.int64)})
    return frame, n


def read_title_csv(path: str | Path) -> dict[str, str]:
    """item id -> title for every row of a ``item_id,title`` CSV with a non-empty title (first one wins); an
    empty item id is an error."""
    path, problems = Path(path), Problems()
    titles: dict[str, str] = {}
    for line, (item, title) in read_csv(path, ("item_id", "title"), problems):
        if not item:
            problems.add(path, "empty item_id", line, "item_id")
        elif title:
            titles.setdefault(item, title)
    problems.raise_if_any(" in this file")
    return titles


def parse_time(text: str) -> int | None:
    """A number (unix seconds, say), or an ISO 8601 date or time (UTC unless it names its offset) as unix
    seconds; else None."""
    number = parse_number(text)
    if number is not None:
        return number
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        return None
    return int((when if when.tzinfo else when.replace(tzinfo=timezone.utc)).timestamp())


def read_interaction_csv(path: str | Path, keep: Iterable[str] | None = None) -> tuple[pd.DataFrame, int]:
    """Interactions of a ``user_id,item_id,timestamp`` CSV as :func:`read_reviews` returns them (``line``: the
    CSV line, the header being line 1) and the number of rows."""
    path, problems = Path(path), Problems()
    keep = None if keep is None else set(keep)
    users, items, times, lines = [], [], [], []
    n = 0
    for line, (u, i, t) in read_csv(path, ("user_id", "item_id", "timestamp"), problems):
        n += 1
        time_ = parse_time(t)
        for name, value in (("user_id", u), ("item_id", i)):
            if not value:
                problems.add(path, f"empty {name}", line, name)
        if time_ is None:
            problems.add(path, f"neither a number nor an ISO date such as 2021-03-04 ({quoted(t)})", line, "timestamp")
        elif u and i and (keep is None or i in keep):
            users.append(u)
            items.append(i)
            times.append(time_)
            lines.append(line)
    problems.raise_if_any(" in this file")
    frame = pd.DataFrame({"user": users, "asin": items,
                          "time": np.asarray(times, dtype=np.int64), "line": np.asarray(lines, dtype=np.int64)})
    return frame, n


# ----------------------------------------------------------------------------- filtering


def core_filter(df: pd.DataFrame, core: int = 5) -> pd.DataFrame:
    """Iterative k-core: drop rows of users / items (``user`` / ``asin``) with < ``core`` rows until stable."""
    while len(df):
        keep = (df.groupby("user")["user"].transform("size") >= core) & (df.groupby("asin")["asin"].transform("size") >= core)
        if keep.all():
            break
        df = df[keep]
    return df.reset_index(drop=True)


def user_sequences(df: pd.DataFrame) -> tuple[list[str], list[str], list[tuple[int, list[int], list[int]]]]:
    """Assign ids and build per-user chronological sequences.

    Returns ``(asins, users, sequences)``: item id ``i`` is ``asins[i-1]`` (sorted asins),
    user id ``u`` is ``users[u-1]`` (sorted reviewerIDs); ``sequences`` holds
    ``(user_id, item_ids, timestamps)`` in user-id order, each sorted by time, ties by file line.
    """
    asins = sorted(df["asin"].unique())
    users = sorted(df["user"].unique())
    iid = pd.Series(np.arange(1, len(asins) + 1, dtype=np.int64), index=asins)
    uid = pd.Series(np.arange(1, len(users) + 1, dtype=np.int64), index=users)
    u = uid.loc[df["user"]].to_numpy()
    i = iid.loc[df["asin"]].to_numpy()
    t = df["time"].to_numpy()
    order = np.lexsort((df["line"].to_numpy(), t, u))
    u, i, t = u[order], i[order], t[order]
    starts = np.flatnonzero(np.r_[True, u[1:] != u[:-1]]) if len(u) else np.array([], dtype=int)
    ends = np.r_[starts[1:], len(u)]
    seqs = [(int(u[a]), i[a:b].tolist(), t[a:b].tolist()) for a, b in zip(starts, ends)]
    return asins, users, seqs


# ----------------------------------------------------------------------------- the whole pipeline


def _check_out(out: Path, force: bool) -> None:
    """Refuse to replace an existing dataset unless ``force``, and anything but an earlier ``prepare`` output."""
    if out.exists() and not out.is_dir():
        raise DataError(f"{out}: exists and is not a folder")
    if out.is_dir():
        foreign = sorted(p.name for p in out.iterdir() if p.name not in OUTPUT_FILES)
        if foreign:
            raise DataError(f"{out}: not empty and not an earlier `llmrec prepare` output (found {foreign[:5]}); choose another --out")
        if any(out.iterdir()) and not force:
            raise DataError(f"{out}: a prepared dataset is already there; pass --force (force=True) to replace it, "
                            "or choose another --out")


def prepare(reviews: str | Path | None, meta: str | Path | None, out: str | Path, window: int = 11, core: int = 5,
            sample: int | None = None, seed: int = 0, domain: str = "generic", force: bool = False,
            interactions: str | Path | None = None, titles: str | Path | None = None) -> Dataset:
    """Run the whole protocol (see the module docstring) and write the dataset folder ``out``.

    The input is either ``reviews`` + ``meta`` (Amazon 2014 JSON lines) or ``interactions`` + ``titles`` (CSV
    files: ``user_id,item_id,timestamp`` and ``item_id,title``). Returns the written
    :class:`~llmrec.data.Dataset` (named after ``out``; ``notes`` = meta.json, whose ``domain`` picks the
    prompt). An existing dataset at ``out`` is replaced only with ``force``; on any error nothing is left at
    ``out`` (an earlier output there stays untouched).
    """
    amazon, csv = (reviews is not None or meta is not None), (interactions is not None or titles is not None)
    if amazon == csv or (amazon and (reviews is None or meta is None)) or (csv and (interactions is None or titles is None)):
        raise ValueError("give --reviews and --meta (Amazon 2014 JSON lines) or --interactions and --titles (CSV), "
                         "one pair")
    reviews, meta, out = Path(reviews if amazon else interactions), Path(meta if amazon else titles), Path(out)
    if window < 2:
        raise ValueError(f"window must be at least 2, got {window}")
    if core < 1:
        raise ValueError(f"core must be at least 1, got {core}")
    if sample is not None and sample <= 0:
        raise ValueError(f"sample must be positive, got {sample}")
    if domain not in DOMAIN_CHOICES:
        raise ValueError(f"domain must be one of {DOMAIN_CHOICES}, got {domain!r}")
    for p in (reviews, meta):
        if not p.is_file():
            raise DataError(f"{p}: no such file")
    _check_out(out, force)

    titles = read_titles(meta) if amazon else read_title_csv(meta)
    if not titles:
        raise DataError(f"{meta}: no item with a title (every interaction needs its item's title)")
    raw, n_raw = (read_reviews if amazon else read_interaction_csv)(reviews, keep=titles)
    kept = core_filter(raw, core)
    if kept.empty:
        raise DataError(f"{reviews}: no interactions left after keeping titled items and the {core}-core filter")
    asins, users, seqs = user_sequences(kept)
    windows = make_windows(seqs, window)
    train, valid, test = chronological_split(windows, (8, 1, 1))
    if len(valid) == 0 or len(test) == 0:
        raise DataError(f"{reviews}: only {len(windows)} windows after filtering; an 8:1:1 split needs at least 10")
    n_train_all = len(train)
    train = sample_windows(train, sample, seed)

    notes = {
        "domain": domain,
        "source": {"reviews": str(reviews), "meta": str(meta)} if amazon else
                  {"interactions": str(reviews), "titles": str(meta)},
        "params": {"window": window, "core": core, "sample": sample, "seed": seed, "split": [8, 1, 1]},
        "counts": {
            "review records": n_raw,
            "titled items in meta": len(titles),
            "reviews of titled items": len(raw),
            "reviews after core filter": len(kept),
            "users": len(users),
            "items": len(asins),
            "windows": len(windows),
            "train windows before sample": n_train_all,
            "train windows": len(train),
            "valid windows": len(valid),
            "test windows": len(test),
        },
        "ids": "items 1..N in sorted-asin order, users 1..U in sorted-reviewerID order (id_map.json.gz)",
    }
    items = {k + 1: titles[a] for k, a in enumerate(asins)}
    ds = Dataset(out.name, items, train, valid, test, domain=domain, notes=notes)

    _check_out(out, force)
    with publish_dir(out) as tmp:
        save_dataset(ds, tmp)
        id_map = {"items": {str(k + 1): a for k, a in enumerate(asins)}, "users": {str(k + 1): u for k, u in enumerate(users)}}
        atomic_write(tmp / "id_map.json.gz", gzip.compress(dumps(id_map).encode(), mtime=0))
        atomic_write(tmp / "meta.json", (dumps(notes, indent=2) + "\n").encode())
        check_folder(tmp).raise_if_problems()  # what train will read: refused here rather than there
    return ds


# ----------------------------------------------------------------------------- command line


def add_prepare_args(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Add the ``prepare`` options to ``parser`` (for mounting as a subcommand)."""
    parser.add_argument("--reviews", help="Amazon 2014 reviews file (.json or .json.gz, one record per line)")
    parser.add_argument("--meta", help="Amazon 2014 metadata file (.json or .json.gz; JSON or Python-literal lines)")
    parser.add_argument("--interactions", help="instead of --reviews: a CSV with columns user_id,item_id,timestamp")
    parser.add_argument("--titles", help="instead of --meta: a CSV with columns item_id,title")
    parser.add_argument("--out", required=True, help="output dataset folder (load it with load_dataset(OUT))")
    parser.add_argument("--sample", type=int, default=None, help="keep a seeded random sample of N training windows")
    parser.add_argument("--seed", type=int, default=0, help="seed of --sample (default 0)")
    parser.add_argument("--window", type=int, default=11, help="window length: history + target (default 11)")
    parser.add_argument("--core", type=int, default=5, help="k of the iterative k-core filter (default 5)")
    parser.add_argument("--domain", choices=DOMAIN_CHOICES, default="generic",
                        help="the prompt's wording, written to meta.json (default generic)")
    parser.add_argument("--force", action="store_true", help="replace a dataset already prepared at --out")
    return parser


def run_prepare(args: argparse.Namespace) -> int:
    """Run :func:`prepare` from parsed arguments; print a summary. Returns an exit status."""
    try:
        ds = prepare(args.reviews, args.meta, args.out, window=args.window, core=args.core,
                     sample=args.sample, seed=args.seed, domain=args.domain, force=args.force,
                     interactions=args.interactions, titles=args.titles)
    except (DataError, ValueError) as e:
        print(f"llmrec prepare: error: {e}", file=sys.stderr)
        return 2
    for key, value in ds.notes["counts"].items():
        print(f"{key:>28}: {value:,}")
    print(f"written to {args.out}")
    return 0


def main_prepare(argv: Sequence[str] | None = None) -> int:
    """``llmrec prepare`` as a stand-alone entry point."""
    parser = add_prepare_args(argparse.ArgumentParser(prog="llmrec prepare", description=__doc__.split("\n")[0]))
    return run_prepare(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main_prepare())
