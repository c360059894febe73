"""The results tables and the run-derived numbers of README.md and docs/*.md, made from the committed results
records (``results/``, :mod:`llmrec.core.results`) and the benchmarks' JSON (``bench/*.json``):
``python -m llmrec tables`` (``make tables``) writes them into the pages' generated regions
(:mod:`.doc_regions`), ``--check`` only compares and names each page that differs.

Every region's generator is a function here: a **table** (:data:`TABLES`, a function of no arguments that returns
Markdown) or a **group of values** (:data:`VALUES`, a function that returns {key: text}; a page quotes one with
``<!-- llmrec:value GROUP KEY -->``). Every interval is a paired 95% bootstrap that resamples users (a user's
windows together, :func:`llmrec.core.metrics.user_bootstrap`), marked "unresolved" where it contains 0 (or a
bound lies within the bootstrap's own noise of 0); every comparison shows NDCG@10 and HR@10 and says where
their verdicts disagree. Nothing trains or evaluates here: a missing record is an error that names it.
"""

from __future__ import annotations

import difflib
import functools
import re
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd

from .. import probes
from ..core.io import atomic_write, read_json, repo_root
from ..core.metrics import compare_by_user
from ..core.results import RunRecord, entry_from_evaluation, read_record, records, unpack
from .classic_protocol import (PROTOCOL_LOSSES, PROTOCOL_VARIANTS, protocol_selection, protocol_table,
                               sce_protocol_variants)
from .doc_regions import fill, regions
from .profile_runs import CHOOSE_BY
from .published import read_runs, read_table, results_root, slug
from .tables import accuracy_table, paired_table, user_interval

TABLES: dict[str, Callable[[], str]] = {}
VALUES: dict[str, Callable[[], dict[str, str]]] = {}


def table(fn):
    """Register ``fn`` as the table ``<!-- llmrec:table fn.__name__ -->``."""
    TABLES[fn.__name__] = fn
    return fn


def values(fn):
    """Register ``fn`` as the group of values ``<!-- llmrec:value fn.__name__ KEY -->`` (computed once)."""
    VALUES[fn.__name__] = functools.cache(fn)
    return VALUES[fn.__name__]


# ---------------------------------------------------------------------------------------------- formatting

MINUS = "\u2212"


def num(x: float, digits: int = 4) -> str:
    """``x`` with ``digits`` decimals and a typographic minus."""
    return f"{x:.{digits}f}".replace("-", MINUS)


def signed(x: float, digits: int = 4) -> str:
    """``x`` with its sign always written (+0.0043, −0.0016)."""
    return f"{x:+.{digits}f}".replace("-", MINUS)


def lr_text(lr: float) -> str:
    """A learning rate as the pages write it: 3e-3, 1e-2."""
    mantissa, exponent = f"{lr:.0e}".split("e")
    return f"{mantissa}e{int(exponent)}"


def verdict_word(d: dict) -> str:
    """What a paired difference says: "" (resolved), "unresolved" (its interval contains 0) or "unresolved (at
    the edge)" (a bound lies within the bootstrap's own noise of 0)."""
    return {"resolved": "", "unresolved": "unresolved", "edge": "unresolved (at the edge)"}[d["verdict"]]


def interval(d: dict, digits: int = 4, word: bool = True) -> str:
    """A paired difference: ``+0.0043 [+0.0011, +0.0085]``, then its verdict word where it is not resolved."""
    text = f"{signed(d['diff'], digits)} [{signed(d['lo'], digits)}, {signed(d['hi'], digits)}]"
    return f"{text} {verdict_word(d)}".rstrip() if word else text


def mean_interval_text(mean: float, lo: float, hi: float, digits: int = 4) -> str:
    return f"{num(mean, digits)} [{num(lo, digits)}, {num(hi, digits)}]"


def direction(d: dict) -> int:
    """+1 / −1 for a resolved difference above / below 0, 0 for one that is not resolved."""
    return 0 if d["verdict"] != "resolved" else (1 if d["diff"] > 0 else -1)


def agreement(ndcg: dict, hr: dict) -> str:
    """Whether NDCG@10 and HR@10 give the same verdict (both resolved the same way, or both not)."""
    return "agree" if direction(ndcg) == direction(hr) else "**disagree**"


def markdown(rows: list[dict], align: str) -> str:
    """A pipe table of ``rows`` (text cells; the keys are the headers), ``align`` one letter per column (l, r)."""
    frame = pd.DataFrame(rows)
    if len(align) != frame.shape[1]:
        raise ValueError(f"{len(align)} alignments for {frame.shape[1]} columns")
    return frame.to_markdown(index=False, tablefmt="pipe", disable_numparse=True,
                             colalign=[{"l": "left", "r": "right"}[a] for a in align])


def seconds(x: float) -> str:
    return f"{x:,.0f}"


# ------------------------------------------------------------------------------------------ the chapters

