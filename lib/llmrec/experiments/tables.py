"""The tables of evaluated runs ({name: (run, evaluation)}): metrics per method, each with its interval over
users, and paired intervals against a baseline on the same users; and the reader's form of any table a chapter
shows (:func:`for_reader`)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from .. import runs
from ..core import labels
from ..core.io import read_json
from ..core.metrics import compare_by_user, entry_values, user_bootstrap


def _row(name: str, run: str | Path, ev: dict) -> dict:
    done = read_json(Path(run) / "done.json")
    return {"method": name, **ev["summary"], "n_users": ev["n_users"],
            "s/step": done["seconds_per_step"], "train_s": done["train_seconds"],
            "eval_s/user": ev["seconds_per_user"]}


def results_table(evals: dict[str, tuple[Path, dict]]) -> pd.DataFrame:
    """One row per method: the evaluation's summary (NDCG/HR@5,10 and MRR, or the mean likelihoods), users,
    seconds per training step and per evaluated user."""
    return pd.DataFrame([_row(name, run, ev) for name, (run, ev) in evals.items()]).set_index("method")


def paired_table(evals: dict[str, tuple[Path, dict]], baseline: str,
                 metrics=("ndcg@5", "ndcg@10", "hr@5", "hr@10")) -> pd.DataFrame:
    """Paired-bootstrap 95% intervals of (method - baseline) on the same windows, resampling users (a user's
    windows together, :func:`llmrec.core.metrics.compare_by_user`); ``verdict`` is resolved, unresolved (the
    interval contains 0) or edge (a bound within the bootstrap's own noise of 0), ``resolved`` True only for
    resolved."""
    base = evals[baseline][1]
    out = []
    for name, (_, ev) in evals.items():
        if name == baseline:
            continue
        for m in metrics:
            b = compare_by_user(base, ev, m)
            out.append({"method": name, "vs": baseline, "metric": m, "diff": b["diff"], "lo": b["lo"], "hi": b["hi"],
                        "n_users": b["n"], "verdict": b["verdict"], "resolved": b["resolved"]})
    return pd.DataFrame(out)


def user_interval(values, users=None) -> tuple[float, float, float]:
    """``(mean, lo, hi)``: the mean of per-window values and its 95% bootstrap interval, resampling users (the
    windows of ``users[i]`` together; None: every window its own user)."""
    v = np.asarray(values, dtype=float)
    b = user_bootstrap(np.zeros_like(v), v, users)
    return b["b"], b["lo"], b["hi"]


def run_facts(run) -> dict:
    """best_epoch, epochs_run, epochs_cap, seconds_total of a run directory (or the dict of a committed result)."""
    if run is None:
        return {}
    if isinstance(run, dict):
        return run
    done = read_json(Path(run) / "done.json")
    return {**done, "epochs_cap": runs.config_of(run).get("epochs")}


def accuracy_table(evals: dict, metrics=("ndcg@10", "hr@10")) -> pd.DataFrame:
    """Per method: each metric with its bootstrap 95% interval over users (:func:`user_interval`), Recall@10
    (= HR@10: one held-out item per user), users, best epoch and training time (from the run's ``done.json``)."""
    out = []
    for name, (run, ev) in evals.items():
        r = {"method": name}
        for m in metrics:
            r[m], r[f"{m} lo"], r[f"{m} hi"] = user_interval(entry_values(ev, m), ev.get("user_ids"))
        r["recall@10"] = r.get("hr@10", np.nan)
        done = run_facts(run)
        r.update(n_users=ev["n_users"], best_epoch=done.get("best_epoch"), epochs_run=done.get("epochs_run"),
                 epochs_cap=done.get("epochs_cap"), train_s=done.get("seconds_total"))
        # a best epoch at the cap: the run may not have reached its plateau
        r["best at cap"] = done.get("best_epoch") is not None and done.get("best_epoch") == done.get("epochs_cap")
        out.append(r)
    return pd.DataFrame(out).set_index("method")


# how a column's numbers are written (else: 4 decimals for a ranking metric, 2 for nats, 3 significant digits)
_COUNTS = {"n_users", "users", "beam users", "best_epoch", "epochs_run", "epochs_cap", "best epoch", "seeds", "at cap",
           "items", "vocab", "n", "beam rank", "exact rank"}
_AS_GIVEN = {"tau", "alpha", "K", "lr", "eta", "user_id"}  # what a run was given (4.5, 100, 0.003) and names (4931)
_SHARES = {"time saved vs beam"}
_DROPPED = ("run", "run_dir")  # paths on the machine that ran it
_SAID = {"resolved": "verdict"}  # a column another one says in words: shown only without it


def _missing(x) -> bool:
    return x is None or (isinstance(x, float) and np.isnan(x)) or x is pd.NA


def _key(column) -> str:
    """The measure a column holds, without its split ("test nll_valid" -> "nll_valid")."""
    c = str(column)
    return c.split(" ", 1)[1] if c.startswith(("valid ", "test ")) else c


def _decimals(key: str, x: float) -> int:
    """Decimals for a value of the measure ``key``: 4 for a ranking metric, 2 for nats, else 3 significant digits
    of ``x`` (at most 4 decimals)."""
    if key.startswith(("ndcg", "hr@", "mrr", "recall")):
        return 4
    if key.startswith("nll"):
        return 2
    x = abs(x)
    return 0 if x == 0 or not np.isfinite(x) else int(min(4, max(0, 2 - np.floor(np.log10(x)))))


def _number(x: float, decimals: int, sign: bool = False) -> str:
    text = f"{x:{'+' if sign and x != 0 else ''},.{decimals}f}"
    return text.replace("-", "−")


def _cell(column, x, key: str | None = None) -> str:
    """One value for the reader: "–" where missing, yes/no, a name in words, a number rounded for reading."""
    if _missing(x):
        return "–"
    if isinstance(x, (bool, np.bool_)):
        return "yes" if x else "no"
    if isinstance(x, str):
        return labels.value(column, x)
    if not isinstance(x, (int, float, np.integer, np.floating)):
        return str(x)
    c = _key(column)
    if np.isinf(x):
        return "miss" if c.endswith("rank") else "∞"
    if c in _AS_GIVEN:
        return f"{x:g}"
    if c in _SHARES:
        return f"{x:,.1%}".replace("-", "−")
    if c in _COUNTS or isinstance(x, (int, np.integer)):
        return f"{int(x):,}" if float(x).is_integer() else _number(x, _decimals(c, x))
    return _number(x, _decimals(key or c, x))


def _interval(x, lo, hi, key: str, sign: bool, scale: float) -> str:
    """"x [lo, hi]" to the decimals of ``key``'s measure, else of the column's largest magnitude ``scale``."""
    if _missing(x):
        return "–"
    d = _decimals(key, scale)
    return f"{_number(x, d, sign)} [{_number(lo, d, sign)}, {_number(hi, d, sign)}]"


def _groups(columns: list) -> list[tuple]:
    """The columns in order, each measure with its interval or spread: (column, lo, hi, header suffix). A bare
    ``lo``, ``hi`` pair is the interval of ``diff``, else of a "vs NAME" column, else of the column before ``lo``
    (a table read back from a results record has its columns in alphabetical order)."""
    bare = None
    if "lo" in columns and "hi" in columns:
        named = [c for c in columns if c == "diff"] + [c for c in columns if str(c).startswith("vs ")]
        bare = named[0] if named else columns[max(columns.index("lo") - 1, 0)]
    out, used = [], set()
    for c in columns:
        if c in used:
            continue
        if isinstance(c, str) and f"{c} lo" in columns and f"{c} hi" in columns:
            out.append((c, f"{c} lo", f"{c} hi", " [95% interval]"))
        elif c == bare:
            out.append((c, "lo", "hi", " [95% interval]"))
        elif isinstance(c, str) and f"{c} min" in columns and f"{c} max" in columns:
            out.append((c, f"{c} min", f"{c} max", " [min, max]"))
        else:
            out.append((c, None, None, ""))
        used.update(out[-1][:3])
    return out


def _header(column, axis_name) -> str:
    if isinstance(column, (int, float)) and axis_name is not None:  # a pivot's columns: "scale α = 10"
        return f"{labels.measure(axis_name)} = {column:g}"
    return labels.measure(column)


def _index(index: pd.Index) -> pd.Index:
    if isinstance(index, pd.MultiIndex):
        levels = [[_cell(name, v) for v in index.get_level_values(k)] for k, name in enumerate(index.names)]
        return pd.MultiIndex.from_arrays(levels, names=[labels.measure(n) if n else n for n in index.names])
    return pd.Index([_cell(index.name, v) for v in index], name=labels.measure(index.name) if index.name else None)


def for_reader(frame: pd.DataFrame | pd.Series) -> pd.DataFrame:
    """The form in which a chapter shows a table (the frame itself stays as it is, for code): headers in words
    with units (:func:`llmrec.core.labels.measure`); each measure and its 95% interval in one column, "0.0043
    [0.0011, 0.0085]" (a column ``X`` with ``X lo`` and ``X hi``; or ``lo`` and ``hi`` with a difference, "+0.19
    [+0.14, +0.24]", see :func:`_groups`), a spread ``X min``, ``X max`` likewise; splits, models, losses and
    measures in words; numbers rounded for reading (a ranking metric to 4 decimals, nats to 2, others to 3
    significant digits); "–" where a value is missing; run paths dropped, and ``resolved`` where ``verdict``
    says it in words."""
    df = frame.to_frame() if isinstance(frame, pd.Series) else frame
    df = df.drop(columns=[c for c in df.columns if c in _DROPPED or _SAID.get(c) in df.columns])
    # the measure of each row, for a difference or a beam metric whose measure changes from row to row
    row_measure = (df["metric"] if "metric" in df.columns else
                   pd.Series(df.index.get_level_values("metric"), index=df.index) if "metric" in df.index.names else
                   df["beam metric"] if "beam metric" in df.columns else None)
    out = {}
    for c, lo, hi, suffix in _groups(list(df.columns)):
        per_row = row_measure is not None and (c in ("diff", "beam") or str(c).startswith("vs "))
        keys = row_measure.tolist() if per_row else [_key(c)] * len(df)
        if lo is None:
            cells = [_cell(c, x, k) for x, k in zip(df[c], keys)]
        else:
            sign = c == "diff" or str(c).startswith("vs ")
            values = pd.to_numeric(df[[c, lo, hi]].to_numpy().ravel(), errors="coerce")
            scale = float(np.nanmax(np.abs(values), initial=0.0))
            cells = [_interval(x, a, b, str(k), sign, scale) for x, a, b, k in zip(df[c], df[lo], df[hi], keys)]
        header = _header(c, df.columns.name) + suffix
        if header in out:
            raise ValueError(f"two columns of this table read {header!r}: give one of them its own words in "
                             "llmrec.core.labels.MEASURES")
        out[header] = cells
    return pd.DataFrame(out, index=_index(df.index))
