"""Datasets: the shipped Amazon Toy and Books windows, a synthetic catalogue, and their validation.

Every dataset is a catalogue (item id -> title) plus three frames of *windows*:
one row per (history, next item) pair with columns ``user_id``, ``history``
(list of item ids, oldest first), ``target`` (the item to predict) and
``timestamp`` (time of the target interaction).

On disk (``data/<name>/``): ``items.json.gz`` maps item id (string) to title and
``{train,valid,test}.csv.gz`` hold ``user_id,item_ids,timestamp`` where
``item_ids`` lists history then target, separated by spaces. :mod:`.check` reads
such a folder (every problem at once, or the :class:`Dataset`).
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

SPLITS = ("train", "valid", "test")
DOMAIN_CHOICES = ("toys", "books", "movies", "generic")  # the prompt templates of llmrec.llm.prompts.TEMPLATES


class DataError(ValueError):
    """Malformed input data; the message names the file, line and field of the first problem, ``problems`` holds
    every one found (:class:`llmrec.data.check.Problem`, up to the reader's limit)."""

    def __init__(self, message: str, problems: Sequence = ()):
        super().__init__(message)
        self.problems = list(problems)


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


# ----------------------------------------------------------------------------- samples and splits


def sample_windows(df: pd.DataFrame, n: int | None, seed: int = 0) -> pd.DataFrame:
    """A reproducible sample of ``n`` windows (all of them when ``n`` is None or too large), in original order."""
    from ..core.samplers import sample_rows  # here: samplers imports torch, which reading a dataset never needs

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


def user_subset(ds: Dataset, train_windows: int, seed: int = 0, name: str | None = None) -> Dataset:
    """A smaller dataset of whole users: ``ds``'s users in a seeded random order, taken until their training
    windows reach ``train_windows``, each with all of its windows in every split, and the items those windows name,
    numbered 1..N in their old order (a reproducible stand-in for a reader's dataset of that size: ``bench/transfer_cost.py``)."""
    if train_windows <= 0:
        raise ValueError(f"train_windows must be > 0, got {train_windows}")
    counts = ds.train.groupby("user_id").size()
    order = np.random.default_rng(seed).permutation(counts.index.to_numpy())
    reach = np.searchsorted(np.cumsum(counts.loc[order].to_numpy()), train_windows) + 1
    users = set(order[:reach].tolist())
    frames = {s: ds.split(s)[ds.split(s)["user_id"].isin(users)].reset_index(drop=True) for s in SPLITS}
    named = sorted({int(i) for f in frames.values() for h, t in zip(f["history"], f["target"]) for i in (*h, t)})
    new_id = {old: new for new, old in enumerate(named, start=1)}  # ids 1..N, as every folder has them
    for f in frames.values():
        f["history"] = [[new_id[int(i)] for i in h] for h in f["history"]]
        f["target"] = [new_id[int(i)] for i in f["target"]]
    return Dataset(name or f"{ds.name}-{len(frames['train'])}", {new_id[i]: ds.items[i] for i in named},
                   frames["train"], frames["valid"], frames["test"], ds.domain)