COURSE_SESSIONS = {"01": 1, "02": 1, "03": 2, "04": 2, "05": 3, "06": 3, "07": 4, "08": 4}  # docs/course.md


@table
def chapter_times() -> str:
    """Each chapter's wall time in the canonical batch that wrote the committed executed chapters
    (``notebooks/executed/``, ``metadata.llmrec.seconds``), its course session, and each session's sum."""
    rows, total, per_session = [], 0.0, {}
    for path in sorted((repo_root() / "notebooks" / "executed").glob("[0-9][0-9]_*.ipynb")):
        book = read_json(path)
        seconds_ = book["metadata"].get("llmrec", {}).get("seconds")
        if seconds_ is None:
            raise ValueError(f"{path}: no metadata.llmrec.seconds (not written by make figures)")
        title = "".join(book["cells"][0]["source"]).splitlines()[0].lstrip("# ").split(":")[0]
        number = path.name[:2]
        session = COURSE_SESSIONS.get(number)
        per_session[session] = per_session.get(session, 0.0) + seconds_
        total += seconds_
        rows.append({"chapter": title, "session": str(session or "–"), "2 CPU cores, `quick` (s)": seconds(seconds_)})
    rows += [{"chapter": f"session {k}", "session": "", "2 CPU cores, `quick` (s)": f"{seconds(v)} ({v / 60:.0f} min)"}
             for k, v in sorted(per_session.items(), key=lambda kv: (kv[0] is None, kv[0] or 0)) if k is not None]
    rows.append({"chapter": "all", "session": "", "2 CPU cores, `quick` (s)": f"{seconds(total)} ({total / 60:.0f} min)"})
    return markdown(rows, "lrr")


# --------------------------------------------------------------------------------------- committed records


@functools.cache
def _records(folder: Path) -> dict[str, RunRecord]:
    if not folder.is_dir():
        raise FileNotFoundError(f"no committed results folder {folder}")
    return records(folder)


def _evaluation(rec: RunRecord, split: str, mode: str, **options) -> dict:
    """The entry (:func:`llmrec.core.results.entry_from_evaluation`) of ``rec``'s evaluation of ``split`` by
    ``mode`` with ``options`` (none: the default), the one with the most users."""
    found = [ev for ev in rec.evaluations.values() if (ev.split, ev.mode, ev.options) == (split, mode, options)]
    if not found:
        raise LookupError(f"the record {rec.name} holds no {split} {mode} evaluation with options {options} "
                          f"(it has {sorted(rec.evaluations)})")
    return entry_from_evaluation(max(found, key=lambda ev: ev.n_users))


def _llm_folder(profile: str = "laptop") -> Path:
    return results_root() / profile / "llm"


def _llm_runs(profile: str = "laptop") -> dict[tuple, RunRecord]:
    """The committed LLM runs of ``profile`` by (loss, tau, lr)."""
    out = {}
    for rec in _records(_llm_folder(profile)).values():
        key = (rec.config["loss"], float(rec.config["tau"]), float(rec.config["lr"]))
        if key in out:
            raise ValueError(f"two committed runs with loss, tau, lr {key}: {out[key].name} and {rec.name}")
        out[key] = rec
    return out


def _llm_run(loss: str, tau: float = 1.0, lr: float | None = None, profile: str = "laptop") -> RunRecord:
    runs = _llm_runs(profile)
    lr = _llm_base_lr(profile) if lr is None else lr
    if (loss, tau, lr) not in runs:
        raise LookupError(f"no committed {profile} LLM run with loss {loss}, tau {tau}, lr {lr:g} in "
                          f"{_llm_folder(profile)} (make results-llm)")
    return runs[(loss, tau, lr)]


def _llm_base_lr(profile: str = "laptop") -> float:
    """The learning rate of the profile's LML run: every run but the learning-rate candidates trains at it."""
    (lr,) = {lr for (loss, _, lr) in _llm_runs(profile) if loss == "lml"}
    return lr


def _valid_nll(rec: RunRecord) -> float:
    return _evaluation(rec, "valid", "likelihood")["summary"][CHOOSE_BY]


def _chosen(candidates: dict) -> tuple:
    """(value, record) of the candidate with the lowest validation ``nll_valid`` (ties: the first), as
    :func:`.llm_losses.chosen_on_valid` chooses."""
    return min(candidates.items(), key=lambda c: _valid_nll(c[1]))


_COMPARED: dict[tuple, dict] = {}


def _compare(a: RunRecord, b: RunRecord, mode: str, metric: str, **options) -> dict:
    """(b − a) on ``metric`` of their test evaluations by ``mode`` (b's with ``options``), users resampled
    (:func:`llmrec.core.metrics.compare_by_user`; each pair computed once)."""
    key = (a.name, a.provenance.commit, b.name, b.provenance.commit, mode, metric, tuple(sorted(options.items())))
    if key not in _COMPARED:
        _COMPARED[key] = compare_by_user(_evaluation(a, "test", mode), _evaluation(b, "test", mode, **options), metric)
    return _COMPARED[key]


