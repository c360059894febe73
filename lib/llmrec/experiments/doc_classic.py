"""Chapter 07's generated tables and values (:mod:`.doc_tables`): the classic protocol on Toy and Books, and the
quick batch's two committed tables."""

from __future__ import annotations

import functools
import re
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd

from ..core.metrics import compare_by_user
from ..core.results import read_record
from .classic_protocol import (CHOSEN_DEFAULT, PROTOCOL_LOSSES, PROTOCOL_VARIANTS, protocol_selection,
                               protocol_table, sce_protocol_variants)
from .doc_format import (_dates, _evaluation, agreement, hours, interval, lr_text, markdown, num, seconds, signed,
                         table, values, verdict_word)
from .published import read_runs, results_root, slug
from .words import listing

# ------------------------------------------------------------------------ chapter 07 (laptop): the protocol

CLASSIC_LABELS = {  # the protocol's variants as the pages name them
    "SASRec + CE": "CE (the baseline)", "SASRec + BCE": "BCE, one unseen negative",
    "SASRec + BPR": "BPR, one unseen negative", "SASRec + sampled softmax (K 500)": "sampled softmax, K 500",
    "SASRec + SCE (K 500, α 100)": "SCE, K 500, α 100", "CE, post-LN blocks": "post-LN blocks",
    "CE, GELU FFN of width 4d": "GELU FFN of width 4d", "CE, no embedding scaling": "no √d embedding scaling",
    "CE, N(0, 0.02) init": "N(0, 0.02) init (RecBole)", "CE, PyTorch default init": "PyTorch default init",
    "CE, Adam beta2 0.999": "Adam β2 0.999",
    "CE, chosen default (the three combined)": "the chosen default: N(0, 0.02) init + Adam β2 0.999 + GELU FFN 4d",
    "SCE (K 500, α 100), negatives per position": "SCE, K 500, α 100, negatives per position",
}


def _grid_label(name: str) -> str:
    """A cell of the SCE grid: "K 10, α 1 (sampled softmax)", "K 500, α 100 (the authors' setting)"."""
    if name == "SASRec + CE":
        return CLASSIC_LABELS[name]
    m = re.fullmatch(r"SASRec \+ (?:sampled softmax \(K (\d+)\)|SCE \(K (\d+), α ([\d.]+)\))", name)
    if m is None:
        raise ValueError(f"not a cell of the SCE grid: {name!r}")
    if m[1]:
        return f"K {m[1]}, α 1 (sampled softmax)"
    return f"K {m[2]}, α {m[3]}" + (" (the authors' setting)" if (m[2], m[3]) == ("500", "100") else "")


def _classic_folder(profile: str = "laptop") -> Path:
    return results_root() / profile / "07_classic"


@functools.cache
def _classic_runs(folder: Path, dataset: str) -> dict:
    """{"<variant> / seed <s>": (run facts, evaluation)} of the protocol's committed runs on ``dataset``."""
    return read_runs(folder, dataset)


@functools.cache
def _classic_lrs(folder: Path, dataset: str) -> dict[str, float]:
    """The learning rate each committed variant ran at, from its records."""
    out = {}
    for path in sorted(folder.glob(f"{slug(dataset)}-*.json")):
        rec = read_record(path)
        out[rec.name.rsplit(" / seed ", 1)[0]] = rec.config["lr"]
    return out


@functools.cache
def _protocol(folder: Path, dataset: str, names: tuple, baseline: str = "SASRec + CE") -> dict[str, pd.DataFrame]:
    """:func:`.classic_protocol.protocol_table` of NDCG@10 and HR@10 (each with its paired interval against
    ``baseline``, users resampled)."""
    evals = _classic_runs(folder, dataset)
    missing = [n for n in (baseline, *names) if not any(k.startswith(f"{n} / seed ") for k in evals)]
    if missing:
        raise LookupError(f"no committed {dataset} runs of {missing} in {folder} (make results-classic)")
    return {m: protocol_table(evals, baseline, m, names=list(names)) for m in ("ndcg@10", "hr@10")}


def _range(row: pd.Series, metric: str) -> str:
    """The mean over seeds and, with more than one seed, their range."""
    if row["seeds"] == 1:
        return num(row[metric])
    return f"{num(row[metric])} ({num(row[f'{metric} min'])}–{num(row[f'{metric} max'])})"


