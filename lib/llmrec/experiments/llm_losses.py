"""Which LLM loss and temperature wins (chapters 05 and 06): runs evaluated on validation and test, the tau
sweep, choices made on validation only, the ablation table, beam search against exact ranking, and beams scored
by P_valid against the full softmax."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from .. import runs
from ..core.metrics import compare_by_user, entry_values
from ..core.profiles import profile as profile_sizes
from .profile_runs import CHOOSE_BY, llm_eval, llm_run, valid_metric
from .tables import user_interval


def evaluated(profile: str, loss: str, dataset: str | None, device: str | None, splits=("valid", "test"),
              progress: bool = True, **overrides) -> dict:
    """Train (or reuse) a run and evaluate it on ``splits``: {"run", split: beam evaluation,
    "<split> nll": likelihood evaluation}."""
    run = llm_run(profile, loss, dataset, device, progress=progress, **overrides)
    out = {"run": run}
    for s in splits:
        out[s] = llm_eval(run, profile, s, progress=progress)
        out[f"{s} nll"] = llm_eval(run, profile, s, "likelihood", progress=progress)
    return out


def sweep_frame(evals: dict[tuple, dict], profile: str, key: str = "tau") -> pd.DataFrame:
    """One row per ((dataset, value), split) of :func:`evaluated` runs: the mean likelihood measures with the
    95% interval of ``nll_valid`` (``lo``, ``hi``), then the split's beam metrics (``beam users`` of them) with the
    one reported (``beam metric``, its value ``beam``) and its 95% interval (``beam lo``, ``beam hi``); each
    interval resamples users (:func:`.tables.user_interval`)."""
    out = []
    for (ds, value), e in evals.items():
        for split in ("valid", "test"):
            nll = e[f"{split} nll"]
            mean, lo, hi = user_interval(nll["nll_valid"], nll["user_ids"])
            metric = valid_metric(profile) if split == "valid" else "ndcg@10"
            _, beam_lo, beam_hi = user_interval(entry_values(e[split], metric), e[split]["user_ids"])
            out.append({"dataset": ds, key: value, "split": split, "nll_valid": mean, "lo": lo, "hi": hi,
                        "nll_full": nll["summary"]["nll_full"], "users": nll["n_users"],
                        **e[split]["summary"], "beam metric": metric, "beam": e[split]["summary"][metric],
                        "beam lo": beam_lo, "beam hi": beam_hi,
                        "beam users": e[split]["n_users"], "run": str(e["run"])})
    return pd.DataFrame(out)


def best_on_valid(sweep: pd.DataFrame, dataset: str, key: str = "tau"):
    """The value of ``key`` with the lowest validation ``nll_valid`` (ties: the smallest value)."""
    v = sweep[(sweep["dataset"] == dataset) & (sweep["split"] == "valid")].sort_values([CHOOSE_BY, key])
    return v[key].iloc[0]


def chosen_on_valid(profile: str, candidates: dict) -> tuple:
    """``(value, evaluation)`` of the candidate with the lowest validation ``nll_valid`` (ties: the first),
    evaluated on test.

    ``candidates``: {value: :func:`evaluated` run}. Only the chosen one is evaluated on test: the losing
    candidates never touch the test users.
    """
    value, e = min(candidates.items(), key=lambda c: c[1]["valid nll"]["summary"][CHOOSE_BY])
    if "test" not in e:
        e = {**e, "test": llm_eval(e["run"], profile, "test"), "test nll": llm_eval(e["run"], profile, "test",
                                                                                      "likelihood")}
    return value, e


def ablation_frame(rows: dict[str, tuple[dict, str]], profile: str, baseline: str = "LML") -> pd.DataFrame:
    """Table 6: {method: (evaluation, what was chosen)} -> validation and test ``nll_valid``, the paired 95%
    interval of (method - baseline) on test ``nll_valid`` (users resampled; negative: more likely than the
    baseline), test ``nll_full`` and the beam metrics on test."""
    vm = valid_metric(profile)
    base = rows[baseline][0]["test nll"]
    out = []
    for name, (e, note) in rows.items():
        t = e["test nll"]
        d = compare_by_user(base, t, CHOOSE_BY)
        out.append({"method": name, "valid nll_valid": e["valid nll"]["summary"][CHOOSE_BY] if "valid nll" in e else None,
                    "test nll_valid": t["summary"][CHOOSE_BY], f"vs {baseline}": d["diff"], "lo": d["lo"],
                    "hi": d["hi"], "test nll_full": t["summary"]["nll_full"],
                    f"valid {vm}": e["valid"]["summary"][vm] if "valid" in e else None,
                    "test ndcg@10": e["test"]["summary"]["ndcg@10"], "test hr@10": e["test"]["summary"]["hr@10"],
                    "chosen": note, "run": str(e["run"])})
    return pd.DataFrame(out).set_index("method")


def beam_vs_exact(run: str | Path, profile: str, split: str = "test", progress: bool = True) -> pd.DataFrame:
    """Per-user ranks of constrained beam search vs exact full-catalogue ranking on the same users."""
    p = profile_sizes(profile)
    beam = runs.evaluate(run, split, "beam", p["exact_users"], k=p["eval_beams"], progress=progress)
    exact = runs.evaluate(run, split, "full", p["exact_users"], progress=progress)
    return pd.DataFrame({"user_id": beam["user_ids"], "beam rank": beam["ranks"], "exact rank": exact["ranks"],
                         "beam s/user": beam["seconds_per_user"], "exact s/user": exact["seconds_per_user"]})


def beam_scoring(evals: dict[str, tuple[Path, dict]], profile: str, names=("LML", "MSL + ATS"),
                 split: str = "test") -> pd.DataFrame:
    """Beams scored by log P_valid beside this project's default (the full-vocabulary log-softmax; length
    penalty 0 in both) on the same users as ``evals``' beam evaluations ({name: (run, evaluation)}): NDCG@10 and
    HR@10 under each and the paired 95% interval of (P_valid - full), users resampled, with its verdict."""
    p = profile_sizes(profile)
    rows = []
    for name in names:
        run, full = evals[name]
        pv = runs.evaluate(run, split, "beam", p["eval_users"], k=p["eval_beams"], beam_score="valid", progress=False)
        for m in ("ndcg@10", "hr@10"):
            d = compare_by_user(full, pv, m)
            rows.append({"method": name, "metric": m, "full softmax": full["summary"][m], "P_valid": pv["summary"][m],
                         "diff": d["diff"], "lo": d["lo"], "hi": d["hi"], "users": d["n"], "verdict": d["verdict"],
                         "resolved": d["resolved"], "s/user full": full["seconds_per_user"],
                         "s/user P_valid": pv["seconds_per_user"]})
    return pd.DataFrame(rows).set_index(["method", "metric"])
