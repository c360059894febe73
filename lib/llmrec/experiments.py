"""What the chapters run: the canonical runs of a profile (any family), their evaluation, the tables.

A chapter asks for ``llm_run(profile, "lml", dataset)``; the run cache (keyed by
the full configuration) makes every chapter that asks for the same run get the
same trained model, so nothing trains twice within a ``make figures`` batch.
"""

from __future__ import annotations

import json
import math
import os
import re
import time
from pathlib import Path

import numpy as np
import pandas as pd

from . import runs
from .core import rundir
from .core.provenance import provenance  # commit, date, machine, versions: in every results record
from .core.io import atomic_write, read_json, repo_root, write_json
from .core.metrics import (compare_entries, entry_values, mean_interval, paired_difference, rank_of_target,
                           summarize)
from .core.recommender import evaluate as evaluate_recommender
from .core.samplers import sample_rows
from .llm import decode
from .core.profiles import dataset_for
from .core.profiles import profile as profile_sizes
from .core.profiles import sce_grid as sce_grid_values
from .core.profiles import train_config
from .data import dataset_fingerprint
from .lite import complete as complete_lite
from .seqrec import MODELS, Popularity


def chapter_datasets(profile: str, dataset: str | None = None, own=("toy", "books")) -> list[str]:
    """The datasets a chapter runs on, from its one ``dataset`` parameter: None gives the chapter's own list
    (``own``: Toy, and Books where the chapter compares datasets); a name (``toy``, ``books``) or a prepared
    folder gives that dataset alone. Under ``smoke`` the synthetic catalogue stands in for Toy and Books
    (:func:`llmrec.core.profiles.dataset_for`); a folder stays itself."""
    return list(dict.fromkeys(dataset_for(profile, d) for d in ([dataset] if dataset else list(own))))


def size(name: str, value, default):
    """A chapter's size parameter: ``default`` when None, else a positive integer (an error names ``name``)."""
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive integer (or None for {default}), got {value!r}")
    return value


def llm_config(profile: str, loss: str, dataset: str | None = None, device: str | None = None, **overrides) -> dict:
    return train_config(profile, "llm", loss=loss, dataset=dataset_for(profile, dataset), device=device, **overrides)


_LLM_RUNS: dict[str, Path] = {}  # every LLM run this process trained or found (what export_llm_results writes)


def llm_run(profile: str, loss: str, dataset: str | None = None, device: str | None = None, progress: bool = True,
            **overrides) -> Path:
    """Train (or find in the run cache) one LLM run of the profile; S-DPO starts from the profile's LML run."""
    if loss == "sdpo" and "sdpo_ref" not in overrides:
        ref_over = {k: v for k, v in overrides.items() if k in ("seed", "lr", "n_train", "layers", "lora_layers")}
        # the LML run's name in the run cache, not its path: the key of the S-DPO run stays the same in any clone
        overrides["sdpo_ref"] = llm_run(profile, "lml", dataset, device, progress, **ref_over).name
    if loss == "sdpo" and "n_train" not in overrides:
        overrides["n_train"] = profile_sizes(profile)["sdpo_n_train"]  # S-DPO's extra windows (None: the profile's)
    run = runs.train(llm_config(profile, loss, dataset, device, **overrides), progress=progress)
    _LLM_RUNS[run.name] = run
    return run


def results_root() -> Path:
    """``$LLMREC_RESULTS`` (tests) or the committed ``results/`` at the repository root."""
    env = os.environ.get("LLMREC_RESULTS")
    return Path(env) if env else repo_root() / "results"


def use_results(results: str | None, part: str = "llm") -> Path | None:
    """``-p results <profile>`` in chapters 05 and 06: from here on, LLM runs and their evaluations are read from
    the committed ``results/<profile>/<part>/`` (finished runs without their weights, see
    :func:`export_llm_results`) and nothing is trained; None: the run cache as usual."""
    if not results:
        return None
    folder = results_root() / results / part
    rundir.use_committed(folder)
    return folder