def _llm_row(rec: RunRecord, base: RunRecord, base_name: str, is_base: bool = False) -> dict:
    """The likelihood and beam columns of a run against ``base`` on the same test users (``is_base``: the
    baseline's own row)."""
    nll, beam = _evaluation(rec, "test", "likelihood"), _evaluation(rec, "test", "beam")
    row = {"test −log P_valid [nats]": num(nll["summary"][CHOOSE_BY], 2)}
    if rec.name == base.name:
        same = "—" if is_base else f"the {base_name} run"
        return {**row, f"− {base_name} [95% interval]": same, "beam NDCG@10": num(beam["summary"]["ndcg@10"]),
                f"NDCG@10 − {base_name} [95% interval]": same, "beam HR@10": num(beam["summary"]["hr@10"], 3),
                f"HR@10 − {base_name} [95% interval]": same, "NDCG@10 vs HR@10": "—"}
    nd, hr = _compare(base, rec, "beam", "ndcg@10"), _compare(base, rec, "beam", "hr@10")
    return {**row, f"− {base_name} [95% interval]": interval(_compare(base, rec, "likelihood", CHOOSE_BY), 2),
            "beam NDCG@10": num(beam["summary"]["ndcg@10"]), f"NDCG@10 − {base_name} [95% interval]": interval(nd),
            "beam HR@10": num(beam["summary"]["hr@10"], 3), f"HR@10 − {base_name} [95% interval]": interval(hr, 3),
            "NDCG@10 vs HR@10": agreement(nd, hr)}


def _table6_runs(profile: str = "laptop") -> dict[str, RunRecord]:
    """Chapter 05's Table 6 rows as the chapter makes them: each tuned row is the candidate with the lowest
    validation −log P_valid (τ for LML among LML and its lml-tau runs, the learning rate for MSL at τ = 1, τ
    for MSL among the sweep's runs), named with what validation chose."""
    runs, base = _llm_runs(profile), _llm_base_lr(profile)
    lml, msl1 = _llm_run("lml", profile=profile), _llm_run("msl", profile=profile)
    lml_tau, lml_tau_run = _chosen({1.0: lml, **{t: r for (loss, t, lr), r in runs.items()
                                                  if loss == "lml-tau" and lr == base}})
    lr, lr_run = _chosen({lr: r for (loss, t, lr), r in runs.items() if loss == "msl" and t == 1.0})
    tau, tau_run = _chosen(_msl_sweep(profile))
    return {"LML": lml, f"LML + tuning τ (valid chose τ = {lml_tau:g})": lml_tau_run, "MSL, τ = 1": msl1,
            f"MSL + tuning lr (valid chose {lr_text(lr)})": lr_run, "MSL + α": _llm_run("msl-alpha", profile=profile),
            f"MSL + tuning τ (valid chose τ = {tau:g})": tau_run, "MSL + ATS": _llm_run("msl-ats", profile=profile)}


def _msl_sweep(profile: str = "laptop") -> dict[float, RunRecord]:
    """The τ sweep: MSL at each fixed τ, at the profile's learning rate, by τ."""
    base = _llm_base_lr(profile)
    return dict(sorted((t, r) for (loss, t, lr), r in _llm_runs(profile).items() if loss == "msl" and lr == base))


# ----------------------------------------------------------------------------- chapters 05 and 06 (laptop)


@table
def laptop_table6() -> str:
    """Chapter 05's Table 6 under ``laptop``: each variant's test −log P_valid and beam metrics against LML."""
    rows = _table6_runs()
    lml = rows["LML"]
    out = [{"run (chapter 05: Table 6)": name, **_llm_row(rec, lml, "LML", name == "LML"),
            "best epoch": str(rec.training.best_epoch)} for name, rec in rows.items()]
    return markdown(out, "lrrrrrrlr")


@table
def laptop_table5() -> str:
    """Chapter 06's Table 5 under ``laptop``: LML, S-DPO and MSL + ATS, with seconds per step and training."""
    lml = _llm_run("lml")
    out = []
    for name, loss in (("LML", "lml"), ("S-DPO (from the LML run)", "sdpo"), ("MSL + ATS", "msl-ats")):
        rec = _llm_run(loss)
        out.append({"run (chapter 06: Table 5)": name, **_llm_row(rec, lml, "LML", loss == "lml"),
                    "seconds per step": f"{rec.training.facts['seconds_per_step']:.2f}",
                    "training [s]": seconds(rec.training.seconds_total)})
    return markdown(out, "lrrrrrrlrr")


