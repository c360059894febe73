"""What each chapter of ``make figures`` computes at a profile, counted in the units of a cost table, and what
that costs: the estimate ``make figures`` prints before each chapter (:func:`llmrec.chapters.run_batch`).

A chapter's work is a list of :class:`Work`: so many training windows through so many transformer blocks, so
many users decoded, so many classic epochs. Each chapter's list is written below after its notebook (the same
helpers, configurations and sizes the notebook calls: :mod:`.profile_runs`, :mod:`.lite_vs_sasrec`,
:mod:`.sasrec_vs_llm`, the profile's tables); a piece of work carries the key under which the run cache (or the
frozen-block and item-vector caches) keeps its result, so work an earlier chapter of the batch did costs nothing
again (:func:`batch_workload`). The estimate assumes an empty run cache: every run trained.

A cost table (``bench/costs.json``, one entry per device kind, :func:`load_costs`) gives the seconds of one unit;
:func:`estimate` multiplies. Units:

* ``llm_train:<kind>``: one training window through one transformer block that trains (forward + backward),
  ``kind`` lml, msl, msl-ats or sdpo (an S-DPO window with its negatives and the reference forward);
* ``llm_grad_norms``: one window of a step that logs the gradient norms of L1 and L2 (Figure 3), per trained
  block; ``llm_frozen``: one window (or user) through one frozen block, forward only, once per window;
* ``beam_user`` (10 beams), ``exact_user``: one user decoded by the whole LLM; k beams count
  :func:`beam_share` of a 10-beam user;
  ``likelihood_user_block``: one user's teacher-forced title through one block (the top blocks only when the
  lower ones are cached: they count as ``llm_frozen`` once per window of the split);
* ``seqrec_window``: one training window of a classic model for one epoch (its share of the epoch's validation
  included), plus ``seqrec_scored:ce`` for every catalogue item CE scores per window, or
  ``seqrec_scored:sampled`` for every negative (K for sampled softmax and SCE, one for BCE and BPR);
* ``lite_window_block``: one training window of Lite-LLM4Rec for one epoch, per block of its recommendation
  LLM (the head counted as one more block); ``item_vector``: one item title encoded; ``lite_user``: one
  user ranked by the projection head;
* ``chapter``: a chapter's fixed cost (kernel, imports, data, trie, model loading).

Early-stopped runs (classic, Lite) are counted at :func:`expected_epochs`; LLM runs at their fixed epochs.
"""

from __future__ import annotations

import itertools
import json
import math
import statistics
from dataclasses import dataclass
from pathlib import Path

from ..core.io import read_json, repo_root
from ..core.profiles import profile as profile_sizes
from ..core.profiles import sce_grid as sce_grid_values
from ..data import load_dataset
from .lite_vs_sasrec import LITE_VARIANTS
from .parameters import chapter_datasets
from ..llm.config import TrainConfig
from .classic_protocol import PROTOCOL_VARIANTS
from .profile_runs import lite_config, llm_config, sdpo_overrides, seqrec_config
from .sasrec_vs_llm import PLATEAU


@dataclass(frozen=True)
class Work:
    """``count`` units of the cost table's ``unit``; ``key``: the cache that keeps the result (the same key again
    costs nothing); ``what``: a short description."""

    unit: str
    count: float
    key: str
    what: str


BLOCKS = {"smollm2-135m": 30, "tiny": 2}  # transformer blocks of the models the profiles name
LOSS_KINDS = {"lml": "lml", "lml-tau": "lml", "l2-only": "msl", "msl": "msl", "msl-alpha": "msl",
              "msl-ats": "msl-ats", "sdpo": "sdpo"}  # whose training cost each loss has


def beam_share(k: int) -> float:
    """A k-beam user's share of a 10-beam user: half is per user whatever the beams (the prompt, the steps of a
    batched search), half grows with them (a rough model: docs/benchmarks.md compares it with the canonical
    batch's 5- and 10-beam evaluations)."""
    return 0.5 + 0.5 * k / 10


def _key(*parts) -> str:
    return json.dumps(parts, sort_keys=True, default=str)


