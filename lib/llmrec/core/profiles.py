"""The four profiles (docs/design.md): one table that sizes every family, notebook, CLI run and batch.

* ``smoke``: synthetic catalogue, tiny models; every path runs in seconds (tests, CI).
* ``quick``: real Toy/Books on 2 CPU cores. LLM: the whole SmolLM2-135M with LoRA
  on its last 4 blocks only (the 26 frozen blocks below run once per training
  window and are cached, :class:`llmrec.llm.frozen.FrozenBlocks`), 256 windows,
  one epoch (32 steps), 16 test users (10 beams) / 8 validation users (5
  beams), and the teacher-forced likelihood of the target title on 250 users of
  each split (what resolves differences at this size, and what validation
  chooses by; beam search on so few users only shows the path: no quick run hits
  a target); LML runs log the gradient norms of L1 and L2 every 4 steps (Figure 3); the Books LML run that only
  Figures 3 and 8 use stops at 32 steps (``side_steps``); a checkpoint every 16 steps lets
  an interrupted run resume inside its one epoch (not part of the run's key: resuming is exact).
  Classic models: the SCE authors' SASRec with at most 12 epochs. Lite-LLM4Rec: 2 SmolLM2 blocks, at
  most 5 epochs.
* ``laptop``: one overnight run on 2 CPU cores: LLM runs on 2,000 windows for 2 epochs (the better epoch
  kept by the likelihood of 500 validation users), beam search on 500 test users, the likelihood on 1,000; classic models to their plateau (patience 5, at most 50 epochs);
  Lite-LLM4Rec with 4 blocks, at most 15 epochs.
* ``paper``: the papers' protocols (LLM: 10,000 windows, 10 epochs, batch 128: 8 batches of 16, in as
  few forwards as the GPU's memory holds, the best epoch by the likelihood of 500 validation users, all test
  users, 10 beams) on a GPU; its Lite-LLM4Rec settings (30 blocks, lr 1e-3, at most 50 epochs) are the paper's,
  not yet chosen on validation (``python -m llmrec select-lite --profile paper --device cuda`` on a GPU
  chooses them, :mod:`llmrec.experiments.lite_selection`). Its old name ``full`` (which also names the ranking of every
  item) is still accepted, with a warning (:func:`canonical`).

Each profile holds one sub-table per family (``llm``, ``seqrec``: overrides
of the family's defaults), the evaluation sizes (``eval``) and chapter 07's SCE
grid (``sce_grid``).
"""

from __future__ import annotations

import warnings

from . import families

ALIASES = {"full": "paper"}  # old profile names, still accepted with a warning

PROFILES = {
    "smoke": {
        "dataset": "synthetic",
        "llm": dict(model="tiny", layers=None, lora_layers=None, n_train=64, epochs=1, batch_size=8, max_steps=4,
                    n_valid_users=0, valid_beams=4, lr=1e-3, max_history=5),
        "seqrec": dict(hidden=32, blocks=1, dropout=0.2, maxlen=10, batch_size=64, lr=5e-3, epochs=12, patience=4,
                       negatives=50),
        "lite": dict(encoder="tiny", rec_model="tiny", rec_layers=2, epochs=3, patience=None, batch_size=32,
                     maxlen=5, negatives=50),
        "eval": dict(eval_users=8, valid_users=8, eval_beams=4, exact_users=2, likelihood_users=8, sdpo_n_train=None,
                     grad_norm_every=1, side_steps=None),
        "sce_grid": {"K": (10, 50), "alpha": (1.0, 10.0)},
    },
    "quick": {
        "dataset": "toy",
        "llm": dict(model="smollm2-135m", layers=None, lora_layers=4, n_train=256, epochs=1, batch_size=8,
                    max_steps=None, n_valid_users=0, valid_beams=5, lr=1e-3, max_history=5, checkpoint_every=16),
        # the authors' architecture (2 blocks, 1 head, hidden 64) with maxlen 10 (histories have at most 10
        # items, so nothing is cut), a larger learning rate, less dropout and at most 12 epochs (patience 3);
        # Books is subsampled to 10,000 of its 30,677 training windows (Toy has 5,000)
        "seqrec": dict(maxlen=10, lr=3e-3, dropout=0.2, epochs=12, patience=3, max_train_windows=10000),
        # Lite-LLM4Rec: the first 2 SmolLM2 blocks over the item vectors (4 gave the same validation NDCG@10
        # at twice the cost), at most 5 epochs (validation peaked at epoch 4 in both), patience 2
        "lite": dict(rec_layers=2, epochs=5, patience=2),
        "eval": dict(eval_users=16, valid_users=8, eval_beams=10, exact_users=2, likelihood_users=250, sdpo_n_train=128,
                     grad_norm_every=4, side_steps=32),
        "sce_grid": {"K": (10, 100, 500), "alpha": (1.0, 10.0, 100.0)},
    },
    "paper": {
        "dataset": "toy",
        # batch 128 = 8 accumulated batches of 16; on a GPU as many of them share a forward as its memory holds.
        # The best epoch by the likelihood of 500 validation users: beam search on them every epoch would cost
        # more than the training itself (llmrec.experiments.workload.validation_choice on bench/costs.json)
        "llm": dict(model="smollm2-135m", layers=None, lora_layers=None, n_train=10_000, epochs=10, batch_size=16,
                    grad_accum=8, micro_batch="auto", max_steps=None, n_valid_users=500, valid_beams=10, lr=1e-4,
                    max_history=10, dtype="bfloat16", device="cuda", valid_by="nll_valid"),
        "seqrec": {},  # the SCE authors' setting (SASRec: the study's chosen default, seqrec.config.MODEL_DEFAULTS)
        # the whole SmolLM2; not yet chosen on validation: on a GPU, `python -m llmrec
        # select-lite --profile paper --device cuda` (llmrec.experiments.lite_selection) chooses blocks and lr
        "lite": dict(rec_layers=30, epochs=50, patience=5, batch_size=256, device="cuda"),
        "eval": dict(eval_users=None, valid_users=None, eval_beams=10, exact_users=20, likelihood_users=None,
                     sdpo_n_train=None,
                     grad_norm_every=10, side_steps=None),
        "sce_grid": {"K": (10, 100, 500), "alpha": (1.0, 10.0, 100.0)},
    },
}