@table
def laptop_tau_sweep() -> str:
    """Figure 6 in numbers: MSL at each fixed τ, validation and test −log P_valid, beam metrics against τ = 1."""
    sweep = _msl_sweep()
    first = next(iter(sweep.values()))
    out = []
    for tau, rec in sweep.items():
        nll = _evaluation(rec, "test", "likelihood")
        paired = _llm_row(rec, first, f"τ = {next(iter(sweep)):g}", rec is first)
        del paired["test −log P_valid [nats]"]
        out.append({"MSL at τ": f"{tau:g}", "valid −log P_valid [nats]": num(_valid_nll(rec), 2),
                    "test −log P_valid [95% interval]": mean_interval_text(
                        *user_interval(nll[CHOOSE_BY], nll["user_ids"]), digits=2), **paired})
    return markdown(out, "lrrrrrrrl")


@table
def laptop_beam_scoring() -> str:
    """Beams scored by log P_valid against the default full-vocabulary log-softmax, same test users."""
    out = []
    for name, loss in (("LML", "lml"), ("MSL + ATS", "msl-ats")):
        rec = _llm_run(loss)
        full, pv = _evaluation(rec, "test", "beam"), _evaluation(rec, "test", "beam", beam_score="valid")
        nd = _compare(rec, rec, "beam", "ndcg@10", beam_score="valid")
        hr = _compare(rec, rec, "beam", "hr@10", beam_score="valid")
        out.append({"run": name, "users": str(full["n_users"]),
                    "NDCG@10 full / P_valid": f"{num(full['summary']['ndcg@10'])} / {num(pv['summary']['ndcg@10'])}",
                    "P_valid − full [95% interval]": interval(nd),
                    "HR@10 full / P_valid": f"{num(full['summary']['hr@10'], 3)} / {num(pv['summary']['hr@10'], 3)}",
                    "HR@10: P_valid − full": interval(hr, 3), "NDCG@10 vs HR@10": agreement(nd, hr),
                    "seconds per user full / P_valid":
                        f"{full['seconds_per_user']:.2f} / {pv['seconds_per_user']:.2f}"})
    return markdown(out, "lrrrrrlr")


@values
def laptop() -> dict[str, str]:
    """Chapters 05 and 06 under ``laptop`` in the prose: the sweep's choice and extremes, ATS's τ over training,
    beam search against exact ranking, hits per run."""
    sweep = _msl_sweep()
    tau, _ = _chosen(sweep)
    first, last = list(sweep)[0], list(sweep)[-1]
    lml, ats, sdpo = _llm_run("lml"), _llm_run("msl-ats"), _llm_run("sdpo")
    out = {"sweep.chosen": f"τ = {tau:g}", "sweep.last": f"τ = {last:g}", "sweep.first": f"τ = {first:g}",
           "sweep.last.ndcg": interval(_compare(sweep[first], sweep[last], "beam", "ndcg@10")),
           "sweep.last.nll": interval(_compare(sweep[first], sweep[last], "likelihood", CHOOSE_BY), 2),
           "sweep.users": f"{_evaluation(sweep[first], 'valid', 'likelihood')['n_users']:,}",
           **_ats_values(ats, lml, sweep.get(2.0)), **_exact_values(ats)}
    # hits per run on the beam users, and the likelihood's differences (chapter 06)
    beams = [_evaluation(r, "test", "beam") for r in (lml, sdpo, ats)]
    hits = [round(b["summary"]["hr@10"] * b["n_users"]) for b in beams]
    out["table5.hits"] = f"{min(hits)}–{max(hits)}"
    out["table5.beam_users"] = str(beams[0]["n_users"])
    for name, rec in (("sdpo", sdpo), ("ats", ats)):
        out[f"table5.{name}.nll"] = signed(_compare(lml, rec, "likelihood", CHOOSE_BY)["diff"], 2)
    return out