def _protocol_rows(dataset: str, names, label: Callable[[str], str], first: str) -> str:
    folder = _classic_folder()
    t = _protocol(folder, dataset, tuple(names))
    lrs = _classic_lrs(folder, dataset)
    out = []
    for name, nd in t["ndcg@10"].iterrows():
        hr = t["hr@10"].loc[name]
        base = name == "SASRec + CE"
        out.append({first: label(name), "learning rate": f"{lrs[name]:g}", "seeds": str(nd["seeds"]),
                    "NDCG@10 (range)": _range(nd, "ndcg@10"),
                    "NDCG@10 − CE [95% interval]": "—" if base else interval(nd),
                    "HR@10 (range)": _range(hr, "hr@10"),
                    "HR@10 − CE [95% interval]": "—" if base else interval(hr),
                    "NDCG@10 vs HR@10": "—" if base else agreement(nd, hr), "best epochs": nd["best epochs"],
                    "seconds per run": seconds(nd["s/run"])})
    return markdown(out, "lrrrrrrlrr")


@table
def classic_toy_protocol() -> str:
    """Chapter 07 on Toy: every loss and each departure from the reference SASRec code, three seeds each."""
    return _protocol_rows("toy", list(PROTOCOL_VARIANTS), CLASSIC_LABELS.get,
                          "variant (one change against SASRec + CE)")


@table
def classic_toy_grid() -> str:
    """Chapter 07 on Toy: the SCE paper's K x α grid, paired against CE on the seeds both have."""
    return _protocol_rows("toy", list(sce_protocol_variants(None)), _grid_label, "K negatives, α")


@table
def classic_books_protocol() -> str:
    """Chapter 07 on Books: the losses, three seeds each."""
    return _protocol_rows("books", list(PROTOCOL_LOSSES), CLASSIC_LABELS.get, "variant")


def _selection_table(dataset: str) -> str:
    """Each loss's validation NDCG@10 at each learning rate tried (seed 0); the chosen rate in bold, a run whose
    best epoch is the cap marked "at the cap"."""
    sel = protocol_selection("laptop", dataset, train=False, progress=False,
                             folder=_classic_folder() / "selection").reset_index()
    lrs = sorted(sel["lr"].unique())
    out = []
    for name, rows in sel.groupby("variant", sort=False):
        row = {"loss (seed 0)": CLASSIC_LABELS.get(name, name)}
        for lr in lrs:
            r = rows[rows["lr"] == lr]
            if r.empty:
                row[f"lr {lr_text(lr)}"] = ""
                continue
            r = r.iloc[0]
            text = num(r["valid ndcg@10"]) + (" at the cap" if r["at cap"] else "")
            row[f"lr {lr_text(lr)}"] = f"**{text}**" if r["chosen"] else text
        out.append(row)
    return markdown(out, "l" + "r" * len(lrs))


@table
def classic_toy_selection() -> str:
    """Chapter 07 on Toy: validation NDCG@10 of each loss at each learning rate tried; the chosen one in bold."""
    return _selection_table("toy")


@table
def classic_books_selection() -> str:
    """Chapter 07 on Books: validation NDCG@10 of each loss at each learning rate tried; the chosen one in bold."""
    return _selection_table("books")


@table
def classic_toy_alpha() -> str:
    """SCE's scale α against sampled softmax (α = 1) at each K, seed 0, paired on every Toy test window."""
    evals = _classic_runs(_classic_folder(), "toy")
    out = []
    for K in (10, 100, 500):
        base = evals.get(f"SASRec + sampled softmax (K {K}) / seed 0")
        for alpha in ("10", "100"):
            other = evals.get(f"SASRec + SCE (K {K}, α {alpha}) / seed 0")
            if base is None or other is None:
                raise LookupError(f"no committed seed-0 runs of sampled softmax and SCE α {alpha} at K {K}")
            nd, hr = (compare_by_user(base[1], other[1], m) for m in ("ndcg@10", "hr@10"))
            out.append({"K negatives": str(K), "SCE α": alpha,
                        "NDCG@10 − sampled softmax [95% interval]": interval(nd),
                        "HR@10 − sampled softmax [95% interval]": interval(hr),
                        "NDCG@10 vs HR@10": agreement(nd, hr)})
    return markdown(out, "rrrrl")


