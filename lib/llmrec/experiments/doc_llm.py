"""Chapters 05–08's generated tables and values (:mod:`.doc_tables`): the laptop LLM runs (Tables 5 and 6, the τ
sweep, beam scoring) and Lite-LLM4Rec (quick)."""

from __future__ import annotations

import functools
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd

from .. import probes
from ..core.io import read_json, repo_root
from ..core.results import RunRecord, entry_from_evaluation, unpack
from ..core.metrics import no_hit_bound
from .doc_bench import sci
from .doc_format import (_chosen, _compare, _dates, _evaluation, _llm_base_lr, _llm_row, _llm_run, _llm_runs,
                         _msl_sweep, _records, _table6_runs, _valid_nll, agreement, hours, interval, markdown, mean_interval_text,
                         num, seconds, signed, table, values, verdict_word)
from .profile_runs import CHOOSE_BY
from .words import listing
from .published import read_runs, read_table, results_root, slug
from .tables import accuracy_table, paired_table, user_interval

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


def _beam_scoring_rows(dataset: str) -> str:
    """Beams scored by log P_valid against the default full-vocabulary log-softmax on the same test users of
    ``dataset``: every committed laptop run scored both ways, and the runs pooled (:mod:`.beam_scoring`)."""
    from . import beam_scoring

    out = []
    for r in beam_scoring.scoring_table("test", dataset).to_dict("records"):
        d = {m: beam_scoring.row_result(r, m) for m in beam_scoring.METRICS}
        out.append({"run": r["run"], "users": str(r["users"]),
                    "NDCG@10 full / P_valid": f"{num(r['ndcg@10 full'])} / {num(r['ndcg@10 P_valid'])}",
                    "P_valid − full [95% interval]": interval(d["ndcg@10"]),
                    "HR@10 full / P_valid": f"{num(r['hr@10 full'], 3)} / {num(r['hr@10 P_valid'], 3)}",
                    "HR@10: P_valid − full": interval(d["hr@10"], 3),
                    "NDCG@10 vs HR@10": agreement(d["ndcg@10"], d["hr@10"])})
    return markdown(out, "lrrrrrl")


@table
def laptop_beam_scoring() -> str:
    """Toy: every committed laptop run whose test beams were scored both ways, and the runs pooled."""
    return _beam_scoring_rows("toy")


@table
def laptop_beam_scoring_books() -> str:
    """Books: the same, for the reference runs of chapter 09 scored both ways."""
    return _beam_scoring_rows("books")


def _choice_values(dataset: str) -> dict[str, str]:
    from . import beam_scoring

    c = beam_scoring.choice(dataset=dataset)
    return {"runs": str(len(c["runs"])), "users": str(c["users"]), "hits.full": str(c["hits"]["full"]),
            "hits.valid": str(c["hits"]["valid"]), "diff": interval(c["pooled"]),
            "choice": {"full": "the full-vocabulary log-softmax", "valid": "log P_valid"}[c["choice"]],
            "test": interval(beam_scoring.pooled(beam_scoring.scored_both_ways("test", dataset))),
            "not_scored": listing(unscored) if (unscored := beam_scoring.not_scored("test", dataset)) else "none"}


@values
def beam_choice() -> dict[str, str]:
    """The beam score chosen on validation (:func:`.beam_scoring.choice`, Toy), for the prose; ``books.*``: the
    same comparison on Books, which checks the choice on a second dataset."""
    return {**_choice_values("toy"), **{f"books.{k}": v for k, v in _choice_values("books").items()}}


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
    every = _llm_runs()
    out["date"] = _dates(every.values())
    out["runs.time"] = hours(sum(_run_seconds(r) for r in every.values()))
    return out


def _run_seconds(rec: RunRecord) -> float:
    """What a run's record says it cost: training, the frozen blocks' pass and every evaluation."""
    frozen = sum(h.get("frozen_seconds", 0.0) for h in rec.training.facts["history"])
    return rec.training.facts["train_seconds"] + frozen + sum(ev.seconds or 0.0 for ev in rec.evaluations.values())


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
           # τ at a quarter, half and all of the run's steps (the step numbers: ats.quarter, ats.half, ats.steps)
           **{f"ats.{part}": str(steps // q) for part, q in (("quarter", 4), ("half", 2))},
           **{f"ats.tau.{part}": f"{s[f'tau at step {steps // q}']:.2f}"
              for part, q in (("quarter", 4), ("half", 2), ("last", 1))},
           "ats.valid_users": f"{ats.config['n_valid_users']:,}"}
    if tau2 is not None:
        nll = {r.name: _evaluation(r, "test", "likelihood")["summary"][CHOOSE_BY] for r in (ats, tau2)}
        ndcg = {r.name: _evaluation(r, "test", "beam")["summary"]["ndcg@10"] for r in (ats, tau2)}
        out["ats.vs_tau2"] = (f"−log P_valid {nll[ats.name]:.2f} vs {nll[tau2.name]:.2f}, beam NDCG@10 "
                              f"{num(ndcg[ats.name])} vs {num(ndcg[tau2.name])}")
    if any("valid_nll_valid" not in h for rec in (ats, lml) for h in rec.training.facts["history"]):
        return out  # no validation at the epochs' ends (the quick profile validates once, after training)
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
            "exact.beam_s": f"{beam['seconds_per_user']:.2f}", "exact.s": f"{exact['seconds_per_user']:.1f}",
            "exact.ratio": f"{exact['seconds_per_user'] / beam['seconds_per_user']:.1f}×"}


