"""Do the conclusions transfer? (chapter 09, ``llmrec verdicts``): each paper's headline comparison, as data, judged
on every dataset by paired intervals over users and by its seeds.

* :data:`CLAIMS`: the papers' headline comparisons: which arm (:data:`.transfer_runs.ARMS`) the paper finds better
  than which, on which metrics (the likelihood of the target's title, lower is better; NDCG@10 and HR@10);
* :func:`claim_verdict`, the rule: a claim *holds* on a dataset where the paired 95% interval of every seed
  excludes 0 in the paper's direction, is *reversed* where every one excludes it in the other, and is
  *unresolved* otherwise (:func:`compare_seeds` gives the rule on the seed-averaged difference too);
* :func:`transfer_table`: claim x dataset x metric -> difference [interval], seeds, verdict, read from the committed
  reference results (Toy, Books: nothing is trained) or trained at a profile on any dataset (the run cache makes a
  second call free); ``source="reference"`` trains the reference runs that are not committed yet and, with
  ``publish``, commits them under ``results/<profile>/transfer/`` (``llmrec verdicts --reference --publish``);
* :func:`show`, :func:`verdict_grid`, :func:`where_it_holds` and :func:`findings` read it: a table, a grid of
  verdicts, and sentences whose numbers come from the table.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from ..core.metrics import compare_by_user, entry_values, user_bootstrap
from ..core.profiles import dataset_for
from ..core.results import TableRecord, entry_from_evaluation, write_record
from ..core.rundir import runs_root
from .published import provenance_record, slug
from .tables import for_reader
from .transfer_runs import (ARMS, CHOSEN_DEFAULT, RANKING, REFERENCE_SEEDS, SCE, committed_record, eval_keys, jobs,
                            train_jobs)


@dataclass(frozen=True)
class Claim:
    """A paper's headline comparison: ``method`` is better than ``baseline`` (arms of :data:`ARMS`) on ``metrics``."""

    key: str  # its short name (``llmrec verdicts --claims``)
    says: str
    paper: str
    baseline: str
    method: str
    metrics: tuple


LLM_METRICS = ("nll_valid", "ndcg@10", "hr@10")  # the likelihood of the target's title (500+ users), beam search
MSL, SCE_PAPER, LITE = "MSL (arXiv 2504.04178)", "SCE (arXiv 2408.14238)", "Lite-LLM4Rec (arXiv 2402.09543)"
CLAIMS = (
    Claim("msl-ats", "MSL + ATS beats LML", f"{MSL}, Tables 5-6", "LML", "MSL + ATS", LLM_METRICS),
    Claim("msl-alpha", "MSL + α beats LML", f"{MSL}, Table 6", "LML", "MSL + α", LLM_METRICS),
    Claim("sdpo", "S-DPO beats LML", f"S-DPO (arXiv 2406.09215); {MSL}, Table 5", "LML", "S-DPO", LLM_METRICS),
    Claim("sce", "SCE ranks at least as well as full CE (SASRec)", SCE_PAPER, "SASRec + CE", SCE, RANKING),
    Claim("ce-bce", "CE beats BCE (SASRec)", SCE_PAPER, "SASRec + BCE", "SASRec + CE", RANKING),
    Claim("ce-bpr", "CE beats BPR (SASRec)", SCE_PAPER, "SASRec + BPR", "SASRec + CE", RANKING),
    Claim("lite-sasrec", "Lite-LLM4Rec beats SASRec + CE", LITE, "SASRec + CE", "Lite-LLM4Rec", RANKING),
    Claim("lite-popularity", "Lite-LLM4Rec beats popularity", LITE, "popularity", "Lite-LLM4Rec", RANKING),
    # the same claim against the stronger SASRec that chapter 07 chose on validation (issue 26)
    Claim("lite-sasrec-default", "Lite-LLM4Rec beats SASRec + CE at its chosen default", LITE, CHOSEN_DEFAULT,
          "Lite-LLM4Rec", RANKING),
)
LOWER_IS_BETTER = ("nll_valid",)
SHIPPED = ("toy", "books")  # the datasets with committed reference results


