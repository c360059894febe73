"""The runs behind the transfer table (:mod:`.transfer`): each arm of a claim as a run of its family, read from
the committed reference results or trained (and found again in the run cache) at a profile on any dataset.

* :data:`ARMS`: each arm's family, its one change to the family's configuration, the profile its committed
  reference runs are made at and the folders of ``results/`` that hold them;
* :func:`arm_config` and :func:`committed_record`: an arm's configuration, and the committed run whose
  configuration it is (the records of ``results/`` are matched by their whole configuration, so a run made with
  other options is never taken for it);
* :func:`jobs` and :func:`train_jobs`: the runs a table needs, each once, trained under one progress bar with the
  time left (:func:`estimate_seconds`; :func:`describe` lists them with their cost before any trains), each
  optionally committed as it finishes (:func:`transfer_path`).
"""

from __future__ import annotations

import functools
import math
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from tqdm.auto import tqdm

from .. import runs
from ..core import families
from ..core.io import progress_bars
from ..core.profiles import profile as profile_sizes
from ..core.profiles import train_config
from ..core.recommender import evaluate as evaluate_recommender
from ..core.results import read_record, run_record, write_record
from ..data import dataset_fingerprint, load_dataset
from ..seqrec import Popularity
from .classic_protocol import CHOSEN_DEFAULT, PROTOCOL_VARIANTS, protocol_selection, protocol_variants
from .profile_runs import lite_config, llm_config, llm_eval, llm_run, seqrec_config
from .published import provenance, results_root, slug
from .sasrec_vs_llm import PLATEAU

RANKING = ("ndcg@10", "hr@10")
REFERENCE_SEEDS = (0, 1, 2)  # the seeds of the committed reference (issue 26: three for every comparison)


@dataclass(frozen=True)
class Arm:
    """One side of a comparison: ``family``'s configuration at a profile with the changes ``over``; its committed
    reference runs are made at profile ``reference`` and lie in ``folders`` of ``results/`` (and in
    ``results/<reference>/transfer/``, where ``llmrec verdicts --reference --publish`` writes)."""

    name: str
    family: str  # llm | seqrec | lite | popularity (computed from the training windows: nothing trains)
    over: dict = field(default_factory=dict, hash=False)
    reference: str | None = None
    folders: tuple = ()


def _llm(name: str, loss: str) -> Arm:
    return Arm(name, "llm", {"loss": loss}, "laptop", ("laptop/llm",))  # make results-llm


def sasrec_arm(name: str) -> Arm:
    """SASRec as the classic protocol's variant ``name`` (:data:`.classic_protocol.PROTOCOL_VARIANTS`)."""
    return Arm(name, "seqrec", PROTOCOL_VARIANTS[name], "laptop", ("laptop/07_classic",))  # make results-classic


SCE = "SASRec + SCE (K 500, α 100)"
ARMS = {a.name: a for a in (
    _llm("LML", "lml"), _llm("MSL + ATS", "msl-ats"), _llm("MSL + α", "msl-alpha"), _llm("S-DPO", "sdpo"),
    sasrec_arm("SASRec + CE"), sasrec_arm("SASRec + BCE"), sasrec_arm("SASRec + BPR"), sasrec_arm(SCE),
    sasrec_arm(CHOSEN_DEFAULT),
    Arm("Lite-LLM4Rec", "lite", {}, "quick", ("quick/08_lite",)),  # make results-lite
    Arm("popularity", "popularity"),
)}


def chosen_lr(profile: str, dataset: str, name: str) -> dict:
    """``{"lr": ...}``: the learning rate the classic protocol chose on validation for the SASRec variant ``name``
    where its selection is committed for ``profile`` and ``dataset`` (``results/<profile>/07_classic/selection/``),
    else {} (the profile's rate)."""
    return _chosen(str(results_root()), profile, dataset).get(name, {})


@functools.lru_cache(maxsize=32)
def _chosen(root: str, profile: str, dataset: str) -> dict:
    try:
        selection = protocol_selection(profile, dataset, train=False, progress=False)
    except FileNotFoundError:
        return {}
    return {n: {"lr": v["lr"]} for n, v in protocol_variants(selection).items() if "lr" in v}