@values
def classic() -> dict[str, str]:
    """Chapter 07 under the protocol in the prose: each variant's difference against CE (``toy.bce.ndcg@10``...),
    the chosen learning rates, seconds per run, best epochs, and per-position negatives against per-sequence."""
    folder = _classic_folder()
    out = {}
    for dataset, names in (("toy", list(PROTOCOL_VARIANTS) + list(sce_protocol_variants(None))),
                           ("books", list(PROTOCOL_LOSSES))):
        t = _protocol(folder, dataset, tuple(dict.fromkeys(names)))
        lrs = _classic_lrs(folder, dataset)
        for name, nd in t["ndcg@10"].iterrows():
            key = f"{dataset}.{slug(name.removeprefix('SASRec + '))}"
            out[f"{key}.ndcg@10.mean"] = num(nd["ndcg@10"])
            out[f"{key}.ndcg@10.max"] = num(nd["ndcg@10 max"])
            out[f"{key}.lr"] = lr_text(lrs[name])
            out[f"{key}.s"] = seconds(nd["s/run"])
            epochs = sorted(int(e) for e in nd["best epochs"].split(", "))
            out[f"{key}.epochs"] = nd["best epochs"]
            out[f"{key}.epochs.range"] = f"{epochs[0]}–{epochs[-1]}"
            if name == "SASRec + CE":
                continue
            for m in ("ndcg@10", "hr@10"):
                d = t[m].loc[name]
                out[f"{key}.{m}"] = interval(d, word=False)
                out[f"{key}.{m}.diff"] = signed(d["diff"])
                out[f"{key}.{m}.verdict"] = verdict_word(d) or "resolved"
        sel = protocol_selection("laptop", dataset, train=False, progress=False,
                                 folder=folder / "selection").reset_index()
        for _, r in sel.iterrows():
            key = f"{dataset}.{slug(r['variant'].removeprefix('SASRec + '))}.valid"
            out[f"{key}.{lr_text(r['lr'])}"] = num(r["valid ndcg@10"])
            if r["chosen"]:
                out[key] = num(r["valid ndcg@10"])
    for dataset in ("toy", "books"):  # the runs' own times, selection included (the departures: Toy only)
        runs = [read_record(p) for f in (folder, folder / "selection") for p in sorted(f.glob(f"{dataset}-*.json"))]
        out[f"{dataset}.time"] = hours(sum(r.training.seconds_total for r in runs))
        out[f"{dataset}.date"] = _dates(runs)
    # SCE's negatives drawn per position against per sequence, both at SCE's rate, paired on the seed means
    per, sce = "SCE (K 500, α 100), negatives per position", "SASRec + SCE (K 500, α 100)"
    t = _protocol(folder, "toy", (per,), sce)["ndcg@10"]
    out["toy.per-position.vs-sce.ndcg@10"] = interval(t.loc[per], word=False)
    out["toy.per-position.vs-sce.ndcg@10.verdict"] = verdict_word(t.loc[per]) or "resolved"
    out["toy.per-position.time_ratio"] = f"{t.loc[per, 's/run'] / t.loc[sce, 's/run']:.1f}"
    return out


# ------------------------------------------------------------------ the quick batch's two committed tables


