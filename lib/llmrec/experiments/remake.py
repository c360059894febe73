"""A committed run record made again from its configuration (``llmrec remake``; docs/reproducibility.md, "Training
a configuration again").

A record keeps no weights, so a new evaluation of its run (beams scored another way, issue 26) needs the run
trained again. Trained again, a configuration repeats the committed run only while the floating-point sums come out
in the same order; once one rounding differs it drifts, as another seed would. :func:`remake` tells the two apart
by the record itself: every evaluation it holds is computed again on the new run and compared user for user.

* **replayed**: the training log within ``tolerance`` of the committed one and every committed evaluation the same
  (ranks equal, likelihoods within ``tolerance`` nats per user): the record keeps what it had and gains the new
  evaluations;
* **remade**: anything else. The new run is a twin, not the committed run, so nothing of the two is mixed: the
  record is made whole from the new run (configuration, training facts, log, every evaluation), its provenance
  naming the commit that first published it and how far the training drifted.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .. import runs
from ..core import rundir
from ..core.profiles import profile as profile_sizes
from ..core.results import Evaluation, read_record, run_record, write_record
from ..data import dataset_fingerprint
from .published import provenance
from .transfer_runs import BEAM_SCORINGS

TOLERANCE = 1e-4  # a training loss, a validation likelihood or a user's likelihood (nats) that counts as the same


def log_drift(old: list[dict], new: list[dict]) -> dict:
    """How far the training log ``new`` is from ``old``: whether they hold the same (epoch, step) rows, the largest
    difference of a step's loss and of an epoch's validation likelihood (inf where the rows differ)."""
    steps = [[(e["epoch"], e["step"], e["loss"]) for e in log if "step" in e and "loss" in e] for log in (old, new)]
    valid = [[e["valid_nll_valid"] for e in log if e.get("event") == "epoch_end" and "valid_nll_valid" in e]
             for log in (old, new)]
    same = [x[:2] for x in steps[0]] == [x[:2] for x in steps[1]] and len(valid[0]) == len(valid[1])
    gap = lambda a, b: max((abs(x - y) for x, y in zip(a, b)), default=0.0) if same else float("inf")
    return {"same_steps": same, "loss": gap([s[2] for s in steps[0]], [s[2] for s in steps[1]]),
            "valid": gap(*valid)}


def same_evaluation(old: Evaluation, new: dict, tolerance: float = TOLERANCE) -> bool:
    """True when the evaluation ``new`` (a ``metrics.json`` entry) is ``old`` again: the same users, the same rank
    for each (a miss is a miss in both), or each likelihood within ``tolerance``."""
    if list(old.user_ids) != list(new["user_ids"]):
        return False
    as_array = lambda v: np.nan_to_num(np.asarray([np.nan if x is None else x for x in v], float),
                                       nan=-1.0, posinf=-1.0)  # a miss: None in a record, inf in metrics.json
    if old.mode == "likelihood":
        return bool(np.max(np.abs(as_array(old.nll_valid) - as_array(new["nll_valid"])), initial=0.0) <= tolerance)
    return bool(np.array_equal(as_array(old.ranks), as_array(new["ranks"])))


def _evaluate(run: Path, key: str, ev: Evaluation) -> dict:
    users = key.split("/")[2][1:]  # n<users>, or nall: every window of the split
    return runs.evaluate(run, ev.split, ev.mode, None if users == "all" else int(users), k=ev.k or 10, progress=False,
                         embed=ev.options.get("embed", "llm"), beam_score=ev.options.get("beam_score", "full"))


def beam_scorings(record, run: Path) -> list[str]:
    """Evaluate ``run``'s beams as a published reference LLM run holds them (:data:`.transfer_runs.BEAM_SCORINGS`):
    the validation beams both ways on the profile's validation users, and, only where ``record`` has test beams
    (a run chosen on validation alone keeps its test users untouched), the same test users' beams scored by
    log P_valid. Their metric keys."""
    p, beams = profile_sizes(record.profile), runs.config_of(run)["valid_beams"]
    tests = {(e.n_users, e.k) for e in record.evaluations.values()
             if (e.split, e.mode, e.options) == ("test", "beam", {})}
    todo = [("valid", p["valid_users"], beams, score) for split, score in BEAM_SCORINGS if split == "valid"]
    todo += [("test", n, k, score) for split, score in BEAM_SCORINGS if split == "test" for n, k in sorted(tests)]
    for split, n, k, score in todo:
        runs.evaluate(run, split, "beam", n, k=k, beam_score=score, progress=False)
    return [runs.metrics_key(split, "beam", n, k, beam_score=score) for split, n, k, score in todo]


def remake(path: str | Path, scorings: bool = False, tolerance: float = TOLERANCE) -> dict:
    """Train the run of the committed record ``path`` again from its configuration, in the run cache under the
    name the record knows (an S-DPO run needs its reference LML run there: remake that record first), evaluate
    again every evaluation the record holds, add the beam scorings (:func:`beam_scorings`) with ``scorings``, and
    rewrite the record, replayed or remade whole (the module's docstring). Resumable: the run cache and each
    run's ``metrics.json``. Returns {"path", "verdict", "drift": :func:`log_drift`, "differs": keys}."""
    path = Path(path)
    old = read_record(path)
    if old.kind != "run" or old.family == "popularity" or not old.config:
        raise ValueError(f"{path}: not the record of a trained run")
    run = runs.train(old.config, run_dir=rundir.runs_root() / old.extra.get("run", old.name), progress=False)
    drift = log_drift(old.log, rundir.read_log(run))
    replayed = drift["same_steps"] and drift["loss"] <= tolerance and drift["valid"] <= tolerance
    differs = []
    # the default-scored evaluations decide; an evaluation scored another way is computed again only if remade
    for key, ev in sorted(old.evaluations.items(), key=lambda kv: bool(kv[1].options)):
        if ev.options and not differs and replayed:
            continue
        if not same_evaluation(ev, _evaluate(run, key, ev), tolerance):
            differs.append(key)
    replayed = replayed and not differs
    added = beam_scorings(old, run) if scorings and old.family == "llm" else []
    p = provenance()
    if replayed:
        fresh = run_record(run, name=old.name, what=old.what, profile=old.profile,
                           keys=[k for k in added if k not in old.evaluations])
        note = (f"{', '.join(sorted(fresh.evaluations)) or 'nothing'} added on {p['date']} (commit {p['commit'][:7]}, "
                f"{p['machine']}): the configuration trained again (training loss within {drift['loss']:.1e}, "
                f"validation likelihood within {drift['valid']:.1e}, every committed evaluation the same user for user)")
        new = old.model_copy(update={"evaluations": {**old.evaluations, **fresh.evaluations},
                                     "provenance": old.provenance.model_copy(update={"note": note})})
    else:
        note = (f"made again whole on {p['date']} (commit {p['commit'][:7]}): first published at "
                f"{old.provenance.commit[:7]} ({old.provenance.date}), whose weights were not kept; the configuration "
                f"trained again is not that run (training loss up to {drift['loss']:.1e} apart, validation "
                f"likelihood up to {drift['valid']:.1e}; {', '.join(differs) or 'no evaluation'} not the same), so "
                "every evaluation here is the new run's")
        new = run_record(run, name=old.name, what=old.what, profile=old.profile, extra=old.extra,
                         keys=sorted({*old.evaluations, *added}), provenance={**p, "commit_note": note},
                         dataset_fingerprint=old.dataset_fingerprint or dataset_fingerprint(old.dataset))
    write_record(path, new)
    return {"path": path, "verdict": "replayed" if replayed else "remade", "drift": drift, "differs": differs}
