"""Datasets: the shipped Amazon Toy and Books windows, a synthetic catalogue, and their validation.

Every dataset is a catalogue (item id -> title) plus three frames of *windows*:
one row per (history, next item) pair with columns ``user_id``, ``history``
(list of item ids, oldest first), ``target`` (the item to predict) and
``timestamp`` (time of the target interaction).

On disk (``data/<name>/``): ``items.json.gz`` maps item id (string) to title and
``{train,valid,test}.csv.gz`` hold ``user_id,item_ids,timestamp`` where
``item_ids`` lists history then target, separated by spaces.
"""

from __future__ import annotations

import gzip
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from ..core.io import atomic_write
from ..core.samplers import sample_rows

SPLITS = ("train", "valid", "test")


class DataError(ValueError):
    """Malformed input data; the message names the file, row and field."""


@dataclass
class Dataset:
    name: str
    items: dict[int, str]
    train: pd.DataFrame
    valid: pd.DataFrame
    test: pd.DataFrame
    domain: str = "generic"
    notes: dict = field(default_factory=dict)

    def split(self, name: str) -> pd.DataFrame:
        if name not in SPLITS:
            raise ValueError(f"unknown split {name!r}; choose one of {SPLITS}")
        return getattr(self, name)

    @property
    def item_ids(self) -> list[int]:
        return sorted(self.items)

    def summary(self) -> dict:
        return {
            "dataset": self.name,
            "items": len(self.items),
            "distinct titles": len(set(self.items.values())),
            **{f"{s} windows": len(self.split(s)) for s in SPLITS},
        }


# ----------------------------------------------------------------------------- reading


def _open_text(path: Path):
    return gzip.open(path, "rt", encoding="utf-8") if path.suffix == ".gz" else open(path, encoding="utf-8")


def parse_id_list(text: str, *, where: str) -> list[int]:
    """Parse ``"[1, 2, 3]"`` or ``"1 2 3"`` into ints; ``where`` names file/row/field on error."""
    s = str(text).strip()
    if s.startswith("[") and s.endswith("]"):
        s = s[1:-1]
    parts = s.replace(",", " ").split()
    try:
        return [int(p) for p in parts]
    except ValueError:
        raise DataError(f"{where}: item ids must be integers, got {text!r}") from None


def read_items(path: str | Path) -> dict[int, str]:
    """Read an id -> title JSON (plain or gzip); ids must be integers and titles non-empty."""
    path = Path(path)
    try:
        with _open_text(path) as f:
            raw = json.load(f)
    except (OSError, json.JSONDecodeError) as e:
        raise DataError(f"{path}: cannot read item titles ({e})") from e
    items: dict[int, str] = {}
    for key, title in raw.items():
        try:
            iid = int(key)
        except ValueError:
            raise DataError(f"{path}: item id {key!r} is not an integer") from None
        if not isinstance(title, str) or not title.strip():
            raise DataError(f"{path}: item {iid} has an empty title")
        items[iid] = title
    return items


def read_windows(path: str | Path, items: dict[int, str] | None = None) -> pd.DataFrame:
    """Read a window CSV (``user_id,item_ids,timestamp``; extra columns ignored).

    The last id of ``item_ids`` is the target, the others the history. Errors name
    the file, the 1-based line number and the field.
    """
    path = Path(path)
    try:
        raw = pd.read_csv(path, dtype=str, keep_default_na=False)
    except (OSError, pd.errors.ParserError, UnicodeDecodeError) as e:
        raise DataError(f"{path}: cannot parse CSV ({e})") from e
    missing = {"user_id", "item_ids", "timestamp"} - set(raw.columns)
    if missing:
        raise DataError(f"{path}: missing column(s) {sorted(missing)}; found {list(raw.columns)}")
    users, hists, targets, stamps = [], [], [], []
    for i, (u, ids, ts) in enumerate(zip(raw["user_id"], raw["item_ids"], raw["timestamp"])):
        line = i + 2  # header is line 1
        where = f"{path}, line {line}"
        seq = parse_id_list(ids, where=f"{where}, field item_ids")
        if len(seq) < 2:
            raise DataError(f"{where}, field item_ids: a window needs a history of at least 1 item and a target, got {ids!r}")
        if items is not None:
            for iid in seq:
                if iid not in items:
                    raise DataError(f"{where}, field item_ids: item {iid} has no title in the catalogue")
        try:
            users.append(int(u))
            stamps.append(int(float(ts)))
        except ValueError:
            field_name = "user_id" if not _is_int(u) else "timestamp"
            raise DataError(f"{where}, field {field_name}: not a number ({u if field_name == 'user_id' else ts!r})") from None
        hists.append(seq[:-1])
        targets.append(seq[-1])
    return pd.DataFrame(
        {
            "user_id": np.asarray(users, dtype=np.int64),
            "history": hists,
            "target": np.asarray(targets, dtype=np.int64),
            "timestamp": np.asarray(stamps, dtype=np.int64),
        }
    )


def _is_int(s: str) -> bool:
    try:
        int(s)
        return True
    except ValueError:
        return False


# ----------------------------------------------------------------------------- writing


