"""The datasets by name: the shipped Toy and Books, the synthetic catalogue, or a prepared folder."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from ..core.io import repo_root
from .check import Report, check_folder, read_dataset_dir
from .dataset import Dataset
from .synthetic import make_synthetic

DATASETS = ("toy", "books", "synthetic")
DOMAINS = {"toy": "toys", "books": "books", "synthetic": "generic"}


def data_root() -> Path:
    """The shipped ``data/`` folder (override with ``LLMREC_DATA``)."""
    env = os.environ.get("LLMREC_DATA")
    if env:
        return Path(env)
    return repo_root() / "data"


_CACHE: dict[tuple, Dataset] = {}
_FINGERPRINTS: dict[tuple, str] = {}


def _folder(name: str, root) -> Path | None:
    folder = Path(root or data_root()) / name if name in ("toy", "books") else Path(name)
    return folder if name != "synthetic" and folder.is_dir() else None


def _stamp(folder: Path | None) -> tuple:
    return tuple(sorted((p.name, p.stat().st_mtime_ns, p.stat().st_size) for p in folder.iterdir())) if folder else ()


def dataset_fingerprint(name: str, root: str | Path | None = None, **kwargs) -> str:
    """A short hash of a dataset's content (its files' bytes; for ``synthetic`` its options): part of every
    run's identity, so a dataset re-prepared in the same folder never meets the old runs in the cache."""
    folder = _folder(name, root)
    key = (name, str(root), tuple(sorted(kwargs.items())), _stamp(folder))
    if key not in _FINGERPRINTS:
        h = hashlib.sha1()
        if folder is None:
            h.update(f"synthetic {sorted(kwargs.items())}".encode())
        else:
            for p in sorted(folder.iterdir()):
                if p.is_file() and not p.name.startswith("."):
                    h.update(p.name.encode() + b"\0" + p.read_bytes())
        _FINGERPRINTS[key] = h.hexdigest()[:16]
    return _FINGERPRINTS[key]


def check_dataset(name: str, root: str | Path | None = None, tokens: bool = True, limit: int | None = None) -> Report:
    """:func:`~llmrec.data.check.check_folder` of ``"toy"``, ``"books"`` (in ``root``, default the shipped
    ``data/``) or a folder: what ``llmrec check`` prints."""
    if name == "synthetic":
        raise ValueError("the synthetic catalogue is generated in memory: there is no folder to check")
    folder = Path(root or data_root()) / name if name in ("toy", "books") else Path(name)
    return check_folder(folder, tokens=tokens, domain=DOMAINS.get(name, "generic"),
                        **({"limit": limit} if limit else {}))


def load_dataset(name: str, root: str | Path | None = None, **kwargs) -> Dataset:
    """Load ``"toy"``, ``"books"``, ``"synthetic"`` (kwargs go to :func:`make_synthetic`) or a folder.

    ``root`` overrides the shipped ``data/`` folder. A folder is read by :func:`~llmrec.data.check.check_folder`:
    any problem is a :class:`~llmrec.data.DataError` naming the file, line and field. Results are cached in
    memory while the folder's files are unchanged (frames are shared: copy before mutating).
    """
    key = (name, str(root), tuple(sorted(kwargs.items())), _stamp(_folder(name, root)))  # re-written: read again
    if key in _CACHE:
        return _CACHE[key]
    if name == "synthetic":
        ds = make_synthetic(**kwargs)
    elif name in ("toy", "books"):
        if kwargs:
            raise TypeError(f"load_dataset({name!r}) takes no options, got {sorted(kwargs)}")
        ds = read_dataset_dir(Path(root or data_root()) / name, name=name, domain=DOMAINS[name])
    elif Path(name).is_dir():
        ds = read_dataset_dir(name, domain=kwargs.get("domain", "generic"))
    else:
        raise ValueError(f"unknown dataset {name!r}: choose one of {DATASETS} or give a folder made by `llmrec prepare`")
    _CACHE[key] = ds
    return ds