def model_blocks(model: str, layers: int | None = None) -> int:
    """Transformer blocks of an LLM by name (a local folder: its config.json), cut to ``layers``."""
    n = BLOCKS.get(model)
    if n is None:
        path = Path(model) / "config.json"
        n = read_json(path)["num_hidden_layers"] if path.exists() else BLOCKS["smollm2-135m"]
    return min(n, layers) if layers else n


def _windows(dataset: str, split: str, n: int | None) -> int:
    total = len(load_dataset(dataset).split(split))
    return total if n is None else min(n, total)


def median_best_epoch(folder: Path | None = None) -> float:
    """The median best epoch of the committed classic runs (``results/laptop/07_classic``, trained to their
    plateau): where an early-stopped run is expected to peak."""
    folder = folder or repo_root() / "results" / "laptop" / "07_classic"
    best = [read_json(p)["training"].get("best_epoch") for p in sorted(folder.glob("*.json"))]
    best = [b for b in best if b is not None]
    return statistics.median(best) if best else 10.0


def expected_epochs(cap: int, patience: int | None, best: float | None = None) -> float:
    """Epochs an early-stopped run is expected to run: its best epoch (:func:`median_best_epoch`) + ``patience``,
    at most ``cap``; ``cap`` without early stopping."""
    if patience is None:
        return cap
    return min(cap, (median_best_epoch() if best is None else best) + patience)


# ============================================================================ the families' work


def _llm(profile: str, loss: str, dataset: str, device: str | None, overrides: dict) -> dict:
    """The complete configuration of an LLM run as :func:`.profile_runs.llm_run` trains it (S-DPO's reference
    named by its own configuration)."""
    if loss == "sdpo":
        ref, overrides = sdpo_overrides(profile, overrides)
        overrides.setdefault("sdpo_ref", _key("llm", _llm(profile, "lml", dataset, device, ref)))
    return TrainConfig.from_dict(llm_config(profile, loss, dataset, device, **overrides)).to_dict()


def llm_train(profile: str, loss: str, dataset: str, device: str | None, **overrides) -> list[Work]:
    """Training one LLM run (S-DPO: its LML reference first), its frozen pass and its validation."""
    out = []
    if loss == "sdpo":
        out += llm_train(profile, "lml", dataset, device, **sdpo_overrides(profile, overrides)[0])
    cfg = _llm(profile, loss, dataset, device, overrides)
    key = _key("llm", cfg)
    blocks = model_blocks(cfg["model"], cfg.get("layers"))
    trained = min(cfg.get("lora_layers") or blocks, blocks)
    per_step = cfg["batch_size"] * cfg.get("grad_accum", 1)
    windows = _windows(cfg["dataset"], "train", cfg.get("n_train"))
    if cfg.get("max_steps"):
        windows = min(windows, cfg["max_steps"] * per_step)
    epochs = cfg["epochs"]
    out.append(Work(f"llm_train:{LOSS_KINDS[loss]}", windows * epochs * trained, key,
                    f"{loss} on {cfg['dataset']}: {windows} windows x {epochs} epoch(s), {trained} blocks"))
    if cfg.get("log_grad_norms"):
        batches = math.ceil(windows / cfg["batch_size"]) * epochs
        logged = math.ceil(batches / cfg["log_grad_norms"])
        out.append(Work("llm_grad_norms", logged * cfg["batch_size"] * trained, key + "/grad-norms",
                        f"gradient norms on {logged} steps"))
    if trained < blocks:
        rows = windows * (1 + cfg.get("sdpo_negatives", 3) * epochs) if loss == "sdpo" else windows
        out.append(Work("llm_frozen", rows * (blocks - trained),
                        _key("frozen", cfg["model"], cfg["dataset"], cfg.get("n_train"), cfg.get("max_steps"),
                             cfg["seed"], cfg["max_history"], trained, loss == "sdpo"),
                        f"frozen pass: {rows} windows x {blocks - trained} blocks"))
    if cfg.get("validate") and cfg.get("n_valid_users"):
        n = _windows(cfg["dataset"], "valid", cfg["n_valid_users"])
        if cfg.get("valid_by") == "nll_valid":
            out.append(Work("likelihood_user_block", n * epochs * trained, key + "/valid",
                            f"validation likelihood, {n} users"))
        else:
            out.append(Work("beam_user", n * epochs * beam_share(cfg["valid_beams"]), key + "/valid",
                            f"validation beam search, {n} users x {cfg['valid_beams']} beams"))
    return out


