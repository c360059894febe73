"""What a profile runs: each family's configuration, the canonical LLM runs a chapter gets, and the sizes they
are evaluated at.

Every LLM run this process trains or finds is remembered in :data:`LLM_RUNS`, which
:func:`llmrec.experiments.published.export_llm_results` publishes.
"""

from __future__ import annotations

from pathlib import Path

from .. import runs
from ..core.profiles import dataset_for
from ..core.profiles import profile as profile_sizes
from ..core.profiles import train_config
from ..lite import complete as complete_lite


def llm_config(profile: str, loss: str, dataset: str | None = None, device: str | None = None, **overrides) -> dict:
    """The profile's LLM configuration for ``loss`` with ``overrides``, on the chapter's dataset
    (:func:`llmrec.core.profiles.dataset_for`)."""
    return train_config(profile, "llm", loss=loss, dataset=dataset_for(profile, dataset), device=device, **overrides)


def seqrec_config(profile: str, dataset: str | None = None, **overrides) -> dict:
    """The profile's classic (SASRec, GRU4Rec, Caser) configuration with ``overrides``, on the chapter's dataset."""
    return train_config(profile, "seqrec", dataset=dataset_for(profile, dataset), **overrides)


def lite_config(profile: str, dataset: str | None = None, **overrides) -> dict:
    """The profile's Lite-LLM4Rec configuration with ``overrides``, completed with the family's defaults."""
    return complete_lite(train_config(profile, "lite", dataset=dataset_for(profile, dataset), **overrides))


LLM_RUNS: dict[str, Path] = {}  # every LLM run this process trained or found (what export_llm_results writes)


SDPO_REF_KEYS = ("seed", "lr", "n_train", "layers", "lora_layers")  # what S-DPO's LML reference shares with it


def sdpo_overrides(profile: str, overrides: dict) -> tuple[dict, dict]:
    """An S-DPO run's (LML reference's overrides, its own overrides): the reference shares the options of
    :data:`SDPO_REF_KEYS` given to the S-DPO run; S-DPO trains on the profile's ``sdpo_n_train`` windows unless
    ``n_train`` is given (None: the profile's)."""
    ref = {k: v for k, v in overrides.items() if k in SDPO_REF_KEYS}
    own = dict(overrides)
    if "n_train" not in own:
        own["n_train"] = profile_sizes(profile)["sdpo_n_train"]
    return ref, own


def llm_run(profile: str, loss: str, dataset: str | None = None, device: str | None = None, progress: bool = True,
            **overrides) -> Path:
    """Train (or find in the run cache) one LLM run of the profile; S-DPO starts from the profile's LML run."""
    if loss == "sdpo":
        ref, overrides = sdpo_overrides(profile, overrides)
        if "sdpo_ref" not in overrides:
            # the LML run's name in the run cache, not its path: the key of the S-DPO run stays the same in any clone
            overrides["sdpo_ref"] = llm_run(profile, "lml", dataset, device, progress, **ref).name
    run = runs.train(llm_config(profile, loss, dataset, device, **overrides), progress=progress)
    LLM_RUNS[run.name] = run
    return run


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
