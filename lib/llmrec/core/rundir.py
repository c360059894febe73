"""Run directories: the one layout, cache and checkpoint/resume path of every model family.

A run directory holds:

* ``config.json``: the full configuration, with ``family`` (``llm``,
  ``seqrec``), and ``identity.json``: the dataset's content hash, the number
  of processes and the global batch; their hash names the directory, so an
  identical run finds the finished one again (the run cache) and nothing else
  does;
* ``versions.json``: the library versions and commit (:func:`llmrec.core.provenance.versions`) of each
  process that trained the run, oldest first (one entry unless a run was resumed under other versions);
* ``log.jsonl``: one JSON object per logged training step / epoch;
* ``checkpoints/epoch-N/`` (classic models: after N finished epochs) or
  ``checkpoints/step-N/`` (the LLM: after N training steps, at every epoch end
  and every ``checkpoint_every`` steps inside an epoch): the latest checkpoint
  (``checkpoint.pt``: the trainable weights, optimiser and RNG states;
  ``state.json``: the loop state), from which an interrupted run resumes exactly;
* ``done.json``: written last when training finished (best epoch, seconds);
* ``metrics.json``: evaluations keyed ``"<split>/<mode>/n<users>[/k<list>]"``,
  each with the summary metrics and the per-user ``user_ids`` and 0-based
  ``ranks`` (see :func:`llmrec.core.recommender.evaluate`).

Every file and folder is written atomically (:mod:`llmrec.core.io`).
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import shutil
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch

from .io import atomic_write, json_default, publish_dir, read_json, repo_root, write_json
from .provenance import versions


_COMMITTED: Path | None = None  # set by use_committed: the run cache is a folder of committed results, read only


def runs_root() -> Path:
    """The run cache: the committed results folder :func:`use_committed` named, else ``$LLMREC_RUNS``, else
    ``runs/`` at the repository root."""
    if _COMMITTED is not None:
        return _COMMITTED
    env = os.environ.get("LLMREC_RUNS")
    return Path(env) if env else repo_root() / "runs"


def use_committed(folder: str | Path | None) -> None:
    """Read finished runs from ``folder`` (committed results: each run's config, log, ``done.json`` and
    ``metrics.json``, without its weights) instead of the run cache, for the rest of the process; nothing is
    trained or evaluated there (:func:`read_only`): a run or evaluation not in it is an error that names it.
    ``None`` goes back to the run cache."""
    global _COMMITTED
    if folder is not None and not Path(folder).is_dir():
        raise FileNotFoundError(f"no committed results folder {folder}")
    _COMMITTED = None if folder is None else Path(folder)


def read_only() -> bool:
    """True while the run cache is a committed results folder (:func:`use_committed`)."""
    return _COMMITTED is not None


def config_key(config: dict) -> str:
    blob = json.dumps(config, sort_keys=True, default=str).encode()
    return hashlib.sha1(blob).hexdigest()[:12]


def run_dir_for(config: dict, identity: dict | None = None, root: str | Path | None = None) -> Path:
    """The run cache's folder of a configuration: named by dataset, model and loss, keyed by the hash of the
    configuration and of the run's ``identity`` (what changes its result besides the options: the dataset's
    content, the number of processes and the global batch)."""
    name = "-".join(str(config.get(k, "x")) for k in ("dataset", "model", "loss"))
    key = config_key({**config, "identity": identity} if identity else config)
    return Path(root or runs_root()) / f"{name}-{key}".replace("/", "_")


def open_run(run_dir: str | Path, config: dict, identity: dict | None = None) -> bool:
    """Write (or check) ``config.json`` and ``identity.json``; True when this run is already finished (the cache).
    A run that is (re)started records its versions (:func:`record_versions`).

    A folder that holds another configuration or another identity (other
    data, another number of processes) is refused, except that ``epochs`` may
    change: the run is then continued (or cut) with the new budget.
    """
    run_dir = Path(run_dir)
    config = json.loads(json.dumps(config, default=json_default))  # as stored: tuples become lists
    path, ipath = run_dir / "config.json", run_dir / "identity.json"
    if read_only() and not (path.exists() and read_json(path) == config and is_done(run_dir)):
        raise FileNotFoundError(f"run {run_dir.name} is not among the committed results in {run_dir.parent} "
                                f"(nothing is trained in results mode); its configuration: {config}")
    if identity is not None and ipath.exists() and read_json(ipath) != identity:
        raise ValueError(f"{run_dir} holds a run of other data or another process count: {read_json(ipath)} "
                         f"here, {identity} now")
    if path.exists():
        old = read_json(path)
        if old == config:
            if is_done(run_dir):
                return True
            record_versions(run_dir)  # resumed
            return False
        differ = {k for k in set(old) | set(config) if old.get(k) != config.get(k)}
        if differ != {"epochs"}:
            raise ValueError(f"{run_dir} holds a run with a different configuration (keys {sorted(differ)}); "
                             "only 'epochs' may change when a run is continued")
        (run_dir / "done.json").unlink(missing_ok=True)
    run_dir.mkdir(parents=True, exist_ok=True)
    write_json(path, config)
    if identity is not None:
        write_json(ipath, identity)
    record_versions(run_dir)
    return False


def record_versions(run_dir: str | Path) -> None:
    """Add this process's :func:`~llmrec.core.provenance.versions` to the run's ``versions.json`` unless they are
    its last entry (a run trained, or resumed, under these versions says so)."""
    path = Path(run_dir) / "versions.json"
    seen = read_json(path) if path.exists() else []
    now = json.loads(json.dumps(versions()))
    if not seen or seen[-1] != now:
        write_json(path, [*seen, now])


@contextmanager
def attempt(run_dir: str | Path):
    """Around a training attempt: on an error ``failed.json`` records it (the run is never taken as done:
    only ``done.json`` says that) and the error goes on; a later successful attempt removes the mark."""
    path = Path(run_dir) / "failed.json"
    try:
        yield
    except BaseException as e:
        write_json(path, {"error": f"{type(e).__name__}: {e}".strip()})
        raise
    path.unlink(missing_ok=True)


def append_log(run_dir: str | Path, record: dict) -> None:
    """Append one JSON line to ``log.jsonl`` (a line is written whole or not at all)."""
    with open(Path(run_dir) / "log.jsonl", "a") as f:
        f.write(json.dumps(record, default=json_default) + "\n")


def read_log(run_dir: str | Path) -> list[dict]:
    p = Path(run_dir) / "log.jsonl"
    if not p.exists():
        return []
    return [json.loads(line) for line in p.read_text().splitlines() if line.strip()]


def truncate_log(run_dir: str | Path, keep) -> None:
    """Keep the log records for which ``keep(record)`` holds (those written before the checkpoint a run resumes
    from): a resumed run's log holds only the steps of the attempt that survived."""
    kept = [r for r in read_log(run_dir) if keep(r)]
    atomic_write(Path(run_dir) / "log.jsonl", "".join(json.dumps(r, default=json_default) + "\n" for r in kept).encode())