def llm_eval(profile: str, loss: str, dataset: str, device: str | None, split: str = "test", mode: str = "beam",
             n: int | None | str = "profile", beams: int | None = None, score: str = "full",
             **overrides) -> list[Work]:
    """One evaluation of an LLM run (:func:`.profile_runs.llm_eval` at the profile's sizes, or ``n`` users),
    after its training."""
    p = profile_sizes(profile)
    if n == "profile":
        n = {"full": p["exact_users"], "likelihood": p["likelihood_users"]}.get(
            mode, p["valid_users"] if split == "valid" else p["eval_users"])
    k = beams or (p["valid_beams"] if split == "valid" and mode == "beam" else p["eval_beams"])
    train = llm_train(profile, loss, dataset, device, **overrides)
    cfg = _llm(profile, loss, dataset, device, overrides)
    users = _windows(cfg["dataset"], split, n)
    key = _key("eval", _key("llm", cfg), split, mode, n, k, score)
    what = f"{loss} {split} {mode}, {users} users"
    if mode == "beam":
        work = [Work("beam_user", users * beam_share(k), key, what + f" x {k} beams")]
    elif mode == "likelihood":
        blocks = model_blocks(cfg["model"], cfg.get("layers"))
        trained = min(cfg.get("lora_layers") or blocks, blocks)
        work = [Work("likelihood_user_block", users * trained, key, what)]
        if trained < blocks:  # the frozen blocks run once per window of the split, for every run
            work.append(Work("llm_frozen", users * (blocks - trained),
                             _key("frozen-eval", cfg["model"], cfg["dataset"], split, n, cfg["max_history"], trained),
                             f"frozen pass over {users} {split} windows"))
    else:
        work = [Work("exact_user", users, key, what)]
    return train + work


def llm_evaluated(profile: str, loss: str, dataset: str, device: str | None, splits=("valid", "test"),
                  **overrides) -> list[Work]:
    """:func:`.llm_losses.evaluated`: a run with beam search and the likelihood on each split."""
    out = llm_train(profile, loss, dataset, device, **overrides)
    for s in splits:
        out += llm_eval(profile, loss, dataset, device, s, "beam", **overrides)
        out += llm_eval(profile, loss, dataset, device, s, "likelihood", **overrides)
    return out


def seqrec_run(profile: str, dataset: str, n_eval: int | None = None, **overrides) -> list[Work]:
    """Training one classic run to its expected epochs, and its full ranking of every test window."""
    from ..seqrec import complete

    cfg = complete(seqrec_config(profile, dataset, **overrides))
    ds = load_dataset(cfg["dataset"])
    windows = min(len(ds.train), cfg.get("max_train_windows") or len(ds.train))
    epochs = expected_epochs(cfg["epochs"], cfg.get("patience"))
    scored = {"ce": len(ds.items), "bce": 1, "bpr": 1}.get(cfg["loss"], cfg.get("negatives", 500))
    key = _key("seqrec", cfg)
    what = f"{cfg['model']} + {cfg['loss']} on {cfg['dataset']}: {windows} windows x {epochs:g} epochs"
    kind = "ce" if cfg["loss"] == "ce" else "sampled"
    return [Work("seqrec_window", windows * epochs, key, what),
            Work(f"seqrec_scored:{kind}", windows * epochs * scored, key + "/scored",
                 f"{scored} items scored per window")]