# ------------------------------------------------------------------- chapters 02, 05 and 06 (quick): the batch's runs


@values
def quick_llm() -> dict[str, str]:
    """The ``quick`` profile's LLM runs in the prose (``results/quick/llm/``, written by the canonical batch):
    when and with what they ran, the frozen pass and the likelihood's cost, chapter 02's identity, Figures 3 and
    4 from the training logs, the τ sweep, Tables 5 and 6 against LML, ATS over training, seconds per step and
    beam search against the exact ranking."""
    P = "quick"
    lml, ats, sdpo = (_llm_run(loss, profile=P) for loss in ("lml", "msl-ats", "sdpo"))
    toy = _llm_runs(P)
    versions = lml.provenance.versions or {}
    out = {"date": _dates([*toy.values(), *_llm_runs(P, "books").values()]),
           **{f"version.{k}": str(versions.get(k, "?")).split("+")[0] for k in ("torch", "transformers", "peft")}}
    # the frozen blocks' pass (once per set of windows, shared by the runs) and the likelihood's cache
    frozen = max(toy.values(), key=lambda r: sum(h.get("frozen_seconds", 0.0) for h in r.training.facts["history"]))
    out["frozen.s"] = seconds(sum(h["frozen_seconds"] for h in frozen.training.facts["history"]))
    out["frozen.windows"] = f"{frozen.training.facts['n_train']:,}"
    likelihood = {}  # split -> every run's likelihood evaluation of it, the slowest (it filled the cache) first
    for rec in toy.values():
        for ev in rec.evaluations.values():
            if ev.mode == "likelihood":
                likelihood.setdefault(ev.split, []).append(entry_from_evaluation(ev))
    slowest = {split: sorted(v, key=lambda e: -e["seconds"]) for split, v in likelihood.items()}
    out["likelihood.first"] = " and ".join(f"{seconds(v[0]['seconds'])} s ({split})"
                                           for split, v in sorted(slowest.items()))
    out["likelihood.users"] = f"{slowest['test'][0]['n_users']:,}"
    out["likelihood.per_user"] = f"{np.median([e['seconds_per_user'] for v in slowest.values() for e in v[1:]]):.2f}"
    out.update(_decomposition_values(lml, _llm_run("lml", profile=P, dataset="books"),
                                     toy[("l2-only", 1.0, _llm_base_lr(P))]))
    # the τ sweep (Figure 6) and Table 6, every run against LML on the same test users
    sweep = _msl_sweep(P)
    out["sweep.chosen"] = f"τ = {_chosen(sweep)[0]:g}"
    for tau, rec in sweep.items():
        nll = _evaluation(rec, "test", "likelihood")
        out[f"sweep.{tau:g}"] = mean_interval_text(*user_interval(nll[CHOOSE_BY], nll["user_ids"]), digits=2)
    out["sweep.users"] = str(_evaluation(sweep[1.0], "test", "likelihood")["n_users"])
    out["beam.users"] = f"{_evaluation(lml, 'test', 'beam')['n_users']} / {_evaluation(lml, 'valid', 'beam')['n_users']}"
    out["beam.test_users"] = str(_evaluation(lml, 'test', 'beam')['n_users'])
    beams = {r.name: _evaluation(r, "test", "beam") for r in toy.values() if any(
        ev.split == "test" and ev.mode == "beam" for ev in r.evaluations.values())}
    ndcg = {name: b["summary"]["ndcg@10"] for name, b in beams.items()}
    hit = sorted(n for n, b in beams.items() if b["summary"]["hr@10"] > 0)
    out["beam.ndcg"] = "0 everywhere" if not any(ndcg.values()) else f"{min(ndcg.values()):.4f}–{max(ndcg.values()):.4f}"
    out["beam.hits"] = "none for any LLM run" if not hit else f"a hit for {len(hit)} of {len(beams)} LLM runs"
    out["beam.bound"] = f"{no_hit_bound(_evaluation(lml, 'test', 'beam')['n_users']):.2f}"
    rows = _table6_runs(P)  # in the table's order: LML, LML + tuning τ, MSL, + tuning lr, + α, + tuning τ, + ATS
    for key, (label, rec) in zip(("lml", "lml-tau", "msl", "msl-lr", "msl-alpha", "msl-tau", "msl-ats"), rows.items()):
        out[f"table6.{key}"] = "the LML run" if rec.name == lml.name else \
            interval(_compare(lml, rec, "likelihood", CHOOSE_BY), 2)
        if "(valid chose" in label:
            out[f"table6.{key}.chosen"] = label.split("(valid chose ")[1].rstrip(")")
    nlls = [_evaluation(r, "test", "likelihood")["summary"][CHOOSE_BY] for r in (lml, sdpo, ats)]
    out["table5.nll"] = " / ".join(f"{x:.2f}" for x in nlls)
    out["table5.ndcg"] = " / ".join(f"{_evaluation(r, 'test', 'beam')['summary']['ndcg@10']:.4g}"
                                    for r in (lml, sdpo, ats))
    for name, rec in (("sdpo", sdpo), ("ats", ats)):
        d = _compare(lml, rec, "likelihood", CHOOSE_BY)
        out[f"table5.{name}"], out[f"table5.{name}.nll"] = interval(d, 2), f"{abs(d['diff']):.2f}"
    # ATS over the training steps, seconds per step, beam search against the exact ranking
    out.update({k: v for k, v in _ats_values(ats, lml, None).items() if not k.startswith("ats.valid")})
    # seconds per step side by side in one process (``llmrec bench train``, bench/train.json), not the batch's
    # runs: the first run of a batch pays the process's warm-up, so their ratio says more about order than loss
    bench = read_json(repo_root() / "bench" / "train.json")["train"]
    today = "one batch per forward (today)"
    step = {name: bench["losses"][loss]["settings"][today]["seconds_per_step"]
            for name, loss in (("lml", "lml"), ("ats", "msl-ats"), ("sdpo", "sdpo"))}
    out.update({f"step.{k}": f"{v:.2f}" for k, v in step.items()})
    out["step.windows"] = f"{bench['windows']}"
    out["step.ats_vs_lml"] = f"{abs(1 - step['ats'] / step['lml']):.0%} {'faster' if step['ats'] < step['lml'] else 'slower'}"
    out["step.sdpo_vs_ats"] = f"{step['sdpo'] / step['ats']:.1f}×"
    out.update(_exact_values(ats))
    return out