@values
def quick() -> dict[str, str]:
    """The two committed tables of the ``quick`` section: ATS's learning curve and the beam-scoring conventions."""
    out = {}
    curve = read_record(results_root() / "quick" / "ats_learning_curve.json")
    frame = pd.DataFrame(curve.rows)
    out["curve.steps"] = " / ".join(str(s) for s in sorted(frame["steps"].unique()))
    out["curve.users"] = str(curve.meta["users"])
    for name, rows in frame.groupby("variant", sort=False):
        out[f"curve.{slug(name)}"] = " / ".join(f"{v:.2f}" for v in rows.sort_values("steps")["nll_valid"])
    conv = read_record(results_root() / "quick" / "beam_conventions.json")
    out["conventions.users"] = str(conv.meta["users"])
    by = {(run["variant"], row["convention"]): row for run in conv.rows for row in run["rows"]}
    names = list(dict.fromkeys(run["variant"] for run in conv.rows))
    conventions = list(dict.fromkeys(c for _, c in by))
    for c in conventions:
        out[f"conventions.{slug(c)}.overlap"] = " / ".join(f"{by[(n, c)]['overlap@10']:.2f}" for n in names)
        tops = [by[(n, c)]["top-1 exact"] for n in names]
        out[f"conventions.{slug(c)}.top1"] = f"{min(tops):.0%}" if min(tops) == max(tops) else \
            f"{min(tops):.0%}–{max(tops):.0%}".replace("%–", "–")
    full = [by[(n, c)]["top-1 exact"] for n in names for c in conventions if c.startswith("full softmax")]
    out["conventions.full.top1"] = f"{min(full):.0%}–{max(full):.0%}".replace("%–", "–")
    per_user = {lp: np.mean([r["s/user"] for (_, c), r in by.items() if f"lp {lp}" in c]) for lp in (0, 1)}
    for lp, x in per_user.items():  # seconds per user, over both runs and both scorings with this length penalty
        out[f"conventions.lp{lp}.s"] = f"{x:#.2g}"
    out["conventions.lp1.ratio"] = f"{per_user[1] / per_user[0]:.0f}×"
    hits = max(by[k]["hit@10"] * by[k]["users"] for k in by)
    out["conventions.hits"] = f"{hits:.0f} hit in {conv.meta['users']} users" if hits == 1 else \
        f"{hits:.0f} hits in {conv.meta['users']} users"
    return out




# ------------------------------------------------------------------------ chapter 07 (quick): the batch's runs

QUICK_MODELS = {"sasrec": "SASRec", "gru4rec": "GRU4Rec", "caser": "Caser"}


@functools.cache
def _quick_seqrec(schedule: str = "chapter 07") -> dict[str, object]:
    """The canonical quick batch's classic runs on Toy (``results/quick/seqrec/``) by name ("SASRec + CE",
    "SASRec + SCE (K 500, α 100)", "SASRec + sampled softmax (K 500)"): chapter 07's quick schedule (its epoch cap,
    the profile's) or, ``schedule="plateau"``, the longer runs chapter 08 trains SASRec with."""
    from ..core.profiles import train_config

    cap = train_config("quick", "seqrec")["epochs"]
    out = {}
    for path in sorted((results_root() / "quick" / "seqrec").glob("toy-*.json")):
        rec = read_record(path)
        c = rec.config
        if (c["epochs"] == cap) != (schedule == "chapter 07"):
            continue
        name = f"{QUICK_MODELS[c['model']]} + {c['loss'].upper()}"
        if c["loss"] == "sce":
            name = (f"{QUICK_MODELS[c['model']]} + sampled softmax (K {c['negatives']})" if c["alpha"] == 1 else
                    f"{QUICK_MODELS[c['model']]} + SCE (K {c['negatives']}, α {c['alpha']:g})")
        if name in out:
            raise ValueError(f"two committed quick runs named {name}: {out[name].name} and {rec.name}")
        out[name] = rec
    if not out:
        raise LookupError(f"no committed quick classic runs of {schedule} in {results_root() / 'quick' / 'seqrec'}")
    return out


def _test(rec) -> dict:
    """The summary of a record's test evaluation of the most windows (every one)."""
    return _evaluation(rec, "test", "full")["summary"]


@table
def quick_classic() -> str:
    """Chapter 07 under ``quick``: each model and loss on every Toy test window, and popularity (chapter 08's)."""
    runs = _quick_seqrec()
    names = [f"{m} + {loss}" for m in QUICK_MODELS.values() for loss in ("CE", "BCE", "BPR")]
    names[3:3] = ["SASRec + SCE (K 500, α 100)", "SASRec + sampled softmax (K 500)"]
    out = []
    for name in names:
        if name not in runs:
            raise LookupError(f"no committed quick run {name} (have {sorted(runs)})")
        rec, t = runs[name], runs[name].training
        out.append({"model + loss": name, "NDCG@10": num(_test(rec)["ndcg@10"]), "HR@10": num(_test(rec)["hr@10"]),
                    "seconds per epoch": f"{t.seconds_per_epoch:.1f}", "best epoch": f"{t.best_epoch} / {t.epochs_cap}"})
    pop = read_record(results_root() / "quick" / "08_lite" / "toy-popularity.json")
    out.append({"model + loss": "popularity", "NDCG@10": num(_test(pop)["ndcg@10"]), "HR@10": num(_test(pop)["hr@10"]),
                "seconds per epoch": "—", "best epoch": "—"})
    return markdown(out, "lrrrr")


