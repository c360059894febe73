"""Which classic loss wins under one fair protocol (chapter 07, ``make results-classic``): each loss's learning
rate chosen on validation, then every loss and each measured departure from the reference SASRec code with
several seeds, and the SCE paper's K x α grid; one committed JSON per run, resumable."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pandas as pd

from .. import runs
from ..core.io import read_json
from ..core.metrics import entry_values, user_bootstrap
from ..core.results import read_record, run_record, write_record
from ..data import dataset_fingerprint
from ..seqrec.config import MODEL_DEFAULTS, REFERENCE
from .profile_runs import seqrec_config
from .published import export_runs, provenance, read_runs, results_root, slug


# The protocol measures against the reference SASRec code (its options named, so that the study's chosen default,
# which train_config adds to a "sasrec" configuration, does not apply): with the reference's values, a
# configuration omits them and every committed run keeps its key.
REFERENCE_CODE = {k: REFERENCE[k] for k in MODEL_DEFAULTS["sasrec"]}

# one change each against SASRec + CE (issue 16): losses, and the measured departures from the reference code
_CHANGES = {
    "SASRec + CE": {"loss": "ce"},
    "SASRec + BCE": {"loss": "bce"},
    "SASRec + BPR": {"loss": "bpr"},
    "SASRec + sampled softmax (K 500)": {"loss": "sampled-softmax", "negatives": 500},
    "SASRec + SCE (K 500, α 100)": {"loss": "sce", "negatives": 500, "alpha": 100.0},
    "CE, post-LN blocks": {"loss": "ce", "norm": "post"},
    "CE, GELU FFN of width 4d": {"loss": "ce", "ffn_act": "gelu", "ffn_mult": 4},
    "CE, no embedding scaling": {"loss": "ce", "emb_scale": False},
    "CE, N(0, 0.02) init": {"loss": "ce", "init": "normal"},
    "CE, PyTorch default init": {"loss": "ce", "init": "torch"},
    "CE, Adam beta2 0.999": {"loss": "ce", "adam_beta2": 0.999},
    "SCE (K 500, α 100), negatives per position": {"loss": "sce", "negatives": 500, "alpha": 100.0,
                                                   "negatives_per": "position"},
}
PROTOCOL_VARIANTS = {name: {**REFERENCE_CODE, **change} for name, change in _CHANGES.items()}

# SASRec's default chosen on validation among those departures, singly and combined (issue 26,
# :mod:`llmrec.experiments.sasrec_default`; a test checks that its committed selection chose these three)
CHOSEN_DEPARTURES = ("CE, N(0, 0.02) init", "CE, Adam beta2 0.999", "CE, GELU FFN of width 4d")
CHOSEN_DEFAULT = "CE, chosen default (the three combined)"
PROTOCOL_VARIANTS[CHOSEN_DEFAULT] = {k: v for name in ("SASRec + CE", *CHOSEN_DEPARTURES)
                                     for k, v in _CHANGES[name].items()}


def sce_protocol_variants(selection: pd.DataFrame | None = None, Ks=(10, 100, 500), alphas=(1.0, 10.0, 100.0)) -> dict:
    """The SCE paper's grid of negatives K and scale α under the protocol (α = 1 is sampled softmax), named as
    the main table's variants so that their shared cells are one run; each at the learning rate ``selection``
    chose for SCE (sampled softmax for α = 1)."""
    chosen = protocol_variants(selection)
    out = {}
    for K in Ks:
        for a in alphas:
            if a == 1.0:
                name, base = f"SASRec + sampled softmax (K {K})", chosen["SASRec + sampled softmax (K 500)"]
                over = {"loss": "sampled-softmax", "negatives": K}
            else:
                name, base = f"SASRec + SCE (K {K}, α {a:g})", chosen["SASRec + SCE (K 500, α 100)"]
                over = {"loss": "sce", "negatives": K, "alpha": float(a)}
            out[name] = {**REFERENCE_CODE, **over, **({"lr": base["lr"]} if "lr" in base else {})}
    return out


PROTOCOL_LOSSES = ("SASRec + CE", "SASRec + BCE", "SASRec + BPR", "SASRec + sampled softmax (K 500)",
                   "SASRec + SCE (K 500, α 100)")

PROTOCOL_LRS = (1e-3, 3e-3, 1e-2)  # the learning rates each loss is tried at (seed 0, validation only)

PROTOCOL_LRS_BEYOND = (3e-2, 1e-1)  # tried in turn while a loss's best is the largest rate tried

PROTOCOL_LRS_BELOW = (3e-4, 1e-4)  # tried in turn while a loss's best is the smallest rate tried


def protocol_selection(profile: str, dataset: str, lrs=PROTOCOL_LRS, names=PROTOCOL_LOSSES, seed: int = 0,
                       folder: str | Path | None = None, progress: bool = True, train: bool = True,
                       beyond=PROTOCOL_LRS_BEYOND, below=PROTOCOL_LRS_BELOW) -> pd.DataFrame:
    """The same budget for every loss: each is trained at each learning rate of ``lrs`` (seed ``seed``, the
    profile's protocol: early stopping on validation NDCG@10) and the rate with the best validation NDCG@10 is
    chosen (ties: the smallest rate). While a loss's best is the largest rate tried, the next larger rate of
    ``beyond`` is tried too, and while it is the smallest, the next smaller rate of ``below`` (the same rule for
    every loss: the chosen rate lies inside the rates tried, unless those run out; ``beyond=below=()`` tries
    ``lrs`` only).
    No test window is evaluated. One JSON per run in ``folder`` (default ``results/<profile>/07_classic/selection/``)
    as it finishes (resumable). Returns one row per (variant, lr) with ``chosen``; ``train=False`` only reads the
    committed files."""
    folder = Path(folder or results_root() / profile / "07_classic" / "selection")

    def one(name: str, lr: float) -> dict:
        path = folder / f"{slug(dataset)}-{slug(name)}-lr-{lr:g}.json"
        if not path.exists() and not train:
            raise FileNotFoundError(f"no committed learning-rate selection {path} (make results-classic)")
        if not path.exists():
            t0 = time.perf_counter()
            run = runs.train(seqrec_config(profile, dataset, seed=seed, **{**PROTOCOL_VARIANTS[name], "lr": lr}),
                             progress=False)
            write_record(path, run_record(
                run, name=name, what="learning-rate selection on validation (no test window evaluated)",
                profile=profile, keys=(), extra={"lr": lr, "seed": seed}, provenance=provenance(),
                dataset_fingerprint=dataset_fingerprint(dataset)))
            if progress:
                print(f"{name}, lr {lr:g}: {time.perf_counter() - t0:.0f} s -> {path}", flush=True)
        t = read_record(path).training
        return {"variant": name, "lr": lr, "valid ndcg@10": t.best_valid["ndcg@10"], "best epoch": t.best_epoch,
                "at cap": t.best_epoch == t.epochs_cap, "s/run": t.seconds_total,
                "peak MB": t.facts.get("peak_memory_mb")}

    rows = []
    for name in names:
        tried = [one(name, lr) for lr in sorted(lrs)]
        up = sorted(lr for lr in beyond if lr > max(lrs))
        down = sorted((lr for lr in below if lr < min(lrs)), reverse=True)
        while True:
            best = max(tried, key=lambda r: r["valid ndcg@10"])  # ties: the first, the smallest rate
            if best is tried[-1] and up:  # the best is the upper edge
                tried.append(one(name, up.pop(0)))
            elif best is tried[0] and down:  # the lower edge
                tried.insert(0, one(name, down.pop(0)))
            else:
                break
        rows += tried
    df = pd.DataFrame(rows)
    best = df.loc[df.groupby("variant", sort=False)["valid ndcg@10"].idxmax()]
    df["chosen"] = df.index.isin(best.index)
    return df.set_index(["variant", "lr"])


def protocol_variants(selection: pd.DataFrame | None) -> dict:
    """:data:`PROTOCOL_VARIANTS` with each loss at the learning rate ``selection`` chose for it, and each SASRec
    departure at the one chosen for CE (None: the profile's learning rate for all)."""
    if selection is None:
        return dict(PROTOCOL_VARIANTS)
    chosen = {v: lr for (v, lr), c in selection["chosen"].items() if c}
    ce = chosen.get("SASRec + CE")
    out = {}
    for name, over in PROTOCOL_VARIANTS.items():
        # a loss at its own rate; a departure at the rate of the loss it changes (SCE's, else CE's)
        lr = chosen.get(name, chosen.get("SASRec + SCE (K 500, α 100)") if over["loss"] == "sce" else ce)
        out[name] = {**over, **({"lr": lr} if lr is not None else {})}
    return out


def protocol_grid(profile: str, dataset: str, variants: dict | None = None, seeds=(0, 1, 2),
                  folder: str | Path | None = None, progress: bool = True) -> dict:
    """Train each variant with each seed under the profile's classic protocol (early stopping on validation
    NDCG@10), evaluate on every test window, and write each run's JSON into ``folder`` as it finishes
    (resumable: a run already there with the same options is read, not trained; one with other options, e.g.
    another chosen learning rate, is trained again and replaced). Returns {"<variant> / seed <s>": (run facts, ev)}."""
    variants = PROTOCOL_VARIANTS if variants is None else variants
    folder = Path(folder or results_root() / profile / "07_classic")
    out = {}
    for name, over in variants.items():
        for seed in seeds:
            key = f"{name} / seed {seed}"
            path = folder / f"{slug(dataset)}-{slug(key)}.json"
            wanted = seqrec_config(profile, dataset, seed=seed, **over)
            if path.exists():
                have = read_json(path)["config"]
                if any(have.get(k) != v for k, v in wanted.items() if k not in ("device", "profile")):
                    path.unlink()  # made with other options: train the wanted run below
            if not path.exists():
                t0 = time.perf_counter()
                run = runs.train(wanted, progress=False)
                export_runs({key: (run, runs.evaluate(run, "test", "full", progress=False))}, folder, profile,
                            dataset, "classic protocol: every test window, full ranking")
                if progress:
                    print(f"{key}: {time.perf_counter() - t0:.0f} s -> {path}", flush=True)
    for name, entry in read_runs(folder, dataset).items():
        out[name] = entry
    return out


# What ``make results-classic`` runs per dataset: on Toy every variant (the losses and each measured SASRec
# departure) and the SCE grid; on Books the losses and the chosen default (a Books run costs about 3x a Toy one on 2 cores)
CLASSIC_REFERENCE = {"toy": dict(names=None, grid=True),
                     "books": dict(names=PROTOCOL_LOSSES + (CHOSEN_DEFAULT,), grid=False)}


def classic_reference(profile: str = "laptop", dataset: str = "toy", seeds=(0, 1, 2), grid_seeds=(0,),
                      names=..., grid=..., progress: bool = True) -> dict:
    """Chapter 07's committed reference (``make results-classic``), resumable at every run: the learning rate of
    each loss chosen on validation (:func:`protocol_selection`), the variants ``names`` of :data:`PROTOCOL_VARIANTS`
    (None: all) with ``seeds`` at the chosen rates, then, with ``grid``, the SCE paper's K x α grid with
    ``grid_seeds``. Unset, ``names`` and ``grid`` are the dataset's :data:`CLASSIC_REFERENCE` (else all of it)."""
    plan = CLASSIC_REFERENCE.get(dataset, dict(names=None, grid=True))
    names = plan["names"] if names is ... else names
    grid = plan["grid"] if grid is ... else grid
    selection = protocol_selection(profile, dataset, progress=progress)
    variants = protocol_variants(selection)
    if names is not None:
        variants = {n: variants[n] for n in names}
    out = protocol_grid(profile, dataset, variants, seeds, progress=progress)
    if grid:
        out.update(protocol_grid(profile, dataset, sce_protocol_variants(selection), grid_seeds, progress=progress))
    return out


def protocol_table(evals: dict, baseline: str = "SASRec + CE", metric: str = "ndcg@10", names=None) -> pd.DataFrame:
    """Per variant over its seeds: mean and spread (min, max) of ``metric``, the mean paired difference against
    ``baseline`` on the same windows and its interval (per window, the mean over the seeds both have; then
    :func:`llmrec.core.metrics.user_bootstrap`, a user's windows resampled together) with its verdict,
    best epochs, how many runs stopped at their cap (not at a plateau) and the seconds per run. ``names``: only
    these variants (and the baseline), in this order."""
    by = {}
    for key, (facts, ev) in evals.items():
        name, seed = key.rsplit(" / seed ", 1)
        if names is None or name in names or name == baseline:
            by.setdefault(name, {})[int(seed)] = (facts, ev)
    rows = []
    first = list(names) if names is not None else list(PROTOCOL_VARIANTS)
    order = [baseline] * (baseline in by) + [v for v in first if v in by and v != baseline]
    order += sorted(v for v in by if v not in order)
    for name in order:
        seeds = by[name]
        vals = [float(entry_values(ev, metric).mean()) for _, ev in seeds.values()]
        r = {"variant": name, "seeds": len(vals), metric: float(np.mean(vals)), f"{metric} min": min(vals),
             f"{metric} max": max(vals),
             "best epochs": ", ".join(str(f.get("best_epoch")) for f, _ in seeds.values()),
             "at cap": sum(f.get("best_epoch") == f.get("epochs_cap") for f, _ in seeds.values()),
             "s/run": float(np.mean([f.get("seconds_total") or np.nan for f, _ in seeds.values()]))}
        base = by.get(baseline, {})
        shared = [s for s in seeds if s in base]
        if name != baseline and shared:
            if any(base[s][1]["user_ids"] != seeds[s][1]["user_ids"] for s in shared):
                raise ValueError(f"{name} and {baseline} were evaluated on different windows")
            # per user, the mean over the shared seeds; then a paired bootstrap over users
            a = np.mean([entry_values(base[s][1], metric) for s in shared], axis=0)
            b = np.mean([entry_values(seeds[s][1], metric) for s in shared], axis=0)
            d = user_bootstrap(a, b, seeds[shared[0]][1]["user_ids"])
            r.update({k: d[k] for k in ("diff", "lo", "hi", "verdict", "resolved")})
        rows.append(r)
    return pd.DataFrame(rows).set_index("variant")
