"""Which SASRec should be the default (issue 26)? Each measured departure from the reference code, singly and
combined, trained with several seeds under the classic protocol at CE's chosen learning rate, and chosen on
validation NDCG@10 (the seeds' mean); no test window is evaluated here. One committed record per run
(``results/<profile>/07_classic/default/``), resumable."""

from __future__ import annotations

import time
from pathlib import Path

import pandas as pd

from .. import runs
from ..core.results import read_record, run_record, write_record
from ..data import dataset_fingerprint
from .classic_protocol import (CHOSEN_DEFAULT, PROTOCOL_VARIANTS, REFERENCE_CODE, protocol_selection,
                               protocol_variants)
from .profile_runs import seqrec_config
from .published import provenance, results_root, slug

TODAY = "today's default"
# each departure's change against the reference code (REFERENCE_CODE)
_SINGLE = {name.removeprefix("CE, "): {k: v for k, v in over.items() if k != "loss" and REFERENCE_CODE.get(k) != v}
           for name, over in PROTOCOL_VARIANTS.items() if name.startswith("CE, ") and name != CHOSEN_DEFAULT}
# the departures that did not lose on test as single changes (chapter 07), combined two by two and all three
_COMBINED = ("N(0, 0.02) init", "Adam beta2 0.999", "GELU FFN of width 4d")
CANDIDATES: dict[str, dict] = {
    TODAY: {}, **_SINGLE,
    **{f"{a} + {b}": {**_SINGLE[a], **_SINGLE[b]}
       for i, a in enumerate(_COMBINED) for b in _COMBINED[i + 1:]},
    " + ".join(_COMBINED): {k: v for n in _COMBINED for k, v in _SINGLE[n].items()},
}


def candidate_config(profile: str, dataset: str, name: str, seed: int, lr: float | None = None) -> dict:
    """SASRec + CE with candidate ``name``'s changes to the reference code at ``profile`` (at ``lr`` where given)."""
    return seqrec_config(profile, dataset, loss="ce", seed=seed, **{**REFERENCE_CODE, **CANDIDATES[name]},
                         **({"lr": lr} if lr is not None else {}))


def ce_rate(profile: str, dataset: str) -> float | None:
    """The learning rate the protocol chose for SASRec + CE on validation (its committed selection), else None."""
    try:
        selection = protocol_selection(profile, dataset, train=False, progress=False)
    except FileNotFoundError:
        return None
    return protocol_variants(selection)["SASRec + CE"].get("lr")


def default_selection(profile: str = "laptop", dataset: str = "toy", names=None, seeds=(0, 1, 2),
                      folder: str | Path | None = None, train: bool = True, progress: bool = True) -> pd.DataFrame:
    """Train each candidate of :data:`CANDIDATES` (``names``: only these) with each seed, at the rate
    :func:`ce_rate` gives, under the profile's protocol (early stopping on validation NDCG@10), and tabulate
    their best validation NDCG@10: the seeds' mean, min and max, the best epochs, the seconds per run. The
    candidate with the highest mean is ``chosen``; ``margin`` is each mean minus today's default's, and
    ``beyond spread`` says whether a candidate's worst seed beats today's best. One record per run in ``folder``
    (default ``results/<profile>/07_classic/default/``) as it finishes; ``train=False`` reads only those."""
    folder = Path(folder or results_root() / profile / "07_classic" / "default")
    lr = ce_rate(profile, dataset)
    rows = []
    for name in names or CANDIDATES:
        for seed in seeds:
            path = folder / f"{slug(dataset)}-{slug(name)}-seed-{seed}.json"
            if not path.exists():
                if not train:
                    raise FileNotFoundError(f"no committed default-selection run {path}")
                t0 = time.perf_counter()
                run = runs.train(candidate_config(profile, dataset, name, seed, lr), progress=False)
                write_record(path, run_record(
                    run, name=f"{name} / seed {seed}", profile=profile, keys=(),
                    what="SASRec's default chosen on validation (no test window evaluated)",
                    extra={"candidate": name, "seed": seed, "lr": lr}, provenance=provenance(),
                    dataset_fingerprint=dataset_fingerprint(dataset)))
                if progress:
                    print(f"{name} / seed {seed}: {time.perf_counter() - t0:.0f} s -> {path}", flush=True)
            t = read_record(path).training
            rows.append({"candidate": name, "seed": seed, "valid ndcg@10": t.best_valid["ndcg@10"],
                         "best epoch": t.best_epoch, "s/run": t.seconds_total})
    return selection_table(pd.DataFrame(rows))


def selection_table(runs_frame: pd.DataFrame) -> pd.DataFrame:
    """Per candidate (one row per run in ``runs_frame``): seeds, mean, min and max of validation NDCG@10, best
    epochs, seconds per run, the margin over today's default, whether it holds beyond the seeds' spread, and the
    one ``chosen`` (highest mean; ties: the first, today's default first)."""
    g = runs_frame.groupby("candidate", sort=False)
    v = g["valid ndcg@10"]
    table = pd.DataFrame({"seeds": g.size(), "valid ndcg@10": v.mean(), "min": v.min(), "max": v.max(),
                          "best epochs": g["best epoch"].agg(lambda s: ", ".join(map(str, s))),
                          "s/run": g["s/run"].mean()})
    if TODAY in table.index:
        table["margin"] = table["valid ndcg@10"] - table.loc[TODAY, "valid ndcg@10"]
        table["beyond spread"] = table["min"] > table.loc[TODAY, "max"]
    table["chosen"] = False
    table.loc[table["valid ndcg@10"].idxmax(), "chosen"] = True
    return table


def chosen(table: pd.DataFrame) -> str:
    """The candidate :func:`selection_table` chose."""
    return str(table.index[table["chosen"]][0])


def forward_path(table: pd.DataFrame) -> list[str]:
    """Forward selection on validation alone over the candidates measured: from today's default, move to the
    candidate that adds one departure and most raises the seed mean, while one does. The pairs were drawn from
    the departures that did not lose on test alone (a choice that looked at test); this path says whether a
    choice made on validation only reaches the same candidate."""
    parts = {name: frozenset() if name == TODAY else frozenset(name.split(" + ")) for name in table.index}
    path = [TODAY]
    while True:
        here = parts[path[-1]]
        steps = [n for n, p in parts.items() if len(p) == len(here) + 1 and here < p]
        better = [n for n in steps if table.loc[n, "valid ndcg@10"] > table.loc[path[-1], "valid ndcg@10"]]
        if not better:
            return path
        path.append(max(better, key=lambda n: table.loc[n, "valid ndcg@10"]))


def default_reference(profile: str = "laptop", dataset: str = "toy", seeds=(0, 1, 2), progress: bool = True
                      ) -> pd.DataFrame:
    """What ``make results-classic`` runs for SASRec's default after the protocol: on Toy every candidate of
    :data:`CANDIDATES` (:func:`default_selection`); on another dataset the candidate Toy chose beside today's
    default, on that dataset's validation only (does the choice hold there?)."""
    if dataset == "toy":
        return default_selection(profile, "toy", seeds=seeds, progress=progress)
    pick = chosen(default_selection(profile, "toy", seeds=seeds, train=False, progress=False))
    return default_selection(profile, dataset, names=(TODAY, pick), seeds=seeds, progress=progress)