def lite_run(profile: str, dataset: str, **overrides) -> list[Work]:
    """Training one Lite-LLM4Rec run to its expected epochs, the item vectors it needs (once per encoder) and
    its full ranking of every test window."""
    cfg = lite_config(profile, dataset, **overrides)
    ds = load_dataset(cfg["dataset"])
    windows = min(len(ds.train), cfg.get("max_train_windows") or len(ds.train))
    epochs = expected_epochs(cfg["epochs"], cfg.get("patience"))
    out = []
    if cfg["encoder"] != "none":
        out.append(Work("item_vector", len(ds.items), _key("item-vectors", cfg["encoder"], cfg["dataset"]),
                        f"{len(ds.items)} item titles encoded by {cfg['encoder']}"))
    out.append(Work("lite_window_block", windows * epochs * (cfg["rec_layers"] + 1), _key("lite", cfg),
                    f"Lite-LLM4Rec on {cfg['dataset']}: {windows} windows x {epochs:g} epochs, "
                    f"{cfg['rec_layers']} blocks + head"))
    out.append(Work("lite_user", len(ds.test), _key("lite-eval", cfg), f"{len(ds.test)} test users ranked"))
    return out


def lite_selection(profile: str, grid: dict | None = None, dataset: str | None = None,
                   device: str | None = None) -> list[Work]:
    """:func:`.lite_selection.select_lite`'s runs: one Lite-LLM4Rec run per grid point (the item vectors once)."""
    from .lite_selection import GRID

    grid = grid or GRID
    over = {"device": device} if device else {}
    work = [w for point in itertools.product(*grid.values())
            for w in lite_run(profile, dataset, **over, **dict(zip(grid, point)))]
    return list({w.key: w for w in work}.values())


# ============================================================================ the chapters


def chapter_01(profile, dataset, device):
    return []


def chapter_02(profile, dataset, device):
    datasets = chapter_datasets(profile, dataset)
    out = []
    for d in datasets:  # Figure 3: the mechanism runs (a side dataset stops at side_steps)
        side = profile_sizes(profile)["side_steps"] if d != datasets[0] else None
        out += llm_train(profile, "lml", d, device, **({"max_steps": side} if side else {}))
    return out + llm_train(profile, "l2-only", datasets[0], device)  # Figure 4


def _valid_logits(profile, d, device, windows=64):
    """A probe's forward over ``windows`` training windows of the mechanism run (its top blocks: the rest
    is cached)."""
    cfg = llm_config(profile, "lml", d, device)
    blocks = model_blocks(cfg["model"], cfg.get("layers"))
    trained = min(cfg.get("lora_layers") or blocks, blocks)
    return [Work("llm_frozen", windows * trained, _key("probe", d, windows), f"forward of {windows} windows")]


def chapter_03(profile, dataset, device):
    d = chapter_datasets(profile, dataset, ("toy",))[0]
    return llm_train(profile, "lml", d, device) + _valid_logits(profile, d, device)


def chapter_04(profile, dataset, device):
    datasets = chapter_datasets(profile, dataset)
    out = []
    for d in datasets:
        side = profile_sizes(profile)["side_steps"] if d != datasets[0] else None
        out += llm_train(profile, "lml", d, device, **({"max_steps": side} if side else {}))
        out += _valid_logits(profile, d, device)
    return out


def chapter_05(profile, dataset, device):
    cpu = profile in ("quick", "laptop")
    datasets = chapter_datasets(profile, dataset, ("toy",) if cpu else ("toy", "books"))
    taus = [1.0, 2.0] if profile == "smoke" else [1.0, 2.0, 4.5] if cpu else [1.0, 1.5, 2.0, 3.0, 4.5, 5.0]
    out = []
    for d in datasets:  # the sweep
        for tau in taus:
            out += llm_evaluated(profile, "msl", d, device, tau=tau)
    d, lr = datasets[0], llm_config(profile, "lml", datasets[0], device)["lr"]
    out += llm_evaluated(profile, "lml", d, device)
    # the candidates chosen on validation; the winner's test evaluation counted (an upper bound)
    out += llm_evaluated(profile, "lml-tau", d, device, tau=2.0)
    out += llm_evaluated(profile, "msl", d, device, tau=1.0, lr=lr * 3)
    out += llm_evaluated(profile, "msl-alpha", d, device, ("test",))
    out += llm_evaluated(profile, "msl-ats", d, device, ("test",))
    return out