def expected_sign(metric: str) -> int:
    """The sign of (method − baseline) that the paper's claim predicts: −1 for a negative log-likelihood."""
    return -1 if metric in LOWER_IS_BETTER else 1


def claims(keys=None) -> tuple[Claim, ...]:
    """:data:`CLAIMS`, or those named by ``keys`` (an unknown key is an error that lists them)."""
    if not keys:
        return CLAIMS
    known = {c.key: c for c in CLAIMS}
    unknown = [k for k in keys if k not in known]
    if unknown:
        raise ValueError(f"unknown claim(s) {unknown}; choose among {list(known)}")
    return tuple(known[k] for k in keys)


# ------------------------------------------------------------------------------------------------ the verdict rule

VERDICTS = ("holds", "reversed", "unresolved")


def side(result: dict, sign: int) -> int:
    """+1 where a paired interval (``lo``, ``hi`` and :func:`llmrec.core.metrics.verdict`'s ``verdict``) excludes 0
    on the side ``sign`` predicts, −1 where it excludes it on the other side, 0 where it does not exclude it beyond
    the bootstrap's own Monte Carlo noise (``verdict`` "unresolved" or "edge")."""
    if result["verdict"] != "resolved":
        return 0
    return sign if result["lo"] > 0 else -sign


def claim_verdict(sides) -> str:
    """"holds" when every interval excludes 0 in the paper's direction (every :func:`side` is +1), "reversed" when
    every one excludes it in the other (−1), else "unresolved"."""
    sides = list(sides)
    if not sides:
        raise ValueError("a verdict needs at least one interval")
    if all(s > 0 for s in sides):
        return "holds"
    if all(s < 0 for s in sides):
        return "reversed"
    return "unresolved"


def compare_seeds(a: dict, b: dict, metric: str, sign: int | None = None) -> dict:
    """(b − a) on ``metric`` for two arms evaluated on the same windows: ``a`` and ``b`` map a seed to an evaluation
    entry (the seed None: an arm without seeds, popularity, paired with each seed of the other arm).

    Each seed both arms have gets :func:`~llmrec.core.metrics.compare_by_user` (the windows of one user resampled
    together); the seed mean compares per window the mean over each arm's own seeds the same way. Returns the
    seed-mean ``diff``, ``lo``, ``hi`` and both means, ``per_seed`` {seed: result}, and the verdict of each rule:
    ``verdict`` (every seed in common, :func:`claim_verdict`) and ``mean_verdict`` (the seed-averaged interval);
    ``sign`` is the direction the paper predicts (default :func:`expected_sign`)."""
    sign = expected_sign(metric) if sign is None else sign
    if not a or not b:
        raise ValueError("each arm needs at least one evaluated seed")
    a = {s: a[None] for s in b} if set(a) == {None} else a
    b = {s: b[None] for s in a} if set(b) == {None} else b
    entries = [*a.values(), *b.values()]
    users = entries[0]["user_ids"]
    if any(e["user_ids"] != users for e in entries):
        raise ValueError(f"{metric}: the runs compared were evaluated on different windows")
    per_seed = {s: compare_by_user(a[s], b[s], metric) for s in sorted(set(a) & set(b))}
    mean_a = np.mean([entry_values(e, metric) for e in a.values()], axis=0)
    mean_b = np.mean([entry_values(e, metric) for e in b.values()], axis=0)
    mean = user_bootstrap(mean_a, mean_b, users)
    return {**{k: mean[k] for k in ("a", "b", "diff", "lo", "hi", "n", "n_users")}, "per_seed": per_seed,
            "seeds_a": len(a), "seeds_b": len(b),
            "verdict": claim_verdict(side(r, sign) for r in per_seed.values()) if per_seed else "unresolved",
            "mean_verdict": claim_verdict([side(mean, sign)])}


def disagreement(verdicts: dict[str, str]) -> str:
    """A note where NDCG@10 and HR@10 give different verdicts (``verdicts``: metric -> verdict), else ""."""
    v = {m: verdicts.get(m) for m in RANKING}
    if None in v.values() or len(set(v.values())) == 1:
        return ""
    return f"NDCG@10 and HR@10 disagree ({v['ndcg@10']} / {v['hr@10']})"


