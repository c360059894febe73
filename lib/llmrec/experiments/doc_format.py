"""The formatting and the committed records shared by the generators of :mod:`.doc_tables` (each generator
module registers its tables and groups of values here with :func:`table` and :func:`values`)."""

from __future__ import annotations

import functools
from collections.abc import Callable
from pathlib import Path

import pandas as pd

from ..core.metrics import compare_by_user
from ..core.results import RunRecord, entry_from_evaluation, records
from .profile_runs import CHOOSE_BY
from .published import results_root

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


def hours(x: float) -> str:
    """A duration of ``x`` seconds as the pages write a long one: "1 h 46 min", "34 min"."""
    h, m = divmod(round(x / 60), 60)
    return (f"{h} h {m} min" if m else f"{h} h") if h else f"{m} min"



# --------------------------------------------------------------------------------------- committed records


@functools.cache
def _records(folder: Path) -> dict[str, RunRecord]:
    if not folder.is_dir():
        raise FileNotFoundError(f"no committed results folder {folder}")
    return records(folder)


def _dates(recs) -> str:
    """When the records ``recs`` were written (their provenance): one date, or the first and the last."""
    dates = sorted({r.provenance.date for r in recs})
    if not dates:
        raise LookupError("no records to date")
    return dates[0] if len(dates) == 1 else f"{dates[0]} to {dates[-1]}"


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


def _llm_runs(profile: str = "laptop", dataset: str = "toy") -> dict[tuple, RunRecord]:
    """The committed LLM runs of ``profile`` on ``dataset`` by (loss, tau, lr)."""
    out = {}
    for rec in _records(_llm_folder(profile)).values():
        if rec.config["dataset"] != dataset:
            continue
        key = (rec.config["loss"], float(rec.config["tau"]), float(rec.config["lr"]))
        if key in out:
            raise ValueError(f"two committed runs with loss, tau, lr {key}: {out[key].name} and {rec.name}")
        out[key] = rec
    return out


def _llm_run(loss: str, tau: float = 1.0, lr: float | None = None, profile: str = "laptop",
             dataset: str = "toy") -> RunRecord:
    runs = _llm_runs(profile, dataset)
    lr = _llm_base_lr(profile) if lr is None else lr
    if (loss, tau, lr) not in runs:
        raise LookupError(f"no committed {profile} {dataset} LLM run with loss {loss}, tau {tau}, lr {lr:g} in "
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