def arm_config(arm: Arm, profile: str, dataset: str, seed: int, device: str | None = None,
               sdpo_ref: str | None = None) -> dict:
    """The configuration of ``arm`` at ``profile`` on ``dataset`` with ``seed``, as its run's ``config.json`` holds
    it. SASRec is trained to its plateau (:data:`.sasrec_vs_llm.PLATEAU`, except under ``smoke``, where the
    profile's short schedule only has to run) at the protocol's chosen rate (:func:`chosen_lr`); S-DPO starts
    from the LML run named ``sdpo_ref``."""
    over = dict(arm.over, seed=seed, device=device)
    if arm.family == "llm":
        loss = over.pop("loss")
        if loss == "sdpo":
            over.update(n_train=profile_sizes(profile)["sdpo_n_train"], sdpo_ref=sdpo_ref)
        config = llm_config(profile, loss, dataset, **over)
    elif arm.family == "seqrec":
        plateau = {} if profile == "smoke" else PLATEAU
        config = seqrec_config(profile, dataset, **plateau, **over, **chosen_lr(profile, dataset, arm.name))
    elif arm.family == "lite":
        config = lite_config(profile, dataset, **over)
    else:
        raise ValueError(f"{arm.name}: a {arm.family} arm has no configuration")
    return families.get(config["family"]).load("config").complete(config)


def eval_keys(arm: Arm, profile: str) -> dict[str, str]:
    """metric -> the evaluation an arm's run is judged by at ``profile``: an LLM by the likelihood of the target's
    title and by beam search on the profile's test users, the others by ranking every item for every test window."""
    if arm.family != "llm":
        return {m: runs.metrics_key("test", "full", None, 10) for m in RANKING}
    p = profile_sizes(profile)
    beam = runs.metrics_key("test", "beam", p["eval_users"], p["eval_beams"])
    return {"nll_valid": runs.metrics_key("test", "likelihood", p["likelihood_users"], p["eval_beams"]),
            "ndcg@10": beam, "hr@10": beam}


# The beam scorings a published reference LLM run also holds (issue 26, item 2; :mod:`.beam_scoring`): the
# validation beams scored both ways (what the default is chosen on) and the test beams scored by log P_valid, on the
# users of the scoring that the verdicts judge by
BEAM_SCORINGS = (("valid", "full"), ("valid", "valid"), ("test", "valid"))


def beam_scoring_keys(run: Path, profile: str, tests=None) -> list[str]:
    """Evaluate ``run``'s beams in every :data:`BEAM_SCORINGS` (cached in its ``metrics.json``: a second call
    computes nothing); their metric keys. Needs the run's weights, so it is done before a run is published.
    ``tests``: the (users, beams) of the test scorings (default: the profile's; empty: validation only)."""
    p, cfg = profile_sizes(profile), runs.config_of(run)
    sizes = {"valid": [(p["valid_users"], cfg["valid_beams"])],
             "test": [(p["eval_users"], p["eval_beams"])] if tests is None else list(tests)}
    keys = []
    for split, score in BEAM_SCORINGS:
        for n, k in sizes[split]:
            runs.evaluate(run, split, "beam", n, k=k, beam_score=score, progress=False)
            keys.append(runs.metrics_key(split, "beam", n, k, beam_score=score))
    return keys


@functools.lru_cache(maxsize=8)
def _popularity(dataset: str, fingerprint: str) -> dict:
    pop = Popularity(dataset)
    return evaluate_recommender(pop, pop.ds.split("test"), "full")


def popularity_entry(dataset: str) -> dict:
    """Popularity (training counts) ranking every item for every test window: computed, nothing trains."""
    return _popularity(dataset, dataset_fingerprint(dataset))


def run_arm(arm: Arm, profile: str, dataset: str, seed: int, device: str | None = None) -> tuple[Path | None, dict]:
    """Train ``arm`` (or find it in the run cache) and evaluate it on test: (run directory, {key: evaluation})."""
    if arm.family == "popularity":
        return None, {runs.metrics_key("test", "full", None, 10): popularity_entry(dataset)}
    if arm.family == "llm":
        over = dict(arm.over)
        run = llm_run(profile, over.pop("loss"), dataset, device, progress=False, seed=seed, **over)
        modes = {"nll_valid": "likelihood"}
        return run, {key: llm_eval(run, profile, "test", modes.get(m, "beam"), progress=False)
                     for m, key in eval_keys(arm, profile).items()}
    run = runs.train(arm_config(arm, profile, dataset, seed, device), progress=False)
    return run, {key: runs.evaluate(run, "test", "full", progress=False) for key in set(eval_keys(arm, profile).values())}


# ------------------------------------------------------------------------------------------------ committed runs


def _comparable(config: dict) -> dict:
    return {k: v for k, v in config.items() if k != "device"}


@functools.lru_cache(maxsize=64)
def _folder_records(folder: str, listing: tuple) -> tuple:
    return tuple(r for r in (read_record(Path(folder) / name) for name, _, _ in listing) if r.kind == "run")