# ------------------------------------------------------------------------------------------------ the table

SOURCES = ("committed", "train", "reference")
COLUMNS = ("claim", "key", "paper", "dataset", "metric", "expects", "baseline", "method", "source", "seeds",
           "baseline mean", "method mean", "diff", "lo", "hi", "seed diffs", "verdict", "seed-mean verdict", "windows",
           "users", "note")


def plan(dataset: str | None = None, profile: str = "quick", seeds=None, source: str | None = None, keys=None,
         publish: bool = False) -> tuple:
    """What :func:`transfer_table` with these arguments reads and trains, before anything trains: (the dataset,
    the source, the seeds, the claims, {(arm, seed): {metric: evaluation}} of the committed runs it reads, and the
    :class:`~.transfer_runs.Job` list it trains or finds in the run cache; :func:`.transfer_runs.describe` says
    what they cost)."""
    ds = dataset_for(profile, dataset)
    source = source or ("committed" if ds in SHIPPED else "train")
    if source not in SOURCES:
        raise ValueError(f"unknown source {source!r}; choose one of {SOURCES}")
    if source == "reference" and ds not in SHIPPED:
        raise ValueError(f"reference runs are made for the shipped datasets {SHIPPED}, not {ds!r}: train yours at a "
                         "profile (source 'train')")
    if publish and source != "reference":
        raise ValueError("publish commits the reference runs of a shipped dataset (source 'reference') only")
    seeds = tuple(seeds) if seeds else ((0,) if source == "train" else REFERENCE_SEEDS)
    chosen = claims(keys)
    todo = jobs(ds, profile if source == "train" else None, seeds, [n for c in chosen for n in (c.baseline, c.method)])
    evals = {}
    if source != "train":
        for job in todo:
            if job.arm.family != "popularity":
                wanted = eval_keys(job.arm, job.profile)
                rec = committed_record(job.arm, ds, job.seed, set(wanted.values()))
                if rec is not None:
                    evals[(job.arm.name, job.seed)] = {m: entry_from_evaluation(rec.evaluations[k])
                                                       for m, k in wanted.items()}
        todo = [j for j in todo if (j.arm.name, j.seed) not in evals
                and (source == "reference" or j.arm.family == "popularity")]
    return ds, source, seeds, chosen, evals, todo


def transfer_table(dataset: str | None = None, profile: str = "quick", seeds=None, source: str | None = None,
                   device: str | None = None, keys=None, progress: bool = False, publish: bool = False
                   ) -> pd.DataFrame:
    """Every claim of ``keys`` (None: :data:`CLAIMS`) on ``dataset``: one row per claim and metric with both arms'
    means, the seed-mean difference (method − baseline) and its paired 95% interval over users, the per-seed
    differences, the verdict of every seed (``verdict``, :func:`claim_verdict`) and of the seed mean, and a note
    where NDCG@10 and HR@10 disagree.

    ``source``: ``"committed"`` (the default for Toy and Books) reads the committed reference runs, each arm at its
    reference profile, and trains nothing (a cell without one says "no committed run"); ``"train"`` (the default
    for any other dataset, e.g. a prepared folder) trains every arm at ``profile`` with ``seeds`` (default: seed 0)
    or finds it in the run cache; ``"reference"`` trains the reference runs that are not committed (with
    ``publish``: commits each as it finishes). ``dataset`` goes through :func:`~llmrec.core.profiles.dataset_for`
    (under ``smoke``: the synthetic catalogue). How many runs were trained, found and computed, and the seconds,
    are in the table's ``attrs``."""
    ds, source, seeds, chosen, evals, todo = plan(dataset, profile, seeds, source, keys, publish)
    trained = train_jobs(todo, device, progress, publish)
    stats = trained.pop("_stats")
    evals.update(trained)
    rows = [r for c in chosen for r in claim_rows(c, ds, evals, seeds, source)]
    table = pd.DataFrame(rows, columns=COLUMNS)
    table.attrs.update(stats, dataset=ds, source=source, profile=profile if source == "train" else "reference",
                       seeds=list(seeds))
    return table