def chapter_06(profile, dataset, device):
    d = chapter_datasets(profile, dataset, ("toy",))[0]
    p = profile_sizes(profile)
    out = []
    for loss in ("lml", "sdpo", "msl-ats"):
        out += llm_eval(profile, loss, d, device, "test", "beam")
        out += llm_eval(profile, loss, d, device, "test", "likelihood")
    out += llm_eval(profile, "msl-ats", d, device, "test", "beam", n=p["exact_users"])  # beam against exact
    out += llm_eval(profile, "msl-ats", d, device, "test", "full")
    for loss in ("lml", "msl-ats"):  # beams scored by P_valid
        out += llm_eval(profile, loss, d, device, "test", "beam", score="valid")
    return out


def chapter_07(profile, dataset, device):
    d = chapter_datasets(profile, dataset, ("toy",))[0]
    over = {"device": device} if device else {}
    out = []
    for model in ("sasrec", "gru4rec", "caser"):
        for loss in ("ce", "bce", "bpr"):
            out += seqrec_run(profile, d, model=model, loss=loss, **over)
    grid = sce_grid_values(profile)
    for K in grid["K"]:
        for a in grid["alpha"]:
            out += seqrec_run(profile, d, model="sasrec", loss="sce", negatives=int(K), alpha=float(a), **over)
    out += _plateau(profile, d, over)
    for loss in ("lml", "msl-ats"):  # the LLM rows beside them
        out += llm_eval(profile, loss, d, device, "test", "beam")
    return out


def _plateau(profile, d, over):
    out = []
    for name in ("SASRec + CE", "SASRec + SCE (K 500, α 100)"):
        out += seqrec_run(profile, d, **{**PLATEAU, **PROTOCOL_VARIANTS[name], **over})
    return out


def chapter_08(profile, dataset, device):
    d = chapter_datasets(profile, dataset, ("toy",))[0]
    over = {"device": device} if device else {}
    out = []
    for variant in LITE_VARIANTS.values():
        out += lite_run(profile, d, **{**variant, **over})
    out += _plateau(profile, d, over)
    p = profile_sizes(profile)
    for loss in ("lml", "msl-ats"):
        out += llm_eval(profile, loss, d, device, "test", "beam")
    out += llm_eval(profile, "lml", d, device, "test", "beam", n=16)  # the inference cost: 16 beam users,
    out += llm_eval(profile, "lml", d, device, "test", "full", n=2)  # 2 exact
    n = _windows(d, "test", p["eval_users"])
    return out + [Work("lite_user", n, _key("lite-eval-users", d), "the Lite rows on the LLM's users")]


def chapter_09(profile, dataset, device):
    """Toy and Books from their committed reference (nothing trains); any other dataset (smoke: the synthetic
    catalogue) trains every claim's arms at the profile with seed 0."""
    if profile != "smoke" and dataset in (None, "toy", "books"):
        return []
    d = chapter_datasets(profile, dataset, ("toy",))[0]
    over = {"device": device} if device else {}
    out = []
    for name in ("SASRec + CE", "SASRec + BCE", "SASRec + BPR", "SASRec + SCE (K 500, α 100)"):
        out += seqrec_run(profile, d, **{**PLATEAU, **PROTOCOL_VARIANTS[name], **over})
    out += lite_run(profile, d, **over)
    for loss in ("lml", "msl-ats", "msl-alpha", "sdpo"):
        out += llm_eval(profile, loss, d, device, "test", "beam") + llm_eval(profile, loss, d, device, "test", "likelihood")
    return out


CHAPTERS = {"01_data_and_trie": chapter_01, "02_lml_decomposition": chapter_02, "03_gradient_weights": chapter_03,
            "04_gaussian_logits_ats": chapter_04, "05_tau_sweep_ablation": chapter_05,
            "06_training_comparison": chapter_06, "07_classic_sce": chapter_07, "08_lite_llm4rec": chapter_08,
            "09_transfer": chapter_09}


def chapter_workload(chapter: str, profile: str, dataset: str | None = None, device: str | None = None) -> list[Work]:
    """The work of one chapter (its notebook's name, with or without ``.ipynb``) run alone, its fixed cost
    included."""
    stem = Path(chapter).stem
    if stem not in CHAPTERS:
        raise ValueError(f"no workload for chapter {chapter!r}; known: {', '.join(CHAPTERS)}")
    return [Work("chapter", 1, _key("chapter", stem), "kernel, imports, data, model loading"),
            *CHAPTERS[stem](profile, dataset, device)]