def _records(folder: Path) -> tuple:
    """The run records of ``folder`` (read once while its files are unchanged)."""
    if not folder.is_dir():
        return ()
    listing = tuple((p.name, p.stat().st_mtime_ns, p.stat().st_size) for p in sorted(folder.glob("*.json")))
    return _folder_records(str(folder), listing)


def committed_record(arm: Arm, dataset: str, seed: int, keys=()):
    """The committed reference run of ``arm`` on ``dataset`` with ``seed`` that holds the evaluations ``keys``: the
    record whose configuration is :func:`arm_config`'s at the arm's reference profile (the device aside), or None."""
    sdpo_ref = None
    if arm.over.get("loss") == "sdpo":
        lml = committed_record(ARMS["LML"], dataset, seed)
        if lml is None:
            return None
        sdpo_ref = lml.extra.get("run", lml.name)  # its run directory's name
    want = _comparable(arm_config(arm, arm.reference, dataset, seed, sdpo_ref=sdpo_ref))
    for folder in (*arm.folders, f"{arm.reference}/transfer"):
        for rec in _records(results_root() / folder):
            if (rec.family, rec.dataset) == (arm.family, dataset) and _comparable(rec.config) == want \
                    and all(k in rec.evaluations for k in keys):
                return rec
    return None


def transfer_path(arm: Arm, dataset: str, seed: int) -> Path:
    """Where ``llmrec verdicts --reference --publish`` commits the reference run of ``arm`` (a Greek letter spelled
    out, so that "MSL + α" is not filed as "msl")."""
    name = slug(arm.name.replace("α", " alpha ").replace("τ", " tau "))
    return results_root() / arm.reference / "transfer" / f"{slug(dataset)}-{name}-seed-{seed}.json"


# ------------------------------------------------------------------------------------------------ what to train

# Seconds on the 2-core VM (docs/results.md, 2026-11-30) per unit of a run's work: the printed estimate and the
# progress bar's weights (the bar's time left is this estimate scaled by the pace measured so far)
COST = {"llm step": 0.5, "sdpo step": 3.5, "beam user": 0.7, "likelihood user": 0.05, "frozen window": 0.3,
        "sasrec epoch per 1k windows": {"ce": 0.75, "sce": 0.3, "sampled-softmax": 0.3, "bce": 0.1, "bpr": 0.1},
        "lite epoch per 1k windows per block": 2.0, "item": 0.005}


def estimate_seconds(arm: Arm, profile: str, dataset: str, publish: bool = False) -> float:
    """What training and evaluating ``arm`` at ``profile`` on ``dataset`` costs on 2 CPU cores, roughly
    (:data:`COST`; early stopping is taken to end a run halfway to its epoch cap; the LML run of a seed pays for
    the frozen blocks' cache of its windows and evaluated users, which the seed's other LLM runs share);
    ``publish``: with the beam scorings a published LLM run holds (:data:`BEAM_SCORINGS`)."""
    if arm.family == "popularity":
        return 1.0
    ds = load_dataset(dataset)
    cfg = train_config(profile, arm.family, **arm.over)
    windows = min(len(ds.train), cfg.get("max_train_windows") or math.inf)
    if arm.family == "llm":
        p = profile_sizes(profile)
        sdpo = arm.over["loss"] == "sdpo"
        n = min(windows, (p["sdpo_n_train"] if sdpo else None) or p["n_train"])
        steps = min(math.ceil(n / p["batch_size"]), p.get("max_steps") or math.inf) * p["epochs"]
        likelihood = (p["likelihood_users"] or len(ds.test)) + p["n_valid_users"] * p["epochs"]
        frozen = n + (p["likelihood_users"] or len(ds.test)) if arm.over["loss"] == "lml" else 0  # the seed's first
        beam_users = (p["eval_users"] or len(ds.test)) + (sum(  # a validation beam has about half as many beams
            (p["valid_users"] or len(ds.valid)) / 2 if split == "valid" else p["eval_users"] or len(ds.test)
            for split, _ in BEAM_SCORINGS) if publish else 0)
        return (steps * COST["sdpo step" if sdpo else "llm step"] + beam_users * COST["beam user"]
                + likelihood * COST["likelihood user"] + frozen * COST["frozen window"])
    epochs = PLATEAU["epochs"] / 2 if arm.family == "seqrec" else cfg["epochs"] / 2 + 1
    if arm.family == "seqrec":
        return epochs * windows / 1000 * COST["sasrec epoch per 1k windows"][arm.over["loss"]]
    return (epochs * windows / 1000 * COST["lite epoch per 1k windows per block"] * cfg["rec_layers"]
            + len(ds.items) * COST["item"])