def reference_table(keys=None) -> pd.DataFrame:
    """The committed reference on every shipped dataset (Toy, then Books) in one table: what the chapters, the
    README and the book quote (nothing trains)."""
    return pd.concat([transfer_table(ds, keys=keys) for ds in SHIPPED], ignore_index=True)


def _arm_seeds(name: str, metric: str, evals: dict, seeds) -> dict:
    if ARMS[name].family == "popularity":
        return {None: evals[(name, seeds[0])][metric]}
    return {s: evals[(name, s)][metric] for s in seeds if (name, s) in evals}


def claim_rows(claim: Claim, dataset: str, evals: dict, seeds, source: str) -> list[dict]:
    """The rows of one claim on one dataset from ``evals`` ({(arm, seed): {metric: evaluation}}): one per metric."""
    rows = []
    for metric in claim.metrics:
        row = {"claim": claim.says, "key": claim.key, "paper": claim.paper, "dataset": dataset, "metric": metric,
               "expects": "lower" if expected_sign(metric) < 0 else "higher", "baseline": claim.baseline,
               "method": claim.method, "source": source}
        a, b = (_arm_seeds(n, metric, evals, seeds) for n in (claim.baseline, claim.method))
        if not a or not b:
            missing = " and ".join(n for n, e in ((claim.baseline, a), (claim.method, b)) if not e)
            rows.append({**row, "verdict": "no committed run" if source == "committed" else "not run",
                         "note": f"no run of {missing} with seeds {list(seeds)}"})
            continue
        r = compare_seeds(a, b, metric)
        same = r["seeds_a"] == r["seeds_b"] == len(r["per_seed"])  # the same seeds on both sides
        rows.append({**row, "seeds": f"{r['seeds_b']}" if same else f"{r['seeds_b']} vs {r['seeds_a']}",
                     "baseline mean": r["a"], "method mean": r["b"],
                     "diff": r["diff"], "lo": r["lo"], "hi": r["hi"],
                     "seed diffs": [p["diff"] for p in r["per_seed"].values()],
                     "verdict": r["verdict"], "seed-mean verdict": r["mean_verdict"], "windows": r["n"],
                     "users": r["n_users"], "note": "no target in either arm's top 10 on these windows"
                     if metric in RANKING and r["a"] == r["b"] == 0 else ""})
    note = disagreement({r["metric"]: r["verdict"] for r in rows})
    return [{**r, "note": r["note"] or note} for r in rows]


# ------------------------------------------------------------------------------------------------ reading it

NAMES = {"nll_valid": "−log P_valid", "ndcg@10": "NDCG@10", "hr@10": "HR@10"}


def _digits(metric: str) -> int:
    return 2 if metric in LOWER_IS_BETTER else 4


def _signed(x: float, metric: str) -> str:
    return f"{x:+.{_digits(metric)}f}".replace("-", "−")


def interval_text(diff: float, lo: float, hi: float, metric: str) -> str:
    """``+0.0034 [+0.0012, +0.0057]`` (a likelihood in nats: two decimals)."""
    return (f"{_signed(diff, metric)} [{_signed(lo, metric)}, {_signed(hi, metric)}]"
            + (" nats" if metric in LOWER_IS_BETTER else ""))


def show(table: pd.DataFrame) -> pd.DataFrame:
    """The table as a reader sees it (:func:`llmrec.experiments.tables.for_reader`): claim, measure, dataset, the
    difference of the seed means (method − baseline) and its 95% interval in one column, seeds, the range of the
    per-seed differences, the verdict (every seed), the seed mean's, and the note; "–" where a cell has no run."""
    def spread(r) -> str | None:
        d = r["seed diffs"] if isinstance(r["seeds"], str) else None
        return f"{_signed(min(d), r['metric'])} to {_signed(max(d), r['metric'])}" if d and len(d) > 1 else None

    frame = table[["claim", "metric", "dataset", "diff", "lo", "hi", "seeds"]].assign(
        **{"per seed": [spread(r) for r in table.to_dict("records")], "verdict": table["verdict"],
           "seed-mean verdict": table["seed-mean verdict"], "note": table["note"]})
    return for_reader(frame)