def _ats_values(ats: RunRecord, lml: RunRecord, tau2: RunRecord | None) -> dict[str, str]:
    """How ATS set τ over training (:func:`llmrec.probes.ats_trace` of the record's per-step log), how it scores
    beside MSL at τ = 2, and the validation likelihood at each epoch's end against LML."""
    with tempfile.TemporaryDirectory() as tmp:
        trace, s = probes.ats_trace(unpack(ats, Path(tmp) / "run"))
    steps, no_root = s["steps"], s["steps without a root"]
    epochs = pd.DataFrame([r for r in ats.log if "loss" in r])["epoch"].to_numpy()
    missing = trace["ats_tau_raw"].isna().to_numpy()
    out = {"ats.steps": str(steps), "ats.first_root": str(s["first step with a root"]), "ats.no_root": str(no_root),
           "ats.roots": str(steps - no_root),
           "ats.no_root_delta": "all" if s["of which Delta <= 0"] == no_root else f"{s['of which Delta <= 0']} of them",
           "ats.no_root_epochs": ", ".join(f"{missing[epochs == e].mean():.0%}" for e in np.unique(epochs)),
           "ats.below_clamp": "all" if s["roots below the lower clamp"] == steps - no_root
           else str(s["roots below the lower clamp"]),
           "ats.median_root": f"{s['median raw root']:.2f}", "ats.clamp": f"{s['clamp'][0]:g}",
           "ats.fallback": f"{s['clamp'][1]:g}",
           **{f"ats.tau.{steps // q}": f"{s[f'tau at step {steps // q}']:.2f}" for q in (4, 2, 1)},
           "ats.valid_users": f"{ats.config['n_valid_users']:,}"}
    if tau2 is not None:
        nll = {r.name: _evaluation(r, "test", "likelihood")["summary"][CHOOSE_BY] for r in (ats, tau2)}
        ndcg = {r.name: _evaluation(r, "test", "beam")["summary"]["ndcg@10"] for r in (ats, tau2)}
        out["ats.vs_tau2"] = (f"−log P_valid {nll[ats.name]:.2f} vs {nll[tau2.name]:.2f}, beam NDCG@10 "
                              f"{num(ndcg[ats.name])} vs {num(ndcg[tau2.name])}")
    at_step = {}  # run -> {steps done: validation -log P_valid}, at each epoch's end
    for rec in (ats, lml):
        hist = rec.training.facts["history"]
        at_step[rec.name] = dict(zip(np.cumsum([h["steps"] for h in hist]).tolist(),
                                     [h["valid_nll_valid"] for h in hist]))
    out["ats.valid"] = " and ".join(f"{v:.2f} vs {at_step[lml.name][k]:.2f} at step {k}"
                                    for k, v in sorted(at_step[ats.name].items()))
    return out


def _exact_values(rec: RunRecord) -> dict[str, str]:
    """Beam search against the exact ranking of every title on the same test users (the record's ``full``
    evaluation and its beam evaluation of those users)."""
    exact = _evaluation(rec, "test", "full")
    same = [ev for ev in rec.evaluations.values()
            if (ev.split, ev.mode, ev.options, ev.user_ids) == ("test", "beam", {}, exact["user_ids"])]
    if not same:
        raise LookupError(f"the record {rec.name} holds no beam evaluation of its exact-ranked users")
    beam = entry_from_evaluation(same[0])
    ranks = np.asarray(exact["ranks"], dtype=float)  # items above the target
    hits = int((np.asarray(beam["ranks"], dtype=float) < beam["k"]).sum())
    return {"exact.users": str(exact["n_users"]), "exact.beam_hits": "none" if hits == 0 else str(hits),
            "exact.ranks": f"{int(ranks.min()):,} to {int(ranks.max()):,}", "exact.median": f"{np.median(ranks):,.0f}",
            "exact.beam_s": f"{beam['seconds_per_user']:.2f}", "exact.s": f"{exact['seconds_per_user']:.1f}"}


# ------------------------------------------------------------------------------ chapter 08 (quick): Lite-LLM4Rec

LITE_MAIN = ("Lite-LLM4Rec", "SASRec + CE", "SASRec + SCE (K 500, α 100)", "popularity")


def _lite_folder(profile: str = "quick") -> Path:
    return results_root() / profile / "08_lite"


@functools.cache
def _lite_runs(folder: Path, dataset: str = "toy") -> dict:
    """{name: (run facts, evaluation)} of chapter 08's committed runs (:func:`.published.read_runs`)."""
    return read_runs(folder, dataset)


def _paired_rows(evals: dict, baseline: str, names, label: str) -> list[dict]:
    """Each of ``names`` against ``baseline`` (:func:`.tables.paired_table`): NDCG@10 and HR@10 with their
    paired intervals and whether the two agree."""
    missing = [n for n in (baseline, *names) if n not in evals]
    if missing:
        raise LookupError(f"no committed run {missing} (have {sorted(evals)})")
    pairs = paired_table({n: evals[n] for n in (baseline, *names)}, baseline, metrics=("ndcg@10", "hr@10"))
    out = []
    for name in names:
        d = {m: pairs[(pairs["method"] == name) & (pairs["metric"] == m)].iloc[0].to_dict()
             for m in ("ndcg@10", "hr@10")}
        ev = evals[name][1]
        out.append({label: name, "NDCG@10": num(ev["summary"]["ndcg@10"]),
                    f"NDCG@10 − {baseline} [95% interval]": interval(d["ndcg@10"]),
                    "HR@10": num(ev["summary"]["hr@10"]), f"HR@10 − {baseline} [95% interval]": interval(d["hr@10"]),
                    "NDCG@10 vs HR@10": agreement(d["ndcg@10"], d["hr@10"])})
    return out


def _epochs(facts: dict) -> str:
    if facts.get("best_epoch") is None:
        return "—"
    return f"{facts['best_epoch']} / {facts['epochs_cap']}"