@values
def classic_quick() -> dict[str, str]:
    """Chapter 07 under ``quick`` in the prose: when, where CE's schedule ended, the SCE grid's K 500 cells and
    their best epochs, and the reference code's SASRec + CE trained to its plateau (chapter 08's run)."""
    runs, plateau = _quick_seqrec(), _quick_seqrec("plateau")
    ce, long_ce = runs["SASRec + CE"], plateau["SASRec + CE"]
    k500 = [r for n, r in runs.items() if "(K 500" in n]
    ndcg = sorted(_test(r)["ndcg@10"] for r in k500)
    cap, best = ce.training.epochs_cap, ce.training.best_epoch
    above = {m: all(_test(runs[f"{m} + CE"])["ndcg@10"] >= _test(runs[f"{m} + {loss}"])["ndcg@10"]
                    for loss in ("BCE", "BPR")) for m in QUICK_MODELS.values()}
    caser = runs["Caser + CE"].training.best_epoch
    return {"date": _dates([*runs.values(), *plateau.values()]), "cap": str(cap),
            "patience": str(ce.config["patience"]), "ce.epoch": str(best),
            "ce.stop": f"kept epoch {best} of {cap}" + (", the last: it was still improving when the schedule ended"
                                                        if best == cap else ", and stopped early"),
            "ce.ndcg": num(_test(ce)["ndcg@10"]), "sce.k500": f"{num(ndcg[0])}–{num(ndcg[-1])}",
            "sce.k500.epochs": listing(str(r.training.best_epoch) for r in k500) + f" of {cap}",
            "ce.above": " and ".join(m for m, ok in above.items() if ok) or "no model",
            "ce.below": " and ".join(m for m, ok in above.items() if not ok) or "no model",
            "caser.epoch": str(caser),
            "plateau.ndcg": num(_test(long_ce)["ndcg@10"]), "plateau.epoch": str(long_ce.training.best_epoch),
            "plateau.cap": str(long_ce.training.epochs_cap), "plateau.patience": str(long_ce.config["patience"])}


@values
def sasrec_default() -> dict[str, str]:
    """SASRec's default chosen on validation (:mod:`.sasrec_default`) in the prose: the candidates, the chosen one
    and its validation margin on Toy, its validation on Books beside today's (where committed), and its test
    differences against SASRec + CE on both (``toy.ndcg@10``, ``books.hr@10``...)."""
    from . import sasrec_default as S

    toy = S.default_selection("laptop", "toy", train=False, progress=False)
    pick = S.chosen(toy)
    out = {"candidates": f"{len(toy)}", "seeds": f"{int(toy.loc[pick, 'seeds'])}", "chosen": pick,
           "toy.valid": num(toy.loc[pick, "valid ndcg@10"]), "toy.valid.today": num(toy.loc[S.TODAY, "valid ndcg@10"]),
           "path": " → ".join(S.forward_path(toy)[1:])}
    try:
        books = S.default_selection("laptop", "books", names=(S.TODAY, pick), train=False, progress=False)
        out["books.valid"] = num(books.loc[pick, "valid ndcg@10"])
        out["books.valid.today"] = num(books.loc[S.TODAY, "valid ndcg@10"])
        out["books.valid.margin"] = signed(books.loc[pick, "valid ndcg@10"] - books.loc[S.TODAY, "valid ndcg@10"])
        out["books.valid.spread"] = ("its worst seed above the old default's best"
                                     if books.loc[pick, "min"] > books.loc[S.TODAY, "max"] else "within the seeds' spread")
    except FileNotFoundError:
        pass
    for dataset in ("toy", "books"):
        tables = _protocol(_classic_folder(), dataset, (CHOSEN_DEFAULT,))
        for metric, t in tables.items():
            out[f"{dataset}.{metric}"] = interval(t.loc[CHOSEN_DEFAULT])
    return out