def export_llm_results(profile: str, folder: str | Path | None = None, what: str = "") -> list[Path]:
    """Publish every LLM run of ``profile`` this process trained or found (:func:`llm_run`) into ``folder``
    (default ``results/<profile>/llm/``), one folder per run named as in the run cache: its ``config.json``,
    ``identity.json`` (the dataset's content hash), ``done.json`` (best epoch, training seconds, per-epoch
    validation), ``log.jsonl`` (every step: loss, tau, ATS statistics), ``metrics.json`` (each evaluation with
    its per-user ranks or likelihoods, users and seconds per user) and ``provenance.json`` (commit, machine,
    date, library versions); never the weights. :func:`use_results` reads them back as a run cache."""
    if rundir.read_only():
        raise RuntimeError("results mode: the runs were read from committed results; there is nothing to export")
    folder = Path(folder or results_root() / profile / "llm")
    out = []
    for name, run in _LLM_RUNS.items():
        cfg = runs.config_of(run)
        if cfg.get("profile") != profile:
            continue
        out.append(rundir.publish_record(run, folder / name, {"provenance.json": {
            "run": name, "what": what, "profile": profile, "dataset": cfg["dataset"],
            "dataset_fingerprint": dataset_fingerprint(cfg["dataset"]), "evaluations": sorted(rundir.load_metrics(run)),
            **provenance()}}))
    return out


def mechanism_run(profile: str, dataset: str | None, device: str | None = None, progress: bool = True,
                  primary: str | None = None, **overrides) -> Path:
    """The LML run the mechanism figures (3, 4, 5, 8) read: the profile's canonical LML run on the chapter's
    ``primary`` dataset (default: the profile's, Toy); on a side dataset (Books beside Toy), a run of
    ``side_steps`` steps where the profile sets them (quick: 32)."""
    ds = dataset_for(profile, dataset)
    side = profile_sizes(profile)["side_steps"]
    if side and ds != dataset_for(profile, primary):
        overrides.setdefault("max_steps", side)
    return llm_run(profile, "lml", ds, device, progress=progress, **overrides)


def valid_metric(profile: str) -> str:
    """The beam metric reported on validation: NDCG@10 with 10 validation beams, else NDCG@5 (quick: 5 beams).

    Choices on validation are made by the likelihood (:data:`CHOOSE_BY`), which resolves differences on
    hundreds of users where a 24-user beam metric is mostly 0.
    """
    return "ndcg@10" if profile_sizes(profile)["valid_beams"] >= 10 else "ndcg@5"


CHOOSE_BY = "nll_valid"  # validation choices: the lowest mean -log P_valid(target title | history)


def llm_eval(run: str | Path, profile: str, split: str = "test", mode: str = "beam", progress: bool = True) -> dict:
    """Evaluate an LLM run at the profile's sizes (users, beams); cached in the run's metrics.json.

    Validation uses the profile's ``valid_beams`` (quick: 5, NDCG@5, see :func:`valid_metric`), the test
    ``eval_beams`` (10); exact full ranking (``mode="full"``) runs on ``exact_users``, the likelihood
    (``mode="likelihood"``) on ``likelihood_users`` of either split.
    """
    p = profile_sizes(profile)
    n = {"full": p["exact_users"], "likelihood": p["likelihood_users"]}.get(
        mode, p["valid_users"] if split == "valid" else p["eval_users"])
    beams = p["valid_beams"] if split == "valid" and mode == "beam" else p["eval_beams"]
    return runs.evaluate(run, split=split, mode=mode, n_users=n, k=beams, progress=progress)


def row(name: str, run: str | Path, ev: dict) -> dict:
    done = read_json(Path(run) / "done.json")
    return {"method": name, **ev["summary"], "n_users": ev["n_users"],
            "s/step": done["seconds_per_step"], "train_s": done["train_seconds"],
            "eval_s/user": ev["seconds_per_user"]}


def results_table(evals: dict[str, tuple[Path, dict]]) -> pd.DataFrame:
    """One row per method: the evaluation's summary (NDCG/HR@5,10 and MRR, or the mean likelihoods), users,
    seconds per training step and per evaluated user."""
    return pd.DataFrame([row(name, run, ev) for name, (run, ev) in evals.items()]).set_index("method")