# laptop = quick, larger: one overnight CPU run (issue 14): LLM runs on 2,000 windows for 2 epochs (choices by
# validation likelihood), classic models to a plateau (patience 5, a cap of 50 epochs the best epoch should not
# reach), Lite-LLM4Rec with 4 blocks
_QUICK = PROFILES["quick"]
PROFILES["laptop"] = {
    "dataset": "toy",
    # the best of the 2 epochs by the mean -log P_valid of 500 validation users (about 20 s an epoch)
    "llm": {**_QUICK["llm"], "n_train": 2000, "epochs": 2, "checkpoint_every": 50, "n_valid_users": 500,
            "valid_by": "nll_valid"},
    "seqrec": {**_QUICK["seqrec"], "epochs": 50, "patience": 5},
    "lite": {**_QUICK["lite"], "rec_layers": 4, "epochs": 15, "patience": 3},
    "eval": {**_QUICK["eval"], "eval_users": 500, "valid_users": 100, "exact_users": 8, "likelihood_users": 1000,
             "sdpo_n_train": 500, "grad_norm_every": 10, "side_steps": 64},
    "sce_grid": dict(_QUICK["sce_grid"]),
}


def canonical(name: str) -> str:
    """A profile's name, its old spelling (:data:`ALIASES`) replaced with a warning."""
    if name in ALIASES:
        warnings.warn(f"profile {name!r} is now called {ALIASES[name]!r} (the papers' sizes; 'full' names the "
                      f"ranking of every item); {name!r} still works for now", FutureWarning, stacklevel=3)
        return ALIASES[name]
    return name


def _table(name: str) -> dict:
    name = canonical(name)
    if name not in PROFILES:
        raise ValueError(f"unknown profile {name!r}; choose one of {sorted(PROFILES)}")
    return PROFILES[name]


def profile(name: str) -> dict:
    """The sizes the chapters read: the dataset, the LLM options and the evaluation sizes, in one flat dict."""
    t = _table(name)
    return {"dataset": t["dataset"], **t["llm"], **t["eval"]}


def sce_grid(name: str) -> dict:
    """Chapter 07's grid: K negatives and alpha (alpha = 1 is sampled softmax)."""
    return dict(_table(name)["sce_grid"])


def dataset_for(name: str, dataset: str | None) -> str:
    """The dataset a profile runs on: ``dataset``, else the profile's; ``smoke`` puts the synthetic catalogue in
    place of the shipped ``toy`` and ``books`` (a folder of your own stays itself)."""
    if name == "smoke" and dataset in (None, "toy", "books"):
        return "synthetic"
    return dataset or _table(name)["dataset"]


def train_config(name: str, family: str = "llm", **overrides) -> dict:
    """A run configuration: the profile's options for ``family`` with ``overrides`` (None values are ignored).

    The options the study chose for the model come under the overrides
    (:attr:`llmrec.core.families.Family.model_defaults`: SASRec's); the family's defaults fill what is missing (its
    configuration class, :mod:`llmrec.core.config`); a
    family registered without a sub-table here sizes itself per profile (:attr:`llmrec.core.families.Family.profiles`).
    """
    name = canonical(name)
    t = _table(name)
    spec = families.get(family)
    cfg = {"dataset": t["dataset"], **(t[family] if family in t else spec.profiles.get(name, {}))}
    if family == "llm":
        cfg["validate"] = cfg["n_valid_users"] > 0
        if overrides.get("loss") == "lml":  # every LLM LML run of a profile logs Figure 3's gradient norms
            cfg["log_grad_norms"] = t["eval"]["grad_norm_every"]
    if spec.model_defaults:  # the study's options for this model (SASRec's chosen default), under the overrides
        model = overrides.get("model") or cfg.get("model") or spec.load("config").model
        cfg.update(spec.load("model_defaults").get(model, {}))
    cfg.update({k: v for k, v in overrides.items() if v is not None})
    cfg.update(family=family, profile=name)
    return cfg
