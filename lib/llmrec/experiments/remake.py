"""A committed run record made again from its configuration (``llmrec remake``; docs/reproducibility.md, "Training
a configuration again").

A record keeps no weights, so a new evaluation of its run (beams scored another way, issue 26) needs the run
trained again. Trained again, a configuration repeats the committed run only while the floating-point sums come out
in the same order; once one rounding differs it drifts, as another seed would. :func:`remake` tells the two apart
by the record itself: every evaluation it holds is computed again on the new run and compared user for user.

* **replayed**: the training log within ``tolerance`` of the committed one (each step's loss, each epoch's
  validation likelihood where the run logs one) and every committed evaluation the same (ranks equal, likelihoods
  within ``tolerance`` nats per user): the record keeps what it had and gains the new evaluations;
* **remade**: anything else. The new run is a twin, not the committed run, so nothing of the two is mixed: the
  record is made whole from the new run (configuration, training facts, log, every evaluation), its provenance
  naming the commit that first published it and how far the training drifted.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .. import runs
from ..core import rundir
from ..core.results import Evaluation, read_record, run_record, write_record
from ..data import dataset_fingerprint
from .published import provenance
from .transfer_runs import beam_scoring_keys

TOLERANCE = 1e-4  # a training loss, a validation likelihood or a user's likelihood (nats) that counts as the same


def log_drift(old: list[dict], new: list[dict]) -> dict:
    """How far the LLM training log ``new`` is from ``old``: whether they hold the same (epoch, step) rows and
    validation epochs, the largest difference of a step's loss and of an epoch's validation likelihood (inf where
    the rows differ; None where neither log has a validation likelihood)."""
    steps = [[(e["epoch"], e["step"], e["loss"]) for e in log if "step" in e and "loss" in e] for log in (old, new)]
    valid = [[e["valid_nll_valid"] for e in log if e.get("event") == "epoch_end" and "valid_nll_valid" in e]
             for log in (old, new)]
    same = [x[:2] for x in steps[0]] == [x[:2] for x in steps[1]] and len(valid[0]) == len(valid[1])
    gap = lambda a, b: max((abs(x - y) for x, y in zip(a, b)), default=0.0) if same else float("inf")
    return {"same_steps": same, "loss": gap([s[2] for s in steps[0]], [s[2] for s in steps[1]]),
            "valid": gap(*valid) if valid[0] or valid[1] else None}


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


def drift_text(drift: dict) -> str:
    """A :func:`log_drift` in words, for a record's note and the command's line."""
    valid = "no validation likelihood logged" if drift["valid"] is None else \
        f"validation likelihood within {drift['valid']:.1e}"
    return f"training loss within {drift['loss']:.1e}, {valid}"


def remake(path: str | Path, scorings: bool = False, tolerance: float = TOLERANCE) -> dict:
    """Train the LLM run of the committed record ``path`` again from its configuration, in the run cache under
    the name the record knows (an S-DPO run needs its reference LML run there: remake that record first), evaluate
    again every evaluation the record holds, add with ``scorings`` the beam scorings a published reference run
    holds (:func:`.transfer_runs.beam_scoring_keys`: validation both ways and, only where the record has test
    beams, the same test users by log P_valid), and rewrite the record, replayed or remade whole (the module's
    docstring). Resumable: the run cache and each run's ``metrics.json``. Returns {"path", "verdict", "drift":
    :func:`log_drift`, "differs": the committed evaluations that came back otherwise}."""
    path = Path(path)
    old = read_record(path)
    if old.kind != "run" or old.family != "llm":
        raise ValueError(f"{path}: not the record of an LLM run (llmrec remake trains LLM runs again)")
    if old.dataset_fingerprint and old.dataset_fingerprint != dataset_fingerprint(old.dataset):
        raise ValueError(f"{path}: dataset {old.dataset!r} has changed since the record was made; its run cannot "
                         "be made again on it")
    run = runs.train(old.config, run_dir=rundir.runs_root() / old.extra.get("run", old.name), progress=False)
    drift = log_drift(old.log, rundir.read_log(run))
    differs = []
    for key, ev in old.evaluations.items():
        args = runs.key_args(key)
        new = runs.evaluate(run, **{**args, "k": args["k"] or ev.k or 10}, progress=False)
        if not same_evaluation(ev, new, tolerance):
            differs.append(key)
    replayed = (drift["same_steps"] and drift["loss"] <= tolerance and (drift["valid"] or 0.0) <= tolerance
                and not differs)
    tests = sorted({(a["n_users"], a["k"]) for a in map(runs.key_args, old.evaluations)
                    if (a["split"], a["mode"], a["beam_score"]) == ("test", "beam", "full")}, key=str)
    added = beam_scoring_keys(run, old.profile, tests) if scorings else []
    p = provenance()
    earlier = f" Earlier: {old.provenance.note}" if old.provenance.note else ""
    if replayed:
        fresh = run_record(run, name=old.name, what=old.what, profile=old.profile,
                           keys=[k for k in added if k not in old.evaluations])
        note = (f"{', '.join(sorted(fresh.evaluations)) or 'nothing'} added on {p['date']} (commit {p['commit'][:7]}, "
                f"{p['machine']}): the configuration trained again ({drift_text(drift)}, every committed "
                f"evaluation the same user for user).{earlier}")
        new = old.model_copy(update={"evaluations": {**old.evaluations, **fresh.evaluations},
                                     "provenance": old.provenance.model_copy(update={"note": note})})
    else:
        note = (f"made again whole on {p['date']} (commit {p['commit'][:7]}): the record published at "
                f"{old.provenance.commit[:7]} ({old.provenance.date}) kept no weights, and its configuration trained "
                f"again is not that run ({drift_text(drift)}; {', '.join(differs) or 'every evaluation'} "
                f"{'not ' if differs else ''}the same), so every evaluation here is the new run's.{earlier}")
        new = run_record(run, name=old.name, what=old.what, profile=old.profile, extra=old.extra,
                         keys=sorted({*old.evaluations, *added}), provenance={**p, "commit_note": note},
                         dataset_fingerprint=dataset_fingerprint(old.dataset))
    write_record(path, new)
    return {"path": path, "verdict": "replayed" if replayed else "remade", "drift": drift, "differs": differs}