@table
def lite_accuracy() -> str:
    """Chapter 08: Lite-LLM4Rec beside SASRec + CE / SCE and popularity on every test window."""
    evals = _lite_runs(_lite_folder())
    acc = accuracy_table({n: evals[n] for n in LITE_MAIN})
    out = []
    for name, r in acc.iterrows():
        facts = evals[name][0]
        out.append({"method (all test windows)": name,
                    "NDCG@10 [95% interval]": mean_interval_text(r["ndcg@10"], r["ndcg@10 lo"], r["ndcg@10 hi"]),
                    "HR@10 = Recall@10 [95% interval]": mean_interval_text(r["hr@10"], r["hr@10 lo"], r["hr@10 hi"]),
                    "best epoch / cap": _epochs(facts),
                    "training [s]": "—" if facts.get("seconds_total") is None else seconds(facts["seconds_total"])})
    return markdown(out, "lrrrr")


@table
def lite_vs_sasrec() -> str:
    """Chapter 08: Lite-LLM4Rec and SASRec + SCE against SASRec + CE, paired on every test window."""
    evals = _lite_runs(_lite_folder())
    return markdown(_paired_rows(evals, "SASRec + CE", ("Lite-LLM4Rec", "SASRec + SCE (K 500, α 100)"), "method"),
                    "lrrrrl")


@table
def lite_ablations() -> str:
    """Chapter 08's ablations: each variant of Lite-LLM4Rec against the main run, paired on every test window."""
    evals = _lite_runs(_lite_folder())
    names = [n for n in evals if n not in LITE_MAIN]
    rows = _paired_rows(evals, "Lite-LLM4Rec", names, "variant (one change)")
    for row, name in zip(rows, names):
        row["best epoch / cap"] = _epochs(evals[name][0])
    return markdown(rows, "lrrrrlr")


@values
def lite() -> dict[str, str]:
    """Chapter 08 in the prose: the main comparison, the generative runs on the beam users, the inference cost."""
    folder = _lite_folder()
    evals = _lite_runs(folder)
    pairs = paired_table({n: evals[n] for n in ("SASRec + CE", "Lite-LLM4Rec", "SASRec + SCE (K 500, α 100)")},
                         "SASRec + CE", metrics=("ndcg@10", "hr@10")).set_index(["method", "metric"])
    out = {"windows": f"{evals['Lite-LLM4Rec'][1]['n_users']:,}"}
    for key, name in (("lite", "Lite-LLM4Rec"), ("sce", "SASRec + SCE (K 500, α 100)")):
        for m in ("ndcg@10", "hr@10"):
            d = pairs.loc[(name, m)].to_dict()
            out[f"{key}.{m}"] = interval(d, word=False)
            out[f"{key}.{m}.verdict"] = verdict_word(d) or "resolved"
    beam = read_table(folder, "toy", "beam users")
    hits = (beam["hr@10"] * beam["n_users"]).round().astype(int)
    out["beam.users"] = str(int(beam["n_users"].iloc[0]))
    for name, h in hits.items():
        out[f"beam.hits.{slug(name)}"] = {0: "no target", 1: "one"}.get(int(h), str(int(h)))
    paired = read_table(folder, "toy", "beam users paired")
    out["beam.all_unresolved"] = "every interval contains 0" if not paired["resolved"].any() \
        else "some intervals exclude 0"
    cost = read_table(folder, "toy", "inference cost")
    head, beam_row, exact, every = (cost.iloc[i] for i in range(4))
    out.update({"cost.users": str(int(head["users"])), "cost.head_ms": f"{head['ms/user']:.1f}",
                "cost.head_all_ms": f"{every['ms/user']:.1f}", "cost.beam_ms": f"{beam_row['ms/user']:.0f}",
                "cost.exact_s": f"{exact['ms/user'] / 1000:.1f}", "cost.exact_users": str(int(exact["users"])),
                "cost.saved": f"{head['time saved vs beam']:.1%}"})
    return out


# ------------------------------------------------------------------------ chapter 07 (laptop): the protocol