def _decomposition_values(lml: RunRecord, books: RunRecord, l2_only: RunRecord, tail: int = 10) -> dict[str, str]:
    """Chapter 02 from the quick runs' training logs: LML and its L1 share on the first batch (before any update),
    the largest |L1 + L2 − LML| over the logged steps (each term computed apart,
    :func:`llmrec.llm.losses.lml_decomposition`), Figure 3's median gradient-norm ratio
    (:func:`llmrec.probes.grad_norm_summary`) and Figure 4's mean L2 over the last ``tail`` steps."""
    log = pd.DataFrame([r for r in lml.log if "loss" in r])
    first = log.iloc[0]
    out = {"first.lml": f"{first['loss']:.2f}", "first.l1": f"{first['l1'] / first['loss']:.0%}",
           "identity.gap": sci((log['l1'] + log['l2'] - log['loss']).abs().max()),
           "identity.steps": str(len(log))}
    with tempfile.TemporaryDirectory() as tmp:
        norms = probes.grad_norm_summary({name: unpack(rec, Path(tmp) / name)
                                          for name, rec in (("toy", lml), ("books", books))})
    for name, r in norms.iterrows():
        out.update({f"grad.{name}": f"{r['ratio L1/L2']:.2f}", f"grad.{name}.logged": str(int(r["logged steps"])),
                    f"grad.{name}.steps": str(int(r["of steps"]))})
    alone = pd.DataFrame([r for r in l2_only.log if "loss" in r])
    out.update({"l2.alone": f"{alone['l2'].tail(tail).mean():.2f}", "l2.lml": f"{log['l2'].tail(tail).mean():.2f}",
                "l2.tail": str(min(tail, len(log))), "l2.steps": str(len(log))})
    return out


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
    out = {"windows": f"{evals['Lite-LLM4Rec'][1]['n_users']:,}", "date": _dates(_records(folder).values()),
           "sasrec-ce.ndcg@10": num(evals["SASRec + CE"][1]["summary"]["ndcg@10"])}
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