def paired_table(evals: dict[str, tuple[Path, dict]], baseline: str,
                 metrics=("ndcg@5", "ndcg@10", "hr@5", "hr@10")) -> pd.DataFrame:
    """Paired-bootstrap 95% intervals of (method - baseline) on the same users; ``resolved`` is False where
    the interval contains 0."""
    base = evals[baseline][1]
    out = []
    for name, (_, ev) in evals.items():
        if name == baseline:
            continue
        for m in metrics:
            b = compare_entries(base, ev, m)
            out.append({"method": name, "vs": baseline, "metric": m, "diff": b["diff"], "lo": b["lo"], "hi": b["hi"],
                        "n_users": b["n"], "resolved": not (b["lo"] <= 0 <= b["hi"])})
    return pd.DataFrame(out)


# ============================================================================ chapter 05: tau sweep and ablation


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
    95% interval of the one reported (``beam metric``: ``beam lo``, ``beam hi``)."""
    out = []
    for (ds, value), e in evals.items():
        for split in ("valid", "test"):
            nll = e[f"{split} nll"]
            mean, lo, hi = mean_interval(nll["nll_valid"])
            metric = valid_metric(profile) if split == "valid" else "ndcg@10"
            _, beam_lo, beam_hi = mean_interval(entry_values(e[split], metric))
            out.append({"dataset": ds, key: value, "split": split, "nll_valid": mean, "lo": lo, "hi": hi,
                        "nll_full": nll["summary"]["nll_full"], "users": nll["n_users"],
                        **e[split]["summary"], "beam metric": metric, "beam lo": beam_lo, "beam hi": beam_hi,
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
    interval of (method - baseline) on test ``nll_valid`` (negative: more likely than the baseline), test
    ``nll_full`` and the beam metrics on test."""
    vm = valid_metric(profile)
    base = rows[baseline][0]["test nll"]
    out = []
    for name, (e, note) in rows.items():
        t = e["test nll"]
        d = compare_entries(base, t, CHOOSE_BY)
        out.append({"method": name, "valid nll_valid": e["valid nll"]["summary"][CHOOSE_BY] if "valid nll" in e else None,
                    "test nll_valid": t["summary"][CHOOSE_BY], f"vs {baseline}": d["diff"], "lo": d["lo"],
                    "hi": d["hi"], "test nll_full": t["summary"]["nll_full"],
                    f"valid {vm}": e["valid"]["summary"][vm] if "valid" in e else None,
                    "test ndcg@10": e["test"]["summary"]["ndcg@10"], "test hr@10": e["test"]["summary"]["hr@10"],
                    "chosen": note, "run": str(e["run"])})
    return pd.DataFrame(out).set_index("method")


# ============================================================================ chapter 06: comparison


