"""Runs of any family: train (or find in the run cache), load as a recommender, evaluate, compare.

The family of a run is ``config["family"]``, an entry of the family registry
(:mod:`llmrec.core.families`: ``llm``, ``seqrec``, ``lite`` and any registered since); each family trains with
its own ``train`` (the LLM's loop, or :func:`llmrec.itemseq.loop.fit`) into the one run-directory layout of
:mod:`llmrec.core.rundir`, loads as a :class:`~llmrec.core.recommender.Recommender`
and is evaluated by the one :func:`~llmrec.core.recommender.evaluate`, whose
per-user ranks are cached in the run's ``metrics.json``.
"""

from __future__ import annotations

from pathlib import Path

from .core import families, rundir
from .core.io import read_json
from .core.metrics import compare_entries
from .core.recommender import Recommender, evaluate as evaluate_recommender
from .core.results import key_options

WATCHERS: list = []  # called with each run trained, found or evaluated (experiments.published.standalone's export)


def config_of(run_dir: str | Path) -> dict:
    path = Path(run_dir) / "config.json"
    if not path.exists():
        raise FileNotFoundError(f"{run_dir}: not a run directory (no config.json)")
    return read_json(path)


def family_of(config: dict) -> str:
    return families.get(config.get("family", "llm")).name


def train(config: dict, run_dir: str | Path | None = None, progress: bool = True, loss_fn=None) -> Path:
    """Train a configuration of its family (or find it in the run cache) and return its run directory.

    ``loss_fn``: a loss function of your own in place of ``config["loss"]`` (the LLM: ``loss_fn(logits, valid,
    targets)``; SASRec & co and Lite-LLM4Rec: ``loss_fn(scores, targets)``; :mod:`llmrec.core.custom_loss`);
    the run's key holds its source, so an edited function is a new run.
    """
    custom = {} if loss_fn is None else {"loss_fn": loss_fn}  # a family registered without the option works too
    run = families.get(family_of(config)).load("train")(config, run_dir=run_dir, progress=progress, **custom)
    _touched(run)
    return run


def _touched(run: Path) -> None:
    """Tell each of :data:`WATCHERS` of a run trained, found or evaluated here (a committed one: nothing new)."""
    if not rundir.is_committed(run):
        for watch in WATCHERS:
            watch(run)


def materialise(run_dir: str | Path, progress: bool = True) -> Path:
    """A run with its weights: ``run_dir`` itself, or for a committed run (:func:`llmrec.core.rundir.is_committed`:
    its records hold no weights) the same configuration trained in the run cache (found there when it was
    trained before), under the same name. Results mode (``use_committed``) trains nothing: an error."""
    if not rundir.is_committed(run_dir):
        return Path(run_dir)
    if rundir.read_only():
        raise FileNotFoundError(f"{run_dir}: a committed run holds no weights, and nothing is trained in results "
                                "mode; run without `results` to train it")
    print(f"{Path(run_dir).name}: its committed record holds no weights; training it in the run cache")
    return train(config_of(run_dir), run_dir=rundir.writable(run_dir), progress=progress)


def base_weights(run_dir: str | Path) -> dict | None:
    """The fingerprints of the pretrained weights installed now under the names a run's configuration gives
    (None for a family that starts from none: seqrec)."""
    return config_weights(config_of(run_dir))


def config_weights(config: dict) -> dict | None:
    """The fingerprints of the pretrained weights a configuration starts from, those installed now (None for a
    family that starts from none)."""
    family = families.get(family_of(config))
    return None if family.weights is None else family.load("weights")(config)


def adopt(run_dir: str | Path) -> dict:
    """Record that a run made before identities held the pretrained weights was trained on those installed now
    (the caller vouches for it; ``llmrec adopt``), so that it is found, continued, reused and evaluated again;
    returns the fingerprints recorded."""
    weights = base_weights(run_dir)
    if weights is None:
        raise ValueError(f"{run_dir}: a {family_of(config_of(run_dir))} run starts from no pretrained weights; "
                         "there is nothing to adopt")
    rundir.adopt(run_dir, weights)
    return weights


def load(run_dir: str | Path, embed: str = "llm") -> Recommender:
    """The trained recommender of a finished run (its best validation epoch), refused when the pretrained
    weights it was trained on are not those installed now under the same names (:func:`rundir.check_identity`).
    A committed run is trained in the run cache first (:func:`materialise`)."""
    run_dir = materialise(run_dir)
    if not rundir.is_done(run_dir):
        raise FileNotFoundError(f"{run_dir}: no finished training run here (missing done.json)")
    weights = base_weights(run_dir)
    if weights is not None:
        ipath = Path(run_dir) / "identity.json"
        recorded = read_json(ipath) if ipath.exists() else None
        rundir.check_identity(run_dir, recorded, {**(recorded or {}), rundir.WEIGHTS: weights})
    family = families.get(family_of(config_of(run_dir)))
    options = {k: v for k, v in {"embed": embed}.items() if k in family.load_options}
    return family.load("recommender").from_run(run_dir, **options)


