"""Run directories: the one layout, cache and checkpoint/resume path of every model family.

A run directory holds:

* ``config.json``: the full configuration, with ``family`` (``llm``,
  ``seqrec``, ``lite``), and ``identity.json``: the dataset's content hash, the
  number of processes, the global batch and, for a run that starts from
  pretrained weights, their fingerprints (``weights``); their hash names the
  directory, so an identical run finds the finished one again (the run cache)
  and nothing else does: a run is never continued or reused on other data or
  on other weights under the same model name;
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
  ``ranks`` (see :func:`llmrec.core.recommender.evaluate`); a target that a
  recommendation list missed (rank infinity in memory) is ``null`` in the file.

Every file and folder is written atomically and as strict JSON, without NaN or infinity
(:mod:`llmrec.core.io`).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import random
import shutil
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch

from .io import atomic_write, dumps, publish_dir, read_json, repo_root, write_json
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


WEIGHTS = "weights"  # the identity's fingerprints of the pretrained weights a run starts from ({name: hash})


def _without_weights(identity: dict | None) -> dict:
    return {k: v for k, v in (identity or {}).items() if k != WEIGHTS}


def run_dir_for(config: dict, identity: dict | None = None, root: str | Path | None = None) -> Path:
    """The run cache's folder of a configuration: named by dataset, model and loss (``custom_<name>`` for a loss
    function of the user's, whose fingerprint ``loss_source`` is in the configuration), keyed by the hash of the
    configuration and of the run's ``identity`` (what changes its result besides the options: the dataset's
    content, the number of processes and the global batch), and ending ``-w<hash>`` when the identity holds
    the fingerprints of the pretrained weights the run starts from (runs made before identities held them
    end without it: :func:`find_run`)."""
    name = "-".join(str(config.get(k, "x")) for k in ("dataset", "model", "loss"))
    base = _without_weights(identity)
    key = config_key({**config, "identity": base} if base else config)
    weights = (identity or {}).get(WEIGHTS)
    suffix = f"-w{config_key(weights)[:8]}" if weights else ""
    return Path(root or runs_root()) / f"{name}-{key}{suffix}".replace("/", "_").replace(":", "_")  # custom:<name>


def with_weights(identity: dict, weights) -> dict:
    """``identity`` with ``weights()`` (the fingerprints of the pretrained weights a run starts from, {name:
    hash}) under :data:`WEIGHTS`; in results mode without them: reading a committed run needs no weights."""
    return identity if read_only() else {**identity, WEIGHTS: weights()}


def find_run(config: dict, identity: dict | None = None, root: str | Path | None = None) -> Path:
    """The run cache's folder of a run: :func:`run_dir_for`'s, or the folder the same configuration and data
    had before identities held the weights (no ``-w<hash>``), when that one records these weights
    (:func:`adopt`) or none at all (then :func:`open_run` refuses it and says how to adopt it).

    In results mode the identity holds no weights (:func:`with_weights`): the committed folder of the
    configuration and data is found with or without a weights suffix (an error if there are several).
    """
    legacy = run_dir_for(config, _without_weights(identity), root)
    if read_only():
        found = [p for p in (legacy, *sorted(legacy.parent.glob(f"{legacy.name}-w*"))) if p.is_dir()]
        if len(found) > 1:
            raise ValueError(f"the committed results hold this run on {len(found)} different weights: "
                             f"{[p.name for p in found]}")
        return found[0] if found else legacy
    path = run_dir_for(config, identity, root)
    if path == legacy or path.exists() or not legacy.exists():
        return path
    old = read_json(legacy / "identity.json").get(WEIGHTS) if (legacy / "identity.json").exists() else None
    return legacy if old in (None, identity[WEIGHTS]) else path


def check_identity(run_dir: str | Path, recorded: dict | None, identity: dict) -> None:
    """Refuse a run folder whose ``recorded`` identity (None: no ``identity.json``) is not ``identity``: other
    data or another process count, or other pretrained weights under the same names, or none recorded (a run
    made before identities held them: :func:`adopt`). In results mode the weights are not compared."""
    if read_only():
        recorded, identity = recorded and _without_weights(recorded), _without_weights(identity)
    if WEIGHTS in identity and (recorded or {}).get(WEIGHTS) != identity[WEIGHTS]:
        if WEIGHTS not in (recorded or {}):
            raise ValueError(f"{run_dir} was made before a run's identity recorded the pretrained weights it starts "
                             f"from, so nothing shows that it was trained on the weights installed now "
                             f"({identity[WEIGHTS]}); if it was, record them with `llmrec adopt {run_dir}`, "
                             f"otherwise delete it")
        raise ValueError(f"{run_dir} was trained on other weights ({recorded[WEIGHTS]}) than those now installed "
                         f"under the same names ({identity[WEIGHTS]}): it is not continued or reused")
    if recorded is not None and _without_weights(recorded) != _without_weights(identity):
        raise ValueError(f"{run_dir} holds a run of other data or another process count: {recorded} "
                         f"here, {identity} now")


def adopt(run_dir: str | Path, weights: dict) -> None:
    """Record in the ``identity.json`` of a run made before identities held the pretrained weights that it was
    trained on ``weights`` (those installed now: the caller vouches for it), so that it is found, continued
    and reused again. A run that records weights already keeps them (other ones are an error)."""
    ipath = Path(run_dir) / "identity.json"
    if not ipath.exists():
        raise FileNotFoundError(f"{run_dir}: no identity.json (not a run directory, or one too old to adopt)")
    identity = read_json(ipath)
    if identity.get(WEIGHTS, weights) != weights:
        raise ValueError(f"{run_dir} records other weights already: {identity[WEIGHTS]}, not {weights}")
    write_json(ipath, {**identity, WEIGHTS: weights})


def open_run(run_dir: str | Path, config: dict, identity: dict | None = None) -> bool:
    """Write (or check) ``config.json`` and ``identity.json``; True when this run is already finished (the cache).
    A run that is (re)started records its versions (:func:`record_versions`).

    A folder that holds another configuration or another identity (other
    data, another number of processes, other pretrained weights:
    :func:`check_identity`) is refused, except that ``epochs`` may change: the
    run is then continued (or cut) with the new budget.
    """
    run_dir = Path(run_dir)
    config = json.loads(dumps(config, where=run_dir / "config.json"))  # as stored: tuples become lists
    path, ipath = run_dir / "config.json", run_dir / "identity.json"
    if read_only() and not (path.exists() and read_json(path) == config and is_done(run_dir)):
        raise FileNotFoundError(f"run {run_dir.name} is not among the committed results in {run_dir.parent} "
                                f"(nothing is trained in results mode); its configuration: {config}")
    if identity is not None and (ipath.exists() or path.exists()):
        check_identity(run_dir, read_json(ipath) if ipath.exists() else None, identity)
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
    now = versions()
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
    path = Path(run_dir) / "log.jsonl"
    line = dumps(record, where=path) + "\n"
    with open(path, "a") as f:
        f.write(line)


def read_log(run_dir: str | Path) -> list[dict]:
    p = Path(run_dir) / "log.jsonl"
    if not p.exists():
        return []
    return [json.loads(line) for line in p.read_text().splitlines() if line.strip()]


def truncate_log(run_dir: str | Path, keep) -> None:
    """Keep the log records for which ``keep(record)`` holds (those written before the checkpoint a run resumes
    from): a resumed run's log holds only the steps of the attempt that survived."""
    kept = [r for r in read_log(run_dir) if keep(r)]
    path = Path(run_dir) / "log.jsonl"
    atomic_write(path, "".join(dumps(r, where=path) + "\n" for r in kept).encode())


def is_done(run_dir: str | Path) -> bool:
    return (Path(run_dir) / "done.json").exists()


def save_metrics(run_dir: str | Path, key: str, entry: dict) -> None:
    """Add (or replace) the evaluation ``key`` in ``metrics.json``; the rank of a missed target is ``null`` there."""
    p = Path(run_dir) / "metrics.json"
    data = {**load_metrics(run_dir), key: entry}  # earlier entries too: files written before held Infinity
    write_json(p, {k: {**e, "ranks": [None if r == math.inf else r for r in e["ranks"]]} if "ranks" in e else e
                   for k, e in data.items()})


def load_metrics(run_dir: str | Path) -> dict:
    """The evaluations of ``metrics.json`` (a ``null`` rank back to infinity, as :func:`save_metrics` wrote it)."""
    p = Path(run_dir) / "metrics.json"
    data = read_json(p) if p.exists() else {}
    for entry in data.values():
        if "ranks" in entry:
            entry["ranks"] = [math.inf if r is None else r for r in entry["ranks"]]
    return data


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