def windows_to_csv(df: pd.DataFrame) -> bytes:
    out = pd.DataFrame(
        {
            "user_id": df["user_id"].astype(np.int64),
            "item_ids": [" ".join(map(str, list(h) + [t])) for h, t in zip(df["history"], df["target"])],
            "timestamp": df["timestamp"].astype(np.int64),
        }
    )
    return out.to_csv(index=False).encode()


def save_dataset(ds: Dataset, directory: str | Path) -> Path:
    """Write a dataset in the canonical compact form (atomic per file; gzip with fixed mtime)."""
    directory = Path(directory)
    payload = json.dumps({str(k): ds.items[k] for k in sorted(ds.items)}, ensure_ascii=False, indent=0)
    atomic_write(directory / "items.json.gz", gzip.compress(payload.encode(), mtime=0))
    for s in SPLITS:
        atomic_write(directory / f"{s}.csv.gz", gzip.compress(windows_to_csv(ds.split(s)), mtime=0))
    return directory


def read_dataset_dir(directory: str | Path, name: str | None = None, domain: str = "generic") -> Dataset:
    directory = Path(directory)
    if not directory.is_dir():
        raise DataError(f"{directory}: no such dataset folder")

    def find(stem: str) -> Path:
        for cand in (directory / f"{stem}.gz", directory / stem):
            if cand.exists():
                return cand
        raise DataError(f"{directory}: missing {stem}(.gz)")

    items = read_items(find("items.json"))
    frames = {s: read_windows(find(f"{s}.csv"), items) for s in SPLITS}
    meta_path = directory / "meta.json"
    notes = json.loads(meta_path.read_text()) if meta_path.exists() else {}
    return Dataset(name or directory.name, items, frames["train"], frames["valid"], frames["test"],
                   domain=notes.get("domain", domain), notes=notes)


# ----------------------------------------------------------------------------- samples and splits


def sample_windows(df: pd.DataFrame, n: int | None, seed: int = 0) -> pd.DataFrame:
    """A reproducible sample of ``n`` windows (all of them when ``n`` is None or too large), in original order."""
    if n is None or n >= len(df):
        return df
    return df.iloc[sample_rows(len(df), n, seed)].reset_index(drop=True)


def chronological_cut(df: pd.DataFrame, n_last: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Split off the ``n_last`` latest windows (stable sort by timestamp): (earlier, latest)."""
    order = np.argsort(df["timestamp"].to_numpy(), kind="stable")
    early, late = order[: len(df) - n_last], order[len(df) - n_last:]
    return df.iloc[np.sort(early)].reset_index(drop=True), df.iloc[np.sort(late)].reset_index(drop=True)


def make_windows(sequences: Iterable[tuple[int, Sequence[int], Sequence[int]]], window: int = 11) -> pd.DataFrame:
    """One row per window from ``(user_id, items, timestamps)`` triples (each oldest first).

    A sequence longer than ``window`` gives ``len - window + 1`` windows (step 1);
    a sequence of 2..``window`` items gives one window of the whole sequence; shorter
    sequences give none. The last item of a window is the target, its timestamp the
    window's. Rows come in input order, then position order.
    """
    if window < 2:
        raise ValueError(f"window must be at least 2 (1 history item + target), got {window}")
    users, hists, targets, stamps = [], [], [], []
    for user, items, times in sequences:
        if len(items) != len(times):
            raise ValueError(f"user {user}: {len(items)} items but {len(times)} timestamps")
        if len(items) < 2:
            continue
        for end in range(min(window, len(items)), len(items) + 1):
            users.append(user)
            hists.append([int(i) for i in items[max(0, end - window): end - 1]])
            targets.append(items[end - 1])
            stamps.append(times[end - 1])
    return pd.DataFrame(
        {
            "user_id": np.asarray(users, dtype=np.int64),
            "history": hists,
            "target": np.asarray(targets, dtype=np.int64),
            "timestamp": np.asarray(stamps, dtype=np.int64),
        }
    )


def chronological_split(windows: pd.DataFrame, ratios: Sequence[int] = (8, 1, 1)) -> tuple[pd.DataFrame, ...]:
    """Stable-sort windows by timestamp and cut them into consecutive parts by ``ratios``.

    With ``n`` windows and ratios ``(8, 1, 1)`` the cuts are at ``n*8//10`` and
    ``n*9//10`` (BIGRec's ``int(n*0.8)``, ``int(n*0.9)``), so train gets the earliest windows
    and test the latest; ties keep their input order.
    """
    if not ratios or any(r < 0 for r in ratios) or sum(ratios) <= 0:
        raise ValueError(f"ratios must be non-negative with a positive sum, got {ratios}")
    order = np.argsort(windows["timestamp"].to_numpy(), kind="stable")
    ordered = windows.iloc[order].reset_index(drop=True)
    n, total = len(ordered), sum(ratios)
    cuts = [0] + [n * sum(ratios[: k + 1]) // total for k in range(len(ratios))]
    return tuple(ordered.iloc[a:b].reset_index(drop=True) for a, b in zip(cuts[:-1], cuts[1:]))


# ----------------------------------------------------------------------------- reading raw files