def learning_curve(profile: str, variants: dict[str, dict], steps, dataset: str | None = None,
                   device: str | None = None, split: str = "valid", seed: int = 0) -> pd.DataFrame:
    """The likelihood of ``split``'s targets after ``steps`` training steps, for each variant
    ({name: llm_run options, e.g. {"loss": "msl-ats", "ats_ema": 0.5}}).

    A run cut at ``max_steps=s`` is the first ``s`` steps of the full run (same seeded batch order, constant
    learning rate, the same ATS state), so each curve is one training trajectory read at several points.
    Rows: variant, steps, mean ``nll_valid`` with its 95% interval, mean ``nll_full``, users.
    """
    p = profile_sizes(profile)
    if p["epochs"] != 1:
        raise ValueError("learning_curve reads one epoch's trajectory; the profile trains several")
    full = p["max_steps"] or math.ceil(p["n_train"] / p["batch_size"])  # steps of the profile's own run
    out = []
    for name, options in variants.items():
        options = dict(options)
        loss = options.pop("loss")
        for s in steps:
            cut = {} if s == full else {"max_steps": int(s)}
            run = llm_run(profile, loss, dataset, device, seed=seed, **options, **cut)
            done = read_json(Path(run) / "done.json")
            if done["steps"] != s:
                raise ValueError(f"{name}: a run of {done['steps']} steps cannot be read at step {s}")
            ev = llm_eval(run, profile, split, "likelihood")
            mean, lo, hi = mean_interval(ev["nll_valid"])
            out.append({"variant": name, "steps": int(s), "nll_valid": mean, "lo": lo, "hi": hi,
                        "nll_full": ev["summary"]["nll_full"], "users": ev["n_users"], "run": str(run)})
    return pd.DataFrame(out)


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
    HR@10 under each and the paired 95% interval of (P_valid - full)."""
    p = profile_sizes(profile)
    rows = []
    for name in names:
        run, full = evals[name]
        pv = runs.evaluate(run, split, "beam", p["eval_users"], k=p["eval_beams"], beam_score="valid", progress=False)
        for m in ("ndcg@10", "hr@10"):
            d = compare_entries(full, pv, m)
            rows.append({"method": name, "metric": m, "full softmax": full["summary"][m], "P_valid": pv["summary"][m],
                         "diff": d["diff"], "lo": d["lo"], "hi": d["hi"], "users": d["n"],
                         "resolved": not (d["lo"] <= 0 <= d["hi"]), "s/user full": full["seconds_per_user"],
                         "s/user P_valid": pv["seconds_per_user"]})
    return pd.DataFrame(rows).set_index(["method", "metric"])


BEAM_CONVENTIONS = {
    "full softmax, lp 0 (this project)": dict(score="full", length_penalty=0.0),
    "P_valid, lp 0": dict(score="valid", length_penalty=0.0),
    "full softmax, lp 1 (MSL code)": dict(score="full", length_penalty=1.0),
    "P_valid, lp 1": dict(score="valid", length_penalty=1.0),
}


def beam_conventions(run: str | Path, n_users: int = 16, split: str = "valid", k: int = 10,
                     conventions: dict = BEAM_CONVENTIONS) -> pd.DataFrame:
    """How well each beam-scoring convention finds the model's own top ``k`` (exact P_valid ranking of the
    whole catalogue, Lemma 1) on ``n_users`` seeded windows of ``split``.

    Per convention: ``overlap@k`` (share of the exact top-k items in the beam's k), ``top-1 exact`` (share of
    users whose beam #1 is the exact #1), the median exact rank of the beam's #1, the target's hit rate in the
    list, and seconds per user. Lengths are penalised by HF's ``length_penalty`` (score / length^lp).
    """
    rec = runs.load(run)
    windows = rec.ds.split(split)
    df = windows.iloc[sample_rows(len(windows), n_users, seed=0)]
    hist, targets = [list(h) for h in df["history"]], df["target"].astype(int).tolist()
    exact = rec.score(hist)  # (users, items): log P_valid of every title
    order = np.argsort(-exact, axis=1, kind="stable")
    top = [set(rec.item_ids[o[:k]].tolist()) for o in order]
    prompts = rec.prompts(hist)
    rows = []
    for name, c in conventions.items():
        t0 = time.perf_counter()
        beams = decode.beam_search_batch(rec.model, prompts, rec.trie, num_beams=k, batch_size=rec.eval_batch,
                                         score=c["score"], engine="hf" if c["length_penalty"] else "fast",
                                         length_penalty=c["length_penalty"])
        seconds = (time.perf_counter() - t0) / len(prompts)
        lists = [[i for items, _ in b for i in items][:k] for b in beams]
        first = [lst[0] for lst in lists]
        first_rank = rank_of_target(exact, rec.columns(first))
        ranks = [decode.rank_from_beams(b, t) for b, t in zip(beams, targets)]
        rows.append({"convention": name, f"overlap@{k}": float(np.mean([len(set(lst) & tp) / k
                                                                         for lst, tp in zip(lists, top)])),
                     "top-1 exact": float(np.mean(first_rank == 0)), "median exact rank of #1": float(np.median(first_rank)),
                     f"hit@{k}": float(np.mean(np.isfinite(ranks))), "s/user": seconds, "users": len(prompts)})
    return pd.DataFrame(rows).set_index("convention")


# ============================================================================ chapter 07: classic models, across families


def seqrec_config(profile: str, dataset: str | None = None, **overrides) -> dict:
    return train_config(profile, "seqrec", dataset=dataset_for(profile, dataset), **overrides)


def run_seqrec(config: dict, split: str = "test", progress: bool = False) -> dict:
    """Train (or find in the run cache) and evaluate one classic configuration on every window: a result row
    (with the 95% bootstrap interval of NDCG@10 over the windows)."""
    run = runs.train(config, progress=progress)
    ev = runs.evaluate(run, split, "full", progress=False)
    done = read_json(run / "done.json")
    cfg = runs.config_of(run)
    row = {k: cfg[k] for k in ("dataset", "model", "loss")}
    if cfg["loss"] in ("sampled-softmax", "sce"):
        row.update(K=cfg["negatives"], alpha=cfg["alpha"] if cfg["loss"] == "sce" else 1.0)
    row.update(ev["summary"])
    _, row["ndcg@10 lo"], row["ndcg@10 hi"] = mean_interval(entry_values(ev, "ndcg@10"))  # 95%, over windows
    row.update({k: done.get(k) for k in ("best_epoch", "epochs_run", "seconds_per_epoch", "peak_memory_mb",
                                         "score_matrix_mb")})
    row["run_dir"] = str(run)
    return row


def compare_losses(profile: str, dataset: str, models=MODELS, losses=("ce", "bce", "bpr"), split: str = "test",
                   progress: bool = False, **overrides) -> pd.DataFrame:
    """One row per (model, loss): test metrics, best epoch, seconds per epoch, peak memory."""
    return pd.DataFrame([run_seqrec(seqrec_config(profile, dataset, model=m, loss=l, **overrides), split, progress)
                         for m in models for l in losses])


def sce_grid(profile: str, dataset: str, Ks=None, alphas=None, model: str = "sasrec", split: str = "test",
             progress: bool = False, **overrides) -> pd.DataFrame:
    """SCE over K x alpha (alpha = 1 is sampled softmax); one row per cell."""
    grid = sce_grid_values(profile)
    return pd.DataFrame([run_seqrec(seqrec_config(profile, dataset, model=model, loss="sce", negatives=int(K),
                                                  alpha=float(a), **overrides), split, progress)
                         for K in (Ks or grid["K"]) for a in (alphas or grid["alpha"])])


PLATEAU = dict(epochs=50, patience=5)  # early stopping with patience 5 and a cap the best epoch should not reach


def sasrec_plateau(profile: str, dataset: str | None = None, **overrides) -> dict[str, Path]:
    """SASRec + CE and SASRec + SCE (the SCE authors' K 500, α 100) trained to their plateau
    (:data:`PLATEAU`): the classic rows that chapters 07 and 08 put beside the LLM families (one run each,
    shared through the run cache)."""
    cfg = lambda **kw: seqrec_config(profile, dataset, **{**PLATEAU, **kw, **overrides})
    return {"SASRec + CE": runs.train(cfg(loss="ce"), progress=False),
            "SASRec + SCE (K 500, α 100)": runs.train(cfg(loss="sce", negatives=500, alpha=100.0), progress=False)}


def popularity_summary(dataset: str, split: str = "test") -> dict:
    """NDCG/HR@5,10 and MRR of ranking every item by its training interactions (the same for every user)."""
    pop = Popularity(dataset)
    df = pop.ds.split(split)
    return summarize(pop.rank(df["history"].tolist(), df["target"].tolist(), "full"))


def cross_family_table(llm: dict[str, Path], seq: dict[str, Path], profile: str, baseline: str,
                       split: str = "test") -> tuple[pd.DataFrame, pd.DataFrame]:
    """LLM runs and classic runs on the LLM runs' users: metrics, and paired intervals vs ``baseline``.

    Every run is evaluated by :func:`llmrec.runs.evaluate` on the same seeded
    users (the LLM runs by beam search, the classic runs by full ranking).
    """
    evals = {name: (run, llm_eval(run, profile, split)) for name, run in llm.items()}
    n = profile_sizes(profile)["eval_users"]
    evals.update({name: (run, runs.evaluate(run, split, "full", n, progress=False)) for name, run in seq.items()})
    table = pd.DataFrame([{"method": m, **ev["summary"], "n_users": ev["n_users"]} for m, (_, ev) in evals.items()])
    return table.set_index("method"), paired_table(evals, baseline)


# ============================================================================ chapter 08: Lite-LLM4Rec

# each ablation changes one thing of the profile's Lite-LLM4Rec configuration
LITE_VARIANTS = {
    "Lite-LLM4Rec": {},
    "no item LLM (item-id embeddings)": {"encoder": "none"},
    "frozen recommendation LLM": {"tune": "frozen"},
    "dot-product head": {"head": "dot"},
    "CE at the last position only": {"positions": "last"},
    "SCE (K 500, α 100)": {"loss": "sce", "negatives": 500, "alpha": 100.0},
    "MiniLM item encoder": {"encoder": "minilm"},
}


def lite_config(profile: str, dataset: str | None = None, **overrides) -> dict:
    """The profile's Lite-LLM4Rec configuration with ``overrides``, completed with the family's defaults."""
    return complete_lite(train_config(profile, "lite", dataset=dataset_for(profile, dataset), **overrides))


def lite_runs(profile: str, dataset: str | None = None, variants: dict | None = None,
              progress: bool = False) -> dict[str, Path]:
    """Train (or find in the run cache) each Lite-LLM4Rec variant: {name: run directory}."""
    variants = LITE_VARIANTS if variants is None else variants
    return {name: runs.train(lite_config(profile, dataset, **over), progress=progress)
            for name, over in variants.items()}


def all_users(named_runs: dict[str, Path | None], split: str = "test", dataset: str | None = None) -> dict:
    """{name: (run, evaluation)} by full ranking on every window of ``split``; a ``None`` run is the
    popularity baseline of ``dataset``."""
    out = {}
    for name, run in named_runs.items():
        if run is None:
            pop = Popularity(dataset)
            out[name] = (None, evaluate_recommender(pop, pop.ds.split(split), "full"))
        else:
            out[name] = (run, runs.evaluate(run, split, "full", progress=False))
    return out


def _run_facts(run) -> dict:
    """best_epoch, epochs_run, epochs_cap, seconds_total of a run directory (or the dict of a committed result)."""
    if run is None:
        return {}
    if isinstance(run, dict):
        return run
    done = read_json(Path(run) / "done.json")
    return {**done, "epochs_cap": runs.config_of(run).get("epochs")}


def accuracy_table(evals: dict, metrics=("ndcg@10", "hr@10")) -> pd.DataFrame:
    """Per method: each metric with its bootstrap 95% interval over users, Recall@10 (= HR@10: one held-out
    item per user), users, best epoch and training time (from the run's ``done.json``)."""
    out = []
    for name, (run, ev) in evals.items():
        r = {"method": name}
        for m in metrics:
            r[m], r[f"{m} lo"], r[f"{m} hi"] = mean_interval(entry_values(ev, m))
        r["recall@10"] = r.get("hr@10", np.nan)
        done = _run_facts(run)
        r.update(n_users=ev["n_users"], best_epoch=done.get("best_epoch"), epochs_run=done.get("epochs_run"),
                 epochs_cap=done.get("epochs_cap"), train_s=done.get("seconds_total"))
        # a best epoch at the cap: the run may not have reached its plateau
        r["best at cap"] = done.get("best_epoch") is not None and done.get("best_epoch") == done.get("epochs_cap")
        out.append(r)
    return pd.DataFrame(out).set_index("method")


def inference_cost(lite_run: str | Path, llm_run: str | Path, split: str = "test", beam_users: int = 16,
                   exact_users: int = 2, beams: int = 10) -> pd.DataFrame:
    """Milliseconds per user to rank, side by side in this process on the same users: the projection head
    (every item scored), constrained beam search (``beams`` beams) and exact ranking of every title by
    P_valid; the head also on every window of the split."""
    lite_rec, llm_rec = runs.load(lite_run), runs.load(llm_run)
    windows = lite_rec.ds.split(split)
    rows = []
    for name, rec, mode, n in (("projection head (Lite-LLM4Rec)", lite_rec, "full", beam_users),
                               (f"constrained beam search ({beams} beams)", llm_rec, "beam", beam_users),
                               ("exact ranking (P_valid of every title)", llm_rec, "full", exact_users),
                               ("projection head, every window", lite_rec, "full", None)):
        ev = evaluate_recommender(rec, windows, mode, n, k=beams)
        rows.append({"method": name, "ms/user": 1000 * ev["seconds_per_user"], "users": ev["n_users"]})
    t = pd.DataFrame(rows).set_index("method")
    beam = t["ms/user"].iloc[1]
    t["time saved vs beam"] = 1 - t["ms/user"] / beam
    return t


# ============================================================================ committed results (results/<profile>/)


def write_lines_json(path: str | Path, obj: dict) -> None:
    """A results file: one top-level key per line, each value compact (per-user lists stay on one line)."""
    lines = [f" {json.dumps(k, ensure_ascii=False)}: {json.dumps(v, ensure_ascii=False, separators=(',', ':'))}"
             for k, v in sorted(obj.items())]
    atomic_write(path, ("{\n" + ",\n".join(lines) + "\n}\n").encode())


def slug(name: str) -> str:
    """A file-name part: ASCII letters and digits, one dash between words ("SCE (K 500, α 100)" -> "sce-k-500-100")."""
    return re.sub(r"-+", "-", "".join(c if c.isascii() and c.isalnum() else "-" for c in name.lower())).strip("-")


def export_runs(evals: dict, folder: str | Path, profile: str, dataset: str, what: str) -> list[Path]:
    """One JSON per run of ``evals`` ({name: (run, evaluation)}) under ``folder``: the name, family and
    configuration, the dataset and its content hash, the evaluated users and their per-user ranks, the
    summary with 95% intervals, the ranking time per user, training time and best epoch, and provenance."""
    folder = Path(folder)
    out = []
    prov = dict(provenance())
    for order, (name, (run, ev)) in enumerate(evals.items()):
        cfg = runs.config_of(run) if run is not None else {"family": "popularity", "dataset": dataset}
        done = _run_facts(run)
        summary = {m: dict(zip(("mean", "lo", "hi"), mean_interval(entry_values(ev, m))))
                   for m in ("ndcg@10", "hr@10", "ndcg@5", "hr@5", "mrr")}
        summary["recall@10"] = summary["hr@10"]  # one held-out item per user
        rec = {"what": what, "name": name, "order": order, "family": cfg.get("family"), "config": cfg, "profile": profile,
               "dataset": dataset, "dataset_fingerprint": dataset_fingerprint(dataset), "split": ev.get("split", "test"),
               "mode": ev["mode"], "n_users": ev["n_users"], "user_sample": "every window of the split, in order",
               "user_ids": ev["user_ids"], "targets": ev["targets"],
               "ranks": [int(r) if np.isfinite(r) else None for r in ev["ranks"]],
               "summary": summary, "ms_per_user": 1000 * ev["seconds_per_user"],
               "best_epoch": done.get("best_epoch"), "epochs_run": done.get("epochs_run"),
               "epochs_cap": done.get("epochs_cap"),
               "seconds_total": done.get("seconds_total"), "seconds_per_epoch": done.get("seconds_per_epoch"),
               **prov}
        path = folder / f"{slug(dataset)}-{slug(name)}.json"
        write_lines_json(path, rec)
        out.append(path)
    return out


def read_runs(folder: str | Path, dataset: str) -> dict:
    """The evaluations :func:`export_runs` wrote for ``dataset``: {name: (run facts, evaluation)} in the shape
    that :func:`accuracy_table` and :func:`paired_table` take (no run directory, nothing trained)."""
    files = sorted(Path(folder).glob(f"{slug(dataset)}-*.json"))
    if not files:
        raise FileNotFoundError(f"no committed results for {dataset!r} in {folder}")
    out = {}
    records = [read_json(path) for path in files]
    for r in sorted((r for r in records if "ranks" in r), key=lambda r: (r.get("order", 0), r["name"])):
        ranks = [np.inf if x is None else x for x in r["ranks"]]
        ev = {"user_ids": r["user_ids"], "targets": r["targets"], "ranks": ranks, "mode": r["mode"],
              "n_users": r["n_users"], "split": r["split"], "seconds_per_user": r["ms_per_user"] / 1000,
              "summary": summarize(np.asarray(ranks, dtype=float))}
        out[r["name"]] = ({k: r.get(k) for k in ("best_epoch", "epochs_run", "epochs_cap", "seconds_total")}, ev)
    return out


def export_table(frame: pd.DataFrame, folder: str | Path, dataset: str, name: str, what: str) -> Path:
    """A small table (e.g. inference cost) as JSON beside the per-run results, with provenance."""
    path = Path(folder) / f"{slug(dataset)}-{slug(name)}.json"
    write_json(path, {"what": what, "table": json.loads(frame.reset_index().to_json(orient="records")),
                      "index": frame.index.name, **provenance()})
    return path


def read_table(folder: str | Path, dataset: str, name: str) -> pd.DataFrame:
    r = read_json(Path(folder) / f"{slug(dataset)}-{slug(name)}.json")
    return pd.DataFrame(r["table"]).set_index(r["index"])


def lite_study(profile: str, dataset: str | None = None, variants: dict | None = None, device: str | None = None,
               seed: int | None = None, **overrides) -> dict:
    """Chapter 08's runs evaluated on every test window: each Lite-LLM4Rec variant, SASRec + CE and SASRec +
    SCE (K 500, α 100) trained to their plateau (patience 5, at most 50 epochs), and popularity:
    {name: (run, evaluation)}."""
    over = {k: v for k, v in dict(device=device, seed=seed).items() if v is not None}
    lite = lite_runs(profile, dataset, {k: {**v, **over, **overrides} for k, v in
                                        (LITE_VARIANTS if variants is None else variants).items()})
    seq = sasrec_plateau(profile, dataset, **over)
    return all_users({**lite, **seq, "popularity": None}, "test", dataset_for(profile, dataset))


# ============================================================================ chapter 07: the classic protocol

# one change each against SASRec + CE (issue 16): losses, and the measured departures from the reference code
PROTOCOL_VARIANTS = {
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
            out[name] = {**over, **({"lr": base["lr"]} if "lr" in base else {})}
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
            done, cfg = read_json(run / "done.json"), runs.config_of(run)
            write_lines_json(path, {
                "what": "learning-rate selection on validation (no test window evaluated)", "name": name,
                "lr": lr, "seed": seed, "profile": profile, "dataset": dataset,
                "dataset_fingerprint": dataset_fingerprint(dataset), "config": cfg,
                **{k: done.get(k) for k in ("best_valid_ndcg@10", "best_epoch", "epochs_run", "seconds_total",
                                            "seconds_per_epoch", "peak_memory_mb")},
                "epochs_cap": cfg.get("epochs"), **provenance()})
            if progress:
                print(f"{name}, lr {lr:g}: {time.perf_counter() - t0:.0f} s -> {path}", flush=True)
        r = read_json(path)
        return {"variant": name, "lr": lr, "valid ndcg@10": r["best_valid_ndcg@10"], "best epoch": r["best_epoch"],
                "at cap": r["best_epoch"] == r["epochs_cap"], "s/run": r["seconds_total"],
                "peak MB": r["peak_memory_mb"]}

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
# departure) and the SCE grid; on Books the losses (a Books run costs about 3x a Toy one on 2 cores)
CLASSIC_REFERENCE = {"toy": dict(names=None, grid=True), "books": dict(names=PROTOCOL_LOSSES, grid=False)}


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
    ``baseline`` on the same windows and its interval (per user, the mean over the seeds both have; bootstrap over users),
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
            d = paired_difference(a, b)
            r.update({"diff": d["diff"], "lo": d["lo"], "hi": d["hi"], "resolved": not (d["lo"] <= 0 <= d["hi"])})
        rows.append(r)
    return pd.DataFrame(rows).set_index("variant")


provenance()  # the code this process runs: taken now, before any checkout can move on
