"""The configuration of a classic sequential model's run (its hash names the run)."""

from __future__ import annotations

import json

LOSSES = ("ce", "bce", "bpr", "sampled-softmax", "sce")
MODELS = ("sasrec", "gru4rec", "caser")

# The SCE authors' SASRec setting (architecture, optimiser, alpha, K). Epochs and
# patience are ours: the authors train to convergence with early stopping.
DEFAULTS: dict = {
    "family": "seqrec",
    "profile": "custom",
    "dataset": "toy",
    "model": "sasrec",
    "loss": "ce",
    "alpha": 100.0,
    "negatives": 500,
    "epochs": 200,
    "batch_size": 512,
    "lr": 5e-4,
    "weight_decay": 0.0,
    "hidden": 64,
    "blocks": 2,  # transformer blocks (SASRec) or GRU layers (GRU4Rec)
    "heads": 1,
    "dropout": 0.6,
    "maxlen": 50,
    "patience": 10,  # epochs without a better validation NDCG@10; None = never stop early
    "seed": 0,
    "device": "cpu",
    "max_train_windows": None,  # None = all training windows
    "max_valid_windows": None,  # validation windows used for early stopping (None = all)
}

# Per-profile overrides live in llmrec.core.profiles.PROFILES (docs/design.md "Profiles").

# Measured departures from the reference SASRec (pmixer's SASRec.pytorch, which follows Kang & McAuley): each
# option's default is what this project's SASRec does. A config names an option only when it differs from the
# default, so the runs made before the options existed keep their keys.
OPTIONS: dict = {
    "norm": ("pre", "post"),  # pre: the reference's normalised-query blocks; post: LayerNorm after each residual
    "ffn_act": ("relu", "gelu"),
    "ffn_mult": (1, 4),  # FFN width = ffn_mult x hidden (reference: 1; RecBole: 4)
    "emb_scale": (True, False),  # item embeddings times sqrt(hidden) (reference) or not
    "init": ("xavier", "normal", "torch"),  # Xavier-normal (reference), N(0, 0.02) (RecBole), PyTorch defaults
    "adam_beta2": (0.98, 0.999),  # the reference's Adam beta2 or PyTorch's default
    "negatives_per": ("sequence", "position"),  # sampled losses: K negatives shared by a sequence, or per position
}


def complete(config: dict) -> dict:
    """``config`` over :data:`DEFAULTS`, checked, in plain JSON types (as stored in config.json)."""
    unknown = set(config) - set(DEFAULTS) - set(OPTIONS)
    if unknown:
        raise ValueError(f"unknown seqrec config key(s) {sorted(unknown)}; known: {sorted(DEFAULTS)} and the "
                         f"options {sorted(OPTIONS)}")
    for key, allowed in OPTIONS.items():
        if key in config and config[key] not in allowed:
            raise ValueError(f"{key} must be one of {allowed}, got {config[key]!r}")
    cfg = {**DEFAULTS, **{k: v for k, v in config.items() if not (k in OPTIONS and v == OPTIONS[k][0])}}
    if cfg["model"] not in MODELS:
        raise ValueError(f"model must be one of {MODELS}, got {cfg['model']!r}")
    if cfg["loss"] not in LOSSES:
        raise ValueError(f"loss must be one of {LOSSES}, got {cfg['loss']!r}")
    for name in ("epochs", "batch_size", "hidden", "blocks", "heads", "maxlen", "max_train_windows",
                 "max_valid_windows", "patience"):
        value = cfg[name]
        if value is not None and (not isinstance(value, int) or value < 1):
            raise ValueError(f"{name} must be a positive integer, got {value!r}")
    if cfg["loss"] in ("sampled-softmax", "sce") and int(cfg["negatives"]) < 1:
        raise ValueError("sampled losses need negatives >= 1")
    if cfg["loss"] == "sce" and float(cfg["alpha"]) <= 0:
        raise ValueError("alpha must be positive")
    return json.loads(json.dumps(cfg))  # plain JSON types, as stored in config.json
