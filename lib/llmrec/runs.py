"""Run directories and the run cache shared by the CLI, the notebooks and the tests.

A run directory holds:

* ``config.json``: the full configuration; its hash names the directory, so an
  identical configuration finds the finished run again (the run cache);
* ``log.jsonl``: one JSON object per logged training step / epoch;
* ``checkpoints/``: per-epoch state for exact resume (model-specific);
* ``done.json``: written last when training finished (best epoch, seconds);
* ``metrics.json``: evaluations keyed ``"<split>/<mode>"``, each with the
  summary metrics and the per-user ``user_ids`` and 0-based ``ranks``.

Every file is written atomically.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

from .data import atomic_write


def runs_root() -> Path:
    """``$LLMREC_RUNS`` or ``runs/`` at the repository root."""
    env = os.environ.get("LLMREC_RUNS")
    return Path(env) if env else Path(__file__).resolve().parents[2] / "runs"


def config_key(config: dict) -> str:
    blob = json.dumps(config, sort_keys=True, default=str).encode()
    return hashlib.sha1(blob).hexdigest()[:12]


def run_dir_for(config: dict, root: str | Path | None = None) -> Path:
    name = "-".join(str(config.get(k, "x")) for k in ("dataset", "model", "loss"))
    return Path(root or runs_root()) / f"{name}-{config_key(config)}".replace("/", "_")


def write_json(path: str | Path, obj) -> None:
    atomic_write(path, (json.dumps(obj, indent=1, sort_keys=True, default=_default) + "\n").encode())


def read_json(path: str | Path):
    return json.loads(Path(path).read_text())


def _default(o):
    import numpy as np

    if isinstance(o, np.integer):
        return int(o)
    if isinstance(o, np.floating):
        return float(o)
    if isinstance(o, np.ndarray):
        return o.tolist()
    return str(o)


def append_log(run_dir: str | Path, record: dict) -> None:
    """Append one JSON line to ``log.jsonl`` (a line is written whole or not at all)."""
    with open(Path(run_dir) / "log.jsonl", "a") as f:
        f.write(json.dumps(record, default=_default) + "\n")


def read_log(run_dir: str | Path) -> list[dict]:
    p = Path(run_dir) / "log.jsonl"
    if not p.exists():
        return []
    return [json.loads(line) for line in p.read_text().splitlines() if line.strip()]


def is_done(run_dir: str | Path) -> bool:
    return (Path(run_dir) / "done.json").exists()


def save_metrics(run_dir: str | Path, key: str, entry: dict) -> None:
    p = Path(run_dir) / "metrics.json"
    data = read_json(p) if p.exists() else {}
    data[key] = entry
    write_json(p, data)


def load_metrics(run_dir: str | Path) -> dict:
    p = Path(run_dir) / "metrics.json"
    return read_json(p) if p.exists() else {}