def batch_workload(chapters: list[str], profile: str, dataset: str | None = None,
                   device: str | None = None) -> dict[str, list[Work]]:
    """Each chapter's work in batch order, without what an earlier chapter (or the same one) already did: the
    run cache gives it for free."""
    seen, out = set(), {}
    for ch in chapters:
        mine = []
        for w in chapter_workload(ch, profile, dataset, device):
            if w.key not in seen:
                seen.add(w.key)
                mine.append(w)
        out[ch] = mine
    return out


# ============================================================================ the cost table


def load_costs(path: str | Path | None = None) -> dict:
    """The cost table ``bench/costs.json`` (written by ``python -m llmrec bench costs``): {device kind: {"source",
    "setting", "units": {unit: seconds}, ...}}."""
    path = Path(path) if path else repo_root() / "bench" / "costs.json"
    return read_json(path)["costs"]


def device_kind(device: str | None) -> str:
    """The cost table's entry for a torch device: ``cuda`` for any GPU index, else ``cpu``."""
    return "cuda" if str(device or "cpu").startswith("cuda") else "cpu"


HISTORY_SCALED = ("llm_train:", "llm_grad_norms", "llm_frozen", "likelihood_user_block")  # per-window units


def estimate(work: list[Work], costs: dict, device: str | None = None, max_history: int | None = None) -> dict:
    """Seconds of ``work`` on ``device`` by the cost table's entry for its kind: {"seconds", "by_unit": {unit:
    seconds}, "fallback": units the entry lacks, priced by the CPU entry, "missing": units no entry prices (0 s)}.

    A window's tokens grow with its history: the per-window LLM units (:data:`HISTORY_SCALED`) are scaled by
    ``max_history`` / the history the entry was measured at.
    """
    kind = device_kind(device)
    tables = {k: costs.get(k, {}) for k in (kind, "cpu")}
    by_unit, fallback, missing = {}, set(), set()
    for w in work:
        entry = next((t for t in tables.values() if w.unit in t.get("units", {})), None)
        if entry is None:
            missing.add(w.unit)
            continue
        if entry is not tables[kind]:
            fallback.add(w.unit)
        price = entry["units"][w.unit]
        measured_at = entry.get("setting", {}).get("max_history")
        if max_history and measured_at and w.unit.startswith(HISTORY_SCALED):
            price *= max_history / measured_at
        by_unit[w.unit] = by_unit.get(w.unit, 0.0) + w.count * price
    return {"seconds": sum(by_unit.values()), "by_unit": by_unit, "fallback": sorted(fallback),
            "missing": sorted(missing), "device_kind": kind}


def validation_choice(profile: str, costs: dict | None = None, device: str | None = None,
                      dataset: str | None = None) -> dict:
    """How an LLM run of ``profile`` should choose its epoch: by beam search unless validating that way costs
    more than training, then by the likelihood of the same validation users (``nll_valid``, far cheaper).

    Priced by the cost table (default: the committed one) on ``device`` (default: the profile's) for one LML
    run: {"train", "beam", "likelihood": seconds of the run's training and of each way's validation over its
    epochs, "valid_by": the choice}. The profiles' ``valid_by`` is this choice (tests/test_estimate.py)."""
    costs = costs if costs is not None else load_costs()
    p = profile_sizes(profile)
    device = device or p.get("device", "cpu")
    d = dataset or p["dataset"]
    history = p["max_history"]
    seconds = {}
    for way, name, unit in (("ndcg@5", "beam", "beam_user"), ("nll_valid", "likelihood", "likelihood_user_block")):
        by = estimate(llm_train(profile, "lml", d, device, valid_by=way, log_grad_norms=0), costs, device,
                      history)["by_unit"]
        seconds["train"] = sum(v for u, v in by.items() if u.startswith(("llm_train:", "llm_frozen")))
        seconds[name] = by.get(unit, 0.0)
    return {**seconds, "valid_by": "nll_valid" if seconds["beam"] > seconds["train"] else "ndcg@5"}


def duration(seconds: float) -> str:
    """``45 s``, ``12 min``, ``3.2 h``: how an estimate is printed."""
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 90 * 60:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"