def verdict_grid(table: pd.DataFrame) -> pd.DataFrame:
    """Claim and metric x dataset -> verdict (:func:`llmrec.experiments.tables.for_reader` puts the measures in
    words)."""
    return table.pivot_table(index=["claim", "metric"], columns="dataset", values="verdict", aggfunc="first",
                             sort=False)


def _seeds_text(row: dict) -> str:
    """``3 seeds``, or ``1 seed of Lite-LLM4Rec against 3 of SASRec + CE``."""
    m, _, b = row["seeds"].partition(" vs ")
    plural = f"{m} seed" + ("" if m == "1" else "s")
    return f"{plural} of {row['method']} against {b} of {row['baseline']}" if b else plural


def _cell_text(row: dict) -> str:
    """A dataset's cell of a sentence: ``toy (+0.0034 [+0.0013, +0.0053], 3 seeds; the seed mean: holds)``."""
    if not isinstance(row["seeds"], str):
        return row["dataset"]
    mean = f"; the seed mean: {row['seed-mean verdict']}" if row["seed-mean verdict"] != row["verdict"] else ""
    return (f"{row['dataset']} ({interval_text(row['diff'], row['lo'], row['hi'], row['metric'])}, "
            f"{_seeds_text(row)}{mean})")


def where_it_holds(table: pd.DataFrame, key: str, metrics=("ndcg@10",)) -> str:
    """Sentences from the table's numbers: where claim ``key`` holds, is reversed, is unresolved and has no run, on
    each of ``metrics`` (a name or several), with each difference, interval and seed count (and the seed mean's
    verdict where it differs), and where NDCG@10 and HR@10 disagree."""
    metrics = (metrics,) if isinstance(metrics, str) else tuple(metrics)
    rows = table[table["key"] == key]
    parts = []
    for metric in metrics:
        t = rows[rows["metric"] == metric]
        if t.empty:
            raise ValueError(f"no rows of claim {key!r} on {metric} in this table")
        parts.append(f"{NAMES.get(metric, metric)}: " + "; ".join(
            f"{verdict} on " + ", ".join(_cell_text(r) for r in g.to_dict("records"))
            for verdict, g in t.groupby("verdict", sort=False)) + ".")
    notes = dict.fromkeys(f"On {r['dataset']}, {r['note']}." for r in rows.to_dict("records")
                          if r["note"] and isinstance(r["seeds"], str))
    return " ".join([f"{rows['claim'].iloc[0]} (method − baseline).", *parts, *notes])


def findings(table: pd.DataFrame, metrics=("nll_valid", "ndcg@10")) -> list[str]:
    """:func:`where_it_holds` for every claim of the table, on those of ``metrics`` it is judged by."""
    return [where_it_holds(table, key, [m for m in metrics if ((table["key"] == key) & (table["metric"] == m)).any()])
            for key in dict.fromkeys(table["key"])]


def save_table(table: pd.DataFrame, path: str | Path | None = None) -> Path:
    """The table as a results record (a table record with its provenance) at ``path``, by default
    ``runs/verdicts/<dataset>-<source or profile>.json`` (never under ``results/``)."""
    ds, how = table.attrs.get("dataset", "dataset"), table.attrs.get("profile", "table")
    name = Path(ds).name if Path(ds).is_dir() else ds
    path = Path(path) if path else runs_root() / "verdicts" / f"{slug(name)}-{how}.json"
    rows = json.loads(table.to_json(orient="records"))  # NaN (a cell without runs) as null
    record = TableRecord(name=f"verdicts on {name}", what="do the conclusions transfer? claim x dataset x metric: "
                         "the paired difference, its 95% interval over users, the seeds and the verdict",
                         dataset=str(ds), profile=how, rows=rows, meta=dict(table.attrs), provenance=provenance_record())
    return write_record(path, record)
