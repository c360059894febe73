"""The configuration of a Lite-LLM4Rec run (its hash names the run), checked like the other families'."""

from __future__ import annotations

import json

ENCODERS = ("smollm2-135m", "minilm", "tiny", "none")  # the item LLM; "none": learned item-id embeddings
REC_MODELS = ("smollm2-135m", "tiny")  # the recommendation LLM
HEADS = ("mlp", "dot")
TUNES = ("lora", "frozen", "full")
LOSSES = ("ce", "sampled-softmax", "sce")
POSITIONS = ("all", "last")

DEFAULTS: dict = {
    "family": "lite",
    "profile": "custom",
    "dataset": "toy",
    "model": "lite",
    # item LLM: each item's title -> one vector (mean-pooled last hidden states), computed once and cached
    "encoder": "smollm2-135m",
    "encoder_max_tokens": 48,
    "encoder_dtype": "bfloat16",
    # recommendation LLM: the first rec_layers blocks of the LLM over the sequence of adapted item vectors
    "rec_model": "smollm2-135m",
    "rec_layers": 8,
    "tune": "lora",  # lora | frozen (only the adapter and the head train) | full
    "lora_r": 8,
    "lora_alpha": 16,
    "lora_dropout": 0.05,
    "lora_targets": ["q_proj", "k_proj", "v_proj", "o_proj"],
    "dropout": 0.1,  # on the adapted item vectors, as SASRec's embedding dropout
    # item projection head: the paper's MLP to catalogue scores, or a dot product with the item vectors
    "head": "mlp",
    "loss": "ce",
    "positions": "all",  # CE at every position of the history (SASRec) or at the last only
    "alpha": 100.0,  # SCE
    "negatives": 500,  # sampled softmax / SCE
    "epochs": 30,
    "patience": 5,
    "batch_size": 64,
    "lr": 1e-3,
    "weight_decay": 0.0,
    "maxlen": 10,
    "seed": 0,
    "device": "cpu",
    "max_train_windows": None,
    "max_valid_windows": None,
}

CHOICES = {"encoder": ENCODERS, "rec_model": REC_MODELS, "head": HEADS, "tune": TUNES, "loss": LOSSES,
           "positions": POSITIONS}


def complete(config: dict) -> dict:
    """``config`` over :data:`DEFAULTS`, checked (each error names the key), in plain JSON types."""
    unknown = set(config) - set(DEFAULTS)
    if unknown:
        raise ValueError(f"unknown lite config key(s) {sorted(unknown)}; known: {sorted(DEFAULTS)}")
    cfg = {**DEFAULTS, **config}
    for key, allowed in CHOICES.items():
        if cfg[key] not in allowed:
            raise ValueError(f"{key} must be one of {allowed}, got {cfg[key]!r}")
    for name in ("epochs", "batch_size", "maxlen", "rec_layers", "lora_r", "encoder_max_tokens", "patience",
                 "max_train_windows", "max_valid_windows", "negatives"):
        value = cfg[name]
        if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 1):
            raise ValueError(f"{name} must be a positive integer, got {value!r}")
    if float(cfg["lr"]) <= 0 or float(cfg["alpha"]) <= 0:
        raise ValueError(f"lr and alpha must be positive, got lr={cfg['lr']!r}, alpha={cfg['alpha']!r}")
    if not 0 <= float(cfg["dropout"]) < 1:
        raise ValueError(f"dropout must be in [0, 1), got {cfg['dropout']!r}")
    return json.loads(json.dumps(cfg))
