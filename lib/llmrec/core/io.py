"""Files: where things live, and writing them so that nothing is ever half-written.

Every file of the package is written by :func:`atomic_write` (temporary file +
rename) and every folder by :func:`publish_dir` (temporary sibling folder +
rename), so an interrupted process leaves either the old content or the new.
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path

import numpy as np


def repo_root() -> Path:
    """The repository checkout that holds ``lib/llmrec`` (``data/``, ``figures/``, ``runs/`` live there)."""
    return Path(__file__).resolve().parents[3]


def cache_root() -> Path:
    """``$LLMREC_CACHE`` or ``$XDG_CACHE_HOME/llmrec`` (default ``~/.cache/llmrec``): converted models, frozen states."""
    env = os.environ.get("LLMREC_CACHE")
    if env:
        return Path(env)
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "llmrec"


def usable_cpus(cpu_max: str | Path = "/sys/fs/cgroup/cpu.max") -> int:
    """The CPUs this process may use: those it is pinned to, capped by a cgroup v2 CPU quota (``cpu.max``:
    ``"<quota> <period>"``, rounded up; ``"max ..."``: none). ``os.cpu_count()`` counts the host's, which in a
    container can be far more than its quota: as many torch threads as that would spin against each other."""
    n = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    try:
        quota, period = Path(cpu_max).read_text().split()[:2]
        if quota != "max":
            n = min(n, -(-int(quota) // int(period)))
    except (OSError, ValueError):
        pass
    return max(1, n)


def atomic_write(path: str | Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file + rename: never half-written."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


@contextmanager
def publish_dir(path: str | Path):
    """Build a folder in a temporary sibling (yielded); on success it replaces ``path`` in one rename.

    An earlier ``path`` is moved aside first and deleted only after the new
    folder is in place; on any error the temporary folder is removed and
    ``path`` is left as it was.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}.tmp-"))
    try:
        yield tmp
        tmp.chmod(0o755)
        if not path.exists():
            os.replace(tmp, path)
            return
        old = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}.old-"))
        old.rmdir()
        path.rename(old)
        try:
            tmp.rename(path)
        except BaseException:
            old.rename(path)
            raise
        shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def json_default(o):
    """JSON for numpy scalars and arrays (anything else: its ``str``)."""
    if isinstance(o, np.integer):
        return int(o)
    if isinstance(o, np.floating):
        return float(o)
    if isinstance(o, np.ndarray):
        return o.tolist()
    return str(o)


def _non_finite(obj, where: str = "") -> tuple[str, float] | None:
    """The first NaN or infinity in ``obj`` (dicts, lists, tuples, numpy arrays): ``(where, value)``, else None."""
    if isinstance(obj, dict):
        items = obj.items()
    elif isinstance(obj, (list, tuple, np.ndarray)):
        items = enumerate(obj)
    else:
        return (where, obj) if isinstance(obj, (float, np.floating)) and not math.isfinite(obj) else None
    for key, value in items:
        found = _non_finite(value, f"{where}[{key!r}]")
        if found:
            return found
    return None


def dumps(obj, where: str | Path = "", **kwargs) -> str:
    """Strict JSON (``json.dumps`` with :func:`json_default`): NaN and infinity are refused, not written as the
    ``NaN`` / ``Infinity`` that other parsers reject; the error names ``where`` (a file) and the key that holds
    one."""
    try:
        return json.dumps(obj, allow_nan=False, default=json_default, **kwargs)
    except ValueError:
        found = _non_finite(obj)
        if found is None:
            raise
        key, value = found
        name = "NaN" if math.isnan(value) else "Infinity" if value > 0 else "-Infinity"
        raise ValueError(f"{where or 'JSON'}: refusing to write {name} at {key or 'the top level'} "
                         "(JSON has no NaN or infinity)") from None


def write_json(path: str | Path, obj) -> None:
    """``obj`` as strict JSON (:func:`dumps`), written atomically."""
    atomic_write(path, (dumps(obj, where=path, indent=1, sort_keys=True) + "\n").encode())


def read_json(path: str | Path):
    return json.loads(Path(path).read_text())


def save_torch(path: str | Path, obj) -> None:
    """``torch.save`` through :func:`atomic_write`."""
    import torch  # here, not at the top: the data layer and the command line start without torch

    buf = io.BytesIO()
    torch.save(obj, buf)
    atomic_write(path, buf.getvalue())


_DIGESTS: dict[tuple, str] = {}


def file_digest(path: str | Path) -> str:
    """The sha256 of a file's bytes, read once per process while its path, size and modification time stay the
    same (SmolLM2-135M's 538 MB of weights: 0.7 s on the 2-core VM)."""
    p = Path(path).resolve()
    st = p.stat()
    key = (str(p), st.st_size, st.st_mtime_ns)
    if key not in _DIGESTS:
        with open(p, "rb") as f:
            _DIGESTS[key] = hashlib.file_digest(f, "sha256").hexdigest()
    return _DIGESTS[key]