def metrics_key(split: str, mode: str, n_users: int | None, k: int, embed: str = "llm", beam_score: str = "full") -> str:
    """``split/mode/n<users>`` (+ ``/k<list length>`` for list modes, + ``/<encoder>`` for grounding, +
    ``/score-valid`` for beams scored by log P_valid)."""
    key = f"{split}/{mode}/n{n_users if n_users else 'all'}"
    if mode not in ("full", "likelihood"):
        key += f"/k{k}"
    if mode == "beam" and beam_score != "full":
        key += f"/score-{beam_score}"
    return key + (f"/{embed}" if mode == "ground" else "")


def key_args(key: str) -> dict:
    """The :func:`evaluate` arguments of a :func:`metrics_key` (its inverse): split, mode, n_users (None: every
    window), k (None for the modes without a list), embed and beam_score."""
    split, mode, users, *rest = key.split("/")
    k = next((int(p[1:]) for p in rest if p.startswith("k") and p[1:].isdigit()), None)
    out = {"split": split, "mode": mode, "n_users": None if users == "nall" else int(users[1:]), "k": k,
           "embed": "llm", "beam_score": "full", **key_options(key)}
    if metrics_key(**{**out, "k": out["k"] or 10}) != key:
        raise ValueError(f"{key!r} is not an evaluation key (split/mode/n<users>[/k<k>][/score-valid][/<encoder>])")
    return out


def evaluate(run_dir: str | Path, split: str = "test", mode: str | None = None, n_users: int | None = None,
             k: int = 10, force: bool = False, progress: bool = True, embed: str = "llm",
             beam_score: str = "full") -> dict:
    """Evaluate a finished run on ``n_users`` seeded windows of ``split`` (all when None); cached in
    ``metrics.json`` under :func:`metrics_key`. ``mode`` defaults to the family's (LLM: beam, seqrec: full);
    ``beam_score`` scores an LLM's beams by the full-vocabulary log-softmax or by log P_valid (``"valid"``).
    A committed run's evaluation is read from its record; one it lacks needs the weights: the run is trained in
    the run cache first (:func:`materialise`), except in results mode (an error)."""
    mode = mode or families.get(family_of(config_of(run_dir))).default_mode
    if beam_score not in ("full", "valid") or (beam_score != "full" and mode != "beam"):
        raise ValueError(f"beam_score {beam_score!r}: 'full' or 'valid', and 'valid' only for LLM beam search "
                         f"(mode {mode!r})")
    key = metrics_key(split, mode, n_users, k, embed, beam_score)
    cached = rundir.load_metrics(run_dir).get(key)
    if cached and not force:
        return cached
    if rundir.read_only():
        raise FileNotFoundError(f"{run_dir}: no evaluation {key!r} among the committed results (it has "
                                f"{sorted(rundir.load_metrics(run_dir))}; nothing is evaluated in results mode)")
    if rundir.is_committed(run_dir):
        return evaluate(materialise(run_dir, progress), split, mode, n_users, k, force, progress, embed, beam_score)
    rec = load(run_dir, embed=embed)
    if beam_score != "full":
        rec.beam_score = beam_score
    out = evaluate_recommender(rec, rec.ds.split(split), mode, n_users, k, progress=progress)
    out["split"] = split
    rundir.save_metrics(run_dir, key, out)
    _touched(Path(run_dir))
    return out


def compare(run_a: str | Path, run_b: str | Path, key: str | None = None, metrics=None) -> list[dict]:
    """Paired bootstrap of (b - a) on the users both runs were evaluated on under ``key`` (ranking metrics, or
    for a likelihood evaluation the per-user negative log-likelihoods: lower is better).

    Without ``key``: the one evaluation key the two runs share (an error lists
    the keys when there are none or several).
    """
    ma, mb = rundir.load_metrics(run_a), rundir.load_metrics(run_b)
    shared = sorted(set(ma) & set(mb))
    if key is None:
        if len(shared) != 1:
            raise ValueError(f"give --key: the runs share {len(shared)} evaluations {shared} "
                             f"({run_a}: {sorted(ma)}; {run_b}: {sorted(mb)})")
        key = shared[0]
    if key not in shared:
        raise ValueError(f"evaluation {key!r} is not in both runs; {run_a} has {sorted(ma)}, {run_b} has {sorted(mb)}")
    a, b = ma[key], mb[key]
    if a["user_ids"] != b["user_ids"]:
        raise ValueError(f"the two runs were evaluated on different users under {key!r}")
    metrics = metrics or (("nll_valid", "nll_full") if "ranks" not in a else ("ndcg@5", "ndcg@10", "hr@5", "hr@10"))
    return [{"key": key, **compare_entries(a, b, m)} for m in metrics]