# a run without its weights
RECORD = ("config.json", "identity.json", "versions.json", "done.json", "metrics.json", "log.jsonl")


def publish_record(run_dir: str | Path, dest: str | Path, extra: dict[str, dict]) -> Path:
    """Publish a finished run's :data:`RECORD` files (what :func:`use_committed` reads back) and the JSON files of
    ``extra`` ({name: content}) as the folder ``dest``, in one atomic step; never its weights or checkpoints."""
    run_dir = Path(run_dir)
    with publish_dir(dest) as tmp:
        for f in RECORD:
            if (run_dir / f).exists():
                shutil.copy2(run_dir / f, tmp / f)
        for name, content in extra.items():
            write_json(tmp / name, content)
    return Path(dest)


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


# ----------------------------------------------------------------------------- checkpoints


def rng_state(generator: torch.Generator | None = None) -> dict:
    """Every random state a training loop draws from (python, numpy, torch, CUDA, and a sampler's generator)."""
    st = {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate()}
    if torch.cuda.is_available():
        st["cuda"] = torch.cuda.get_rng_state_all()
    if generator is not None:
        st["generator"] = generator.get_state()
    return st


def set_rng_state(st: dict, generator: torch.Generator | None = None) -> None:
    torch.set_rng_state(st["torch"])
    np.random.set_state(st["numpy"])
    random.setstate(st["python"])
    if "cuda" in st and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(st["cuda"])
    if generator is not None:
        generator.set_state(st["generator"])


def save_checkpoint(run_dir: str | Path, epochs_done: int, tensors: dict, state: dict,
                    generator: torch.Generator | None = None, step: int | None = None) -> Path:
    """Publish ``checkpoints/epoch-<epochs_done>`` (or ``checkpoints/step-<step>`` when ``step`` is given: a
    checkpoint that may fall inside an epoch) with ``tensors`` + RNG states and the JSON ``state``, and remove
    the older ones."""
    root = Path(run_dir) / "checkpoints"
    path = root / (f"step-{step}" if step is not None else f"epoch-{epochs_done}")
    with publish_dir(path) as tmp:
        torch.save({**tensors, "rng": rng_state(generator)}, tmp / "checkpoint.pt")
        write_json(tmp / "state.json", state)
    for old in (*root.glob("epoch-*"), *root.glob("step-*")):
        if old != path:
            shutil.rmtree(old, ignore_errors=True)
    return path


def _checkpoint_order(path: Path) -> tuple[int, int]:
    kind, _, n = path.name.partition("-")
    return (kind == "step", int(n))  # a step checkpoint is newer than an epoch one left by older code


def latest_checkpoint(run_dir: str | Path) -> Path | None:
    """The newest complete checkpoint (``step-N`` by N, else ``epoch-N`` by N), or None."""
    root = Path(run_dir) / "checkpoints"
    cks = [c for c in (*root.glob("epoch-*"), *root.glob("step-*"))
           if c.name.partition("-")[2].isdigit() and (c / "state.json").exists()]
    return max(cks, key=_checkpoint_order) if cks else None


def load_checkpoint(path: str | Path, generator: torch.Generator | None = None) -> tuple[dict, dict]:
    """``(tensors, state)`` of a checkpoint, on the CPU; the RNG states are restored as a side effect."""
    ck = torch.load(Path(path) / "checkpoint.pt", map_location="cpu", weights_only=False)
    set_rng_state(ck.pop("rng"), generator)
    return ck, read_json(Path(path) / "state.json")
