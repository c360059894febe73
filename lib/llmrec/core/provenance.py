"""What made a result: the code's commit, the versions of the libraries that shape a number, the machine.

Every results record carries :func:`provenance` (:mod:`llmrec.experiments.published`; the record's
``provenance.versions``), every run directory the :func:`versions` of each process that trained it
(``versions.json``, :func:`llmrec.core.rundir.open_run`; a record holds them as ``training.facts.versions``) and
every chapter that ``make figures`` executed the same in its notebook metadata (:mod:`llmrec.chapters`), so
that a changed number can be told from a changed library. Nothing runs at import: ``git`` is asked on the first
call (and remembered for the process, so that a long batch records the code it started with even if the
checkout moves on meanwhile).

The lock (``requirements/*.txt``, docs/reproducibility.md) names the exact versions ``make install`` installs;
:func:`lock_drift` names every installed version that differs from it.
"""

from __future__ import annotations

import functools
import os
import platform
import re
import subprocess
import time
from importlib import metadata
from pathlib import Path

from .io import repo_root

# The distributions whose version can change a number of the study (training, decoding, metrics, tables).
LIBRARIES = ("torch", "transformers", "tokenizers", "peft", "accelerate", "safetensors", "gguf", "marisa-trie",
             "numpy", "scipy", "pandas")


def installed(name: str) -> str | None:
    """The installed version of distribution ``name`` (any spelling: ``marisa_trie``, ``Marisa-Trie``), else None."""
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


@functools.lru_cache(maxsize=None)
def commit() -> str:
    """The checkout's commit, ``+dirty`` when the code differs from it (uncommitted changes to ``lib/``,
    ``notebooks/``, ``pyproject.toml`` or the lock), ``unknown`` outside a git checkout; asked once per process."""
    def git(*args):
        try:
            return subprocess.run(["git", *args], cwd=repo_root(), capture_output=True, text=True,
                                  timeout=10).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            return ""

    head = git("rev-parse", "HEAD") or "unknown"
    if git("status", "--porcelain", "--untracked-files=no", "--", "lib", "notebooks", "pyproject.toml", "requirements"):
        head += "+dirty"
    return head


def versions(extra: tuple[str, ...] = ()) -> dict[str, str]:
    """``{"python": …, "commit": …, <library>: version}`` for those of :data:`LIBRARIES` and of the distributions
    ``extra`` that are installed."""
    found = {name: installed(name) for name in (*LIBRARIES, *extra)}
    return {"python": platform.python_version(), "commit": commit(), **{k: v for k, v in found.items() if v}}


def machine() -> str:
    import torch

    return (f"{platform.machine()}, {os.cpu_count()} CPU cores, {platform.system()} "
            f"(no GPU: {not torch.cuda.is_available()})")


def provenance() -> dict:
    """The fields every results record carries: ``commit``, ``date``, ``machine``, ``torch`` (as the records
    before versions had it) and ``versions`` (:func:`versions`)."""
    v = versions()
    return {"commit": v["commit"], "date": time.strftime("%Y-%m-%d"), "torch": v["torch"], "machine": machine(),
            "versions": v}


# ----------------------------------------------------------------------------- the lock


def normalize(name: str) -> str:
    """A distribution name as PEP 503 compares them: ``Jupyter_Server`` -> ``jupyter-server``."""
    return re.sub(r"[-_.]+", "-", name).lower()


def locked(path: str | Path) -> dict[str, str]:
    """``{name: version}`` of a lock file's ``name==version`` lines (pip-compile's format; hashes, comments and
    requirements whose environment marker does not hold here are left out)."""
    from packaging.requirements import Requirement

    out = {}
    for number, line in enumerate(Path(path).read_text().splitlines(), 1):
        if not line or line[0] in " #-":
            continue
        req = Requirement(line.rstrip(" \\"))
        pins = [s.version for s in req.specifier if s.operator == "=="]
        if len(pins) != 1:
            raise ValueError(f"{path}, line {number}: {line.strip()!r} is not pinned with one ==")
        if req.marker is None or req.marker.evaluate():
            out[normalize(req.name)] = pins[0]
    return out


def lock_drift(paths, required: bool = True) -> list[str]:
    """One line per locked distribution whose installed version differs from the lock files ``paths``
    (``name: installed X, locked Y``); with ``required``, a locked distribution not installed is one too."""
    lines = []
    for path in paths:
        for name, version in locked(path).items():
            have = installed(name)
            if have is None and not required:
                continue
            if have != version:
                lines.append(f"{name}: installed {have or 'nothing'}, locked {version} ({Path(path).name})")
    return sorted(set(lines))


def python_of_lock(path: str | Path) -> str:
    """The Python version (``3.11``) a pip-compile lock was compiled with, from its header."""
    found = re.search(r"autogenerated by pip-compile with Python (\d+\.\d+)", Path(path).read_text())
    if not found:
        raise ValueError(f"{path}: no pip-compile header naming the Python version")
    return found.group(1)