CLASSIC_LABELS = {  # the protocol's variants as the pages name them
    "SASRec + CE": "CE (the baseline)", "SASRec + BCE": "BCE, one unseen negative",
    "SASRec + BPR": "BPR, one unseen negative", "SASRec + sampled softmax (K 500)": "sampled softmax, K 500",
    "SASRec + SCE (K 500, α 100)": "SCE, K 500, α 100", "CE, post-LN blocks": "post-LN blocks",
    "CE, GELU FFN of width 4d": "GELU FFN of width 4d", "CE, no embedding scaling": "no √d embedding scaling",
    "CE, N(0, 0.02) init": "N(0, 0.02) init (RecBole)", "CE, PyTorch default init": "PyTorch default init",
    "CE, Adam beta2 0.999": "Adam β2 0.999",
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


# ---------------------------------------------------------------------------------- bench/*.json (make bench)


def _bench(name: str) -> dict:
    path = repo_root() / "bench" / f"{name}.json"
    if not path.exists():
        raise FileNotFoundError(f"no benchmark {path} (make bench)")
    return read_json(path)


def _ratio(x: float) -> str:
    return f"{x:.1f}×"


@table
def bench_training_step() -> str:
    """``bench/losses.json``: one LoRA training step under each loss implementation, median of 3."""
    b = _bench("losses")["losses"]["variants"]
    what = {"a": r"a. HF forward with full logits everywhere + dense \|response\|×\|V\| masks + `-inf`",
            "b": "b. fast MSL (response positions only, projected onto their valid tokens)",
            "c": "c. transformer body alone, fwd + bwd, no head (the floor)"}
    return markdown([{"variant": what[k], "step [s]": f"{v['step_seconds']:.2f}",
                      "peak RSS [GB]": f"{v['peak_rss_mb'] / 1000:.2f}"} for k, v in b.items()], "lrr")


SUPERSCRIPT = str.maketrans("-0123456789", "⁻⁰¹²³⁴⁵⁶⁷⁸⁹")


def sci(x: float) -> str:
    """``x`` as the pages write a small number: 2.4·10⁻⁴."""
    mantissa, exponent = f"{x:.1e}".split("e")
    return f"{mantissa}·10{str(int(exponent)).translate(SUPERSCRIPT)}"


@table
def bench_decode() -> str:
    """``bench/decode.json``: seconds per user one user at a time against batched, and decoder positions."""
    d = _bench("decode")["decode"]
    out = []
    for threads in sorted((k for k in d if k.startswith("threads=")), key=lambda k: -int(k.split("=")[1])):
        for key, what in (("beam", "beam search"), ("exact", "exact ranking"), ("likelihood", "likelihood")):
            r = d[threads][key]
            out.append({"torch threads": threads.split("=")[1], "what": what,
                        "one user at a time [s/user]": f"{r['per_user']['seconds_per_user']:.2f}",
                        "batched [s/user]": f"{r['batched']['seconds_per_user']:.2f}",
                        "ratio": f"{r['speedup']:.2f}×",
                        "positions per user": f"{r['per_user']['decoder_positions_per_user']:,.0f} → "
                                              f"{r['batched']['decoder_positions_per_user']:,.0f}"})
    return markdown(out, "rlrrrr")


@values
def bench() -> dict[str, str]:
    """The benchmarks in the prose: the training step's ratios, masks, SASRec CE against SCE, batched decoding."""
    out = {}
    losses = _bench("losses")
    b = losses["losses"]
    v = b["variants"]
    batch = v["b"]["batch"]
    out.update({"losses.when": losses["when"][:10], "losses.windows": str(batch["windows"]),
                "losses.tokens": f"{batch['tokens']:,}", "losses.positions": str(batch["response_positions"]),
                "losses.b_over_c": f"{b['ratio_b_over_c']:.2f}", "losses.a_over_b": f"{b['ratio_a_over_b']:.2f}",
                "losses.a_over_c": f"{v['a']['step_seconds'] / v['c']['step_seconds']:.2f}",
                "losses.body_share": f"{v['c']['step_seconds'] / v['a']['step_seconds']:.0%}"})
    trie = _bench("trie")
    t = trie["trie"]
    masks = t["toy"]["batch_mask_bytes"]
    out.update({"trie.when": trie["when"][:10], "trie.dense_over_ragged": f"{masks['dense_over_ragged']:,.0f}",
                "trie.ragged": f"{masks['ragged'] / 1000:.0f} KB", "trie.dense": f"{masks['dense'] / 1e6:.1f} MB"})
    for ds in ("toy", "books"):
        out[f"trie.{ds}.tensor"] = f"{t[ds]['trie_tensor_bytes'] / 1e6:.1f} MB"
        out[f"trie.{ds}.ratio"] = f"{t[ds]['catalogue_ratio']:,.0f}"
    seq = _bench("seqrec")
    out["seqrec.when"] = seq["when"][:10]
    for ds in ("toy", "books"):
        r = seq["seqrec"][ds]
        ce, sce = r["ce"], r["sce"]
        for loss, x in (("ce", ce), ("sce", sce)):
            out.update({f"seqrec.{ds}.{loss}_s": f"{x['seconds_per_epoch']:.2f}",
                        f"seqrec.{ds}.{loss}_mb": f"{x['peak_memory_mb']:.0f}",
                        f"seqrec.{ds}.{loss}_matrix": f"{x['score_matrix_mb']:.0f} MB"})
        out.update({f"seqrec.{ds}.speed": _ratio(r["speedup_sce_vs_ce"]),
                    f"seqrec.{ds}.memory": _ratio(r["memory_ratio_ce_vs_sce"])})
    dec = _bench("decode")
    d = dec["decode"]["threads=2"]
    positions = d["exact"]["batched"]["decoder_positions_per_user"] / d["beam"]["batched"]["decoder_positions_per_user"]
    out.update({"decode.when": dec["when"][:10], "decode.users": str(dec["decode"]["users"]),
                "decode.exact_users": str(dec["decode"]["exact_users"]),
                "decode.beam.per_user": f"{d['beam']['per_user']['seconds_per_user']:.2f}",
                "decode.beam.batched": f"{d['beam']['batched']['seconds_per_user']:.2f}",
                "decode.beam.speedup": f"{d['beam']['speedup']:.2f}×",
                "decode.exact.per_user": f"{d['exact']['per_user']['seconds_per_user']:.2f}",
                "decode.exact.batched": f"{d['exact']['batched']['seconds_per_user']:.2f}",
                "decode.exact.over_beam": f"{d['exact']['batched exact / batched beam search, per user']:.0f}",
                "decode.load": " rising to ".join(f"{x:.2g}" for x in d["load_average"]),
                "decode.exact.over_per_user_beam":
                    f"{d['exact']['batched exact / per-user beam search, per user']:.0f}",
                "decode.exact.positions": f"{positions:.0f}",
                "decode.beam.per_user.runs": " s, the other ".join(
                    f"{x:.0f}" for x in sorted(d["beam"]["per_user"]["seconds"], reverse=True)) + " s"})
    every = [v for k, v in dec["decode"].items() if k.startswith("threads=")]
    out["decode.identical"] = "the same" if all(t["beam"]["identical_lists"] and t["exact"]["identical_ranks"]
                                                for t in every) else "not always the same"
    for key, gap in (("beam", "max_score_gap"), ("exact", "max_score_gap"), ("likelihood", "max_gap")):
        out[f"decode.{key}.gap"] = sci(max(t[key][gap] for t in every))
    like = d.get("likelihood")
    if like is not None:
        out.update({"decode.likelihood.per_user": f"{like['per_user']['seconds_per_user']:.2f}",
                    "decode.likelihood.batched": f"{like['batched']['seconds_per_user']:.2f}",
                    "decode.likelihood.speedup": f"{like['speedup']:.2f}×"})
    return out


# ------------------------------------------------------------------------------------------------ the pages


def render(kind: str, name: str, key: str | None) -> str:
    """The content of one region: a table of :data:`TABLES`, or the value ``key`` of a group of :data:`VALUES`."""
    if kind == "table":
        if name not in TABLES:
            raise LookupError(f"no table named {name!r} (known: {', '.join(sorted(TABLES))})")
        return TABLES[name]()
    if name not in VALUES:
        raise LookupError(f"no group of values named {name!r} (known: {', '.join(sorted(VALUES))})")
    group = VALUES[name]()
    if key not in group:
        close = difflib.get_close_matches(key, group, n=3)
        raise LookupError(f"the group {name} has no value {key!r}"
                          + (f" (did you mean {', '.join(close)}?)" if close else ""))
    return group[key]


def pages(root: str | Path | None = None) -> list[Path]:
    """README.md and docs/*.md of the checkout ``root`` (default: this one)."""
    root = Path(root or repo_root())
    return [p for p in [root / "README.md", *sorted((root / "docs").glob("*.md"))] if p.exists()]


def _forget() -> None:
    """Drop what earlier calls read or computed (records, comparisons, groups of values): each run reads anew."""
    for fn in (*VALUES.values(), _records, _lite_runs, _classic_runs, _classic_lrs, _protocol):
        fn.cache_clear()
    _COMPARED.clear()


def generate(paths=None, root: str | Path | None = None) -> dict[Path, tuple[str, str]]:
    """{page: (its text, the text with every region filled)} for each page of ``paths`` (default :func:`pages`)."""
    root = Path(root or repo_root())
    _forget()
    out = {}
    for path in map(Path, paths if paths is not None else pages(root)):
        text = path.read_text(encoding="utf-8")
        where = path.relative_to(root) if path.is_relative_to(root) else path
        out[path] = (text, fill(text, render, str(where)))
    return out


def tables_command(check: bool = False, paths=None, root: str | Path | None = None, out=None) -> int:
    """``python -m llmrec tables``: fill every generated region of the pages from the committed results and
    write the pages that changed (all are made before any is written: an error leaves every page as it was);
    ``check``: write nothing, print a unified diff of each page that differs and return 1 if any does."""
    out = out or sys.stdout
    root = Path(root or repo_root())
    made = generate(paths, root)
    changed = {p: new for p, (old, new) in made.items() if old != new}
    for path, new in changed.items():
        name = str(path.relative_to(root) if path.is_relative_to(root) else path)
        if check:
            out.writelines(difflib.unified_diff(made[path][0].splitlines(keepends=True), new.splitlines(keepends=True),
                                                f"{name} (committed)", f"{name} (from results/)"))
        else:
            atomic_write(path, new.encode("utf-8"))
            print(f"{name}: regenerated", file=out)
    n = sum(len(regions(text)) for text, _ in made.values())
    if check and changed:
        print(f"{len(changed)} page(s) differ from the committed results: run `python -m llmrec tables` "
              f"(make tables)", file=out)
        return 1
    print(f"{n} regions in {len(made)} pages {'match the results' if check else 'made from the results'}", file=out)
    return 0