@dataclass(frozen=True)
class Job:
    """One run a table needs: ``arm`` with ``seed`` at ``profile`` on ``dataset``."""

    arm: Arm
    seed: int
    profile: str
    dataset: str

    @property
    def label(self) -> str:
        return self.arm.name if self.arm.family == "popularity" else f"{self.arm.name}, seed {self.seed} ({self.profile})"


FAMILY_ORDER = ("popularity", "seqrec", "lite", "llm")  # the cheap runs first; LML before S-DPO


def jobs(dataset: str, profile: str | None, seeds, names) -> list[Job]:
    """The runs of the arms ``names`` on ``dataset``, each once, with ``seeds``; each arm at ``profile``, or at its
    reference profile where ``profile`` is None; popularity once (it has no seed)."""
    arms = sorted((ARMS[n] for n in dict.fromkeys(names)), key=lambda a: (FAMILY_ORDER.index(a.family), a.name != "LML"))
    return [Job(a, s, profile or a.reference or "quick", dataset)
            for a in arms for s in (seeds if a.family != "popularity" else seeds[:1])]


def estimates(todo: list[Job], publish: bool = False) -> list[int]:
    """:func:`estimate_seconds` of each job, in whole seconds (at least 1)."""
    return [max(1, round(estimate_seconds(j.arm, j.profile, j.dataset, publish))) for j in todo]


def _summary(todo: list[Job], est: list[int]) -> str:
    return (f"{len(todo)} runs to train, or to find in the run cache: about {sum(est) / 60:.0f} min on 2 CPU cores if "
            "none is there")


def describe(todo: list[Job], publish: bool = False) -> str:
    """What :func:`train_jobs` would train, one line per run with its estimate on 2 CPU cores, then the total
    (``llmrec verdicts --plan``: nothing trains)."""
    est = estimates(todo, publish)
    lines = [f"{job.label} on {job.dataset}: " + ("computed from the training windows" if
             job.arm.family == "popularity" else f"about {e / 60:.0f} min") for job, e in zip(todo, est)]
    return "\n".join([*lines, _summary(todo, est) if todo else "nothing to train"])


def train_jobs(todo: list[Job], device: str | None = None, progress: bool = True, publish: bool = False) -> dict:
    """Train and evaluate ``todo`` (each found again in the run cache when it is there), under one progress bar
    weighted by :func:`estimate_seconds` with the time left; with ``publish`` each run is committed as a results
    record at :func:`transfer_path` as it finishes. Returns {(arm name, seed): {metric: evaluation}} and, under
    ``"_stats"``, the runs trained, found and computed (popularity) and the seconds it took."""
    est = estimates(todo, publish)
    out, stats = {}, {"trained": [], "found": [], "computed": [], "seconds": 0.0}
    nothing_trains = all(j.arm.family == "popularity" for j in todo)
    bar = tqdm(total=sum(est), unit="s", smoothing=0, disable=nothing_trains or not progress_bars(progress),
               bar_format="{l_bar}{bar}| estimated {n_fmt}/{total_fmt} s [{elapsed}<{remaining}] {postfix}")
    if not bar.disable:
        bar.write(f"{_summary(todo, est)} (the time left is corrected by the pace measured)", file=sys.stderr)
    t0 = time.perf_counter()
    for i, (job, e) in enumerate(zip(todo, est)):
        bar.set_postfix_str(f"run {i + 1}/{len(todo)}: {job.label}")
        started = time.time()
        run, evals = run_arm(job.arm, job.profile, job.dataset, job.seed, device)
        fresh = run is not None and (run / "done.json").stat().st_mtime >= started
        stats["computed" if run is None else "trained" if fresh else "found"].append(job.label)
        if fresh:
            bar.update(e)
        else:  # found in the run cache: it no longer counts in the work left
            bar.total -= e
            bar.refresh()
        if publish and run is not None:
            scorings = beam_scoring_keys(run, job.profile) if job.arm.family == "llm" else []
            write_record(transfer_path(job.arm, job.dataset, job.seed), run_record(
                run, name=f"{job.arm.name} / seed {job.seed}", profile=job.profile, keys=sorted({*evals, *scorings}),
                what="do the conclusions transfer? the committed reference run of one arm (llmrec verdicts)",
                extra={"arm": job.arm.name, "seed": job.seed, "run": run.name}, provenance=provenance(),
                dataset_fingerprint=dataset_fingerprint(job.dataset)))
        out[(job.arm.name, job.seed)] = {m: evals[k] for m, k in eval_keys(job.arm, job.profile).items()}
    bar.close()
    stats["seconds"] = time.perf_counter() - t0
    return {**out, "_stats": stats}
