"""How constrained beam search should score its beams, chosen on validation (issue 26, item 2).

Two scores of a partial title: the full-vocabulary log-softmax summed over its tokens (HF ``generate`` with length
penalty 0; this project's default, ``beam_score="full"``) and log P_valid, the softmax restricted to the trie's
valid next tokens (``"valid"``: what MSL trains and Lemma 1 ranks by; the MSL authors' updated "customised CBS").

The choice reads every committed ``laptop`` LLM run (``results/laptop/llm`` and ``results/laptop/transfer``, every
loss and seed) evaluated both ways on the same users. Per user, the difference (P_valid − full) is averaged over
the runs, and the paired interval resamples users (:func:`llmrec.core.metrics.user_bootstrap`). P_valid becomes
the default only where that interval on **validation** NDCG@10 lies above 0; test is reported, never chosen by.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ..core.labels import loss_name
from ..core.metrics import compare_by_user, entry_values, user_bootstrap
from ..core.profiles import train_config
from ..core.results import RunRecord, entry_from_evaluation, records
from .published import results_root

DEFAULT = "full"  # the library's default (llmrec.runs.evaluate, llmrec.llm.recommender), which :func:`choice` checks
FOLDERS = ("laptop/llm", "laptop/transfer")
METRICS = ("ndcg@10", "hr@10")
# The MSL authors' Toy NDCG@10 for BIGRec + MSL: the paper's Table 5 (full-softmax beams) and their repository's
# README after they switched to beams over the valid tokens (quoted by issue 26)
PAPER_TOY = {"full": 0.0288, "valid": 0.0313}


def run_label(rec: RunRecord) -> str:
    """``MSL + ATS (seed 1)``, ``MSL τ 4.5 (seed 0)``, or with a learning rate other than its profile's
    ``MSL τ 1, lr 0.003 (seed 0)``."""
    c = rec.config
    name = f"MSL τ {float(c['tau']):g}" if c["loss"] == "msl" else loss_name(c["loss"])
    if c.get("lr") != train_config(rec.profile, "llm").get("lr"):
        name += f", lr {float(c['lr']):g}"
    return f"{name} (seed {c['seed']})"


def _both(rec: RunRecord, split: str) -> tuple[dict, dict] | None:
    """``rec``'s beam evaluations of ``split`` scored "full" and "valid" on the same users (the most users), or
    None where it lacks either."""
    pairs = []
    for ev in rec.evaluations.values():
        if (ev.split, ev.mode, ev.options) == (split, "beam", {}):
            other = [o for o in rec.evaluations.values() if (o.split, o.mode, o.options, o.n_users, o.k) ==
                     (split, "beam", {"beam_score": "valid"}, ev.n_users, ev.k)]
            if other:
                pairs.append((ev, other[0]))
    if not pairs:
        return None
    full, valid = max(pairs, key=lambda p: p[0].n_users)
    return entry_from_evaluation(full), entry_from_evaluation(valid)


def _llm_records(dataset: str, folders) -> list[RunRecord]:
    out = []
    for folder in folders:
        path = results_root() / folder
        if path.is_dir():
            out += [r for r in records(path).values() if r.family == "llm" and r.dataset == dataset]
    return out


def scored_both_ways(split: str, dataset: str = "toy", folders=FOLDERS) -> dict[str, tuple[dict, dict]]:
    """{run label: (full entry, P_valid entry)} for every committed LLM run on ``dataset`` whose beams on
    ``split`` were scored both ways."""
    out = {}
    for rec in _llm_records(dataset, folders):
        both = _both(rec, split)
        if both is not None:
            label = run_label(rec)
            if label in out:
                raise ValueError(f"two committed runs labelled {label!r} in {folders}")
            out[label] = both
    return dict(sorted(out.items()))


def not_scored(split: str, dataset: str = "toy", folders=FOLDERS) -> list[str]:
    """The committed LLM runs on ``dataset`` whose beams on ``split`` were scored the default way only (their
    weights were not kept: ``llmrec remake --beam-scorings`` trains them again), by label."""
    return sorted(run_label(r) for r in _llm_records(dataset, folders) if _both(r, split) is None and any(
        (e.split, e.mode, e.options) == (split, "beam", {}) for e in r.evaluations.values()))


def pooled(pairs: dict[str, tuple[dict, dict]], metric: str = "ndcg@10") -> dict:
    """(P_valid − full) on ``metric`` over every run of ``pairs``: per window the mean over the runs of each
    scoring, users resampled. Every run must have been evaluated on the same windows."""
    if not pairs:
        raise ValueError("no run scored both ways")
    users = next(iter(pairs.values()))[0]["user_ids"]
    if any(e["user_ids"] != users for pair in pairs.values() for e in pair):
        raise ValueError(f"{metric}: the runs were evaluated on different windows")
    full = np.mean([entry_values(f, metric) for f, _ in pairs.values()], axis=0)
    valid = np.mean([entry_values(v, metric) for _, v in pairs.values()], axis=0)
    return {**user_bootstrap(full, valid, users), "runs": len(pairs)}


def decide(result: dict) -> str:
    """The rule: ``"valid"`` only where the pooled (P_valid − full) interval is resolved above 0, else ``"full"``
    (the default stays unless validation shows the change helps)."""
    return "valid" if result["verdict"] == "resolved" and result["lo"] > 0 else "full"


def choice(metric: str = "ndcg@10", dataset: str = "toy") -> dict:
    """The choice on validation: ``valid`` where the pooled (P_valid − full) interval lies above 0, else
    ``full``; with the pooled comparison, the runs it pools, and their hits under each scoring."""
    pairs = scored_both_ways("valid", dataset)
    result = pooled(pairs, metric)
    hits = {s: int(sum(round(e[i]["summary"]["hr@10"] * e[i]["n_users"]) for e in pairs.values()))
            for i, s in enumerate(("full", "valid"))}
    return {"choice": decide(result), "pooled": result, "runs": list(pairs), "users": result["n_users"], "hits": hits}


def scoring_table(split: str = "test", dataset: str = "toy") -> pd.DataFrame:
    """Per run and pooled: NDCG@10 and HR@10 under each scoring and (P_valid − full) with its 95% interval, users
    resampled."""
    pairs = scored_both_ways(split, dataset)
    rows = []
    for label, (full, valid) in pairs.items():
        row = {"run": label, "users": full["n_users"]}
        for m in METRICS:
            d = compare_by_user(full, valid, m)
            row.update({f"{m} full": full["summary"][m], f"{m} P_valid": valid["summary"][m], f"{m} diff": d["diff"],
                        f"{m} lo": d["lo"], f"{m} hi": d["hi"], f"{m} verdict": d["verdict"]})
        rows.append(row)
    if len(pairs) > 1:
        row = {"run": f"pooled over the {len(pairs)} runs", "users": next(iter(pairs.values()))[0]["n_users"]}
        for m in METRICS:
            d = pooled(pairs, m)
            row.update({f"{m} full": d["a"], f"{m} P_valid": d["b"], f"{m} diff": d["diff"], f"{m} lo": d["lo"],
                        f"{m} hi": d["hi"], f"{m} verdict": d["verdict"]})
        rows.append(row)
    return pd.DataFrame(rows)


def row_result(row: dict, metric: str) -> dict:
    """One measure of a :func:`scoring_table` row as a paired result (diff, lo, hi, verdict), for the words."""
    return {k: row[f"{metric} {k}"] for k in ("diff", "lo", "hi", "verdict")}
