"""The configuration of a classic sequential model's run (its hash names the run): the one configuration style,
:class:`llmrec.core.config.RunConfig`."""

from __future__ import annotations

from dataclasses import dataclass

from ..core.config import RunConfig

LOSSES = ("ce", "bce", "bpr", "sampled-softmax", "sce")
MODELS = ("sasrec", "gru4rec", "caser")

# Measured departures from the reference SASRec (pmixer's SASRec.pytorch, which follows Kang & McAuley): each
# option's first value is the reference code's and the configuration class's default. A config names an option only
# when it differs from that value, so the runs made before the options existed keep their keys.
OPTIONS: dict = {
    "norm": ("pre", "post"),  # pre: the reference's normalised-query blocks; post: LayerNorm after each residual
    "ffn_act": ("relu", "gelu"),
    "ffn_mult": (1, 4),  # FFN width = ffn_mult x hidden (reference: 1; RecBole: 4)
    "emb_scale": (True, False),  # item embeddings times sqrt(hidden) (reference) or not
    "init": ("xavier", "normal", "torch"),  # Xavier-normal (reference), N(0, 0.02) (RecBole), PyTorch defaults
    "adam_beta2": (0.98, 0.999),  # the reference's Adam beta2 or PyTorch's default
    "negatives_per": ("sequence", "position"),  # sampled losses: K negatives shared by a sequence, or per position
}
REFERENCE: dict = {k: values[0] for k, values in OPTIONS.items()}  # the reference SASRec, option by option

# The study's SASRec (issue 26): the candidate chosen on validation among those departures, singly and combined
# (llmrec.experiments.sasrec_default; a test checks that it is what the committed selection chose).
# llmrec.core.profiles.train_config adds these to every "sasrec" configuration it builds (the command line, the
# chapters), unless a caller names the option; the configuration class keeps the reference's values, so that a
# run cached before (whose config.json omits an option at the reference's value) keeps its key and its meaning.
MODEL_DEFAULTS: dict = {"sasrec": {"init": "normal", "adam_beta2": 0.999, "ffn_act": "gelu", "ffn_mult": 4}}


# The SCE authors' SASRec setting (architecture, optimiser, alpha, K). Epochs and
# patience are ours: the authors train to convergence with early stopping.
# Per-profile overrides live in llmrec.core.profiles.PROFILES (docs/design.md "Profiles").
@dataclass
class SeqRecConfig(RunConfig):
    """Every option of a classic model's run."""

    family: str = "seqrec"
    dataset: str = "toy"
    model: str = "sasrec"
    loss: str = "ce"
    alpha: float = 100.0
    negatives: int = 500
    epochs: int = 200
    batch_size: int = 512
    lr: float = 5e-4
    weight_decay: float = 0.0
    hidden: int = 64
    blocks: int = 2  # transformer blocks (SASRec) or GRU layers (GRU4Rec)
    heads: int = 1
    dropout: float = 0.6
    maxlen: int = 50
    patience: int | None = 10  # epochs without a better validation NDCG@10; None = never stop early
    seed: int = 0
    device: str = "cpu"
    max_train_windows: int | None = None  # None = all training windows
    max_valid_windows: int | None = None  # validation windows used for early stopping (None = all)
    norm: str = "pre"
    ffn_act: str = "relu"
    ffn_mult: int = 1
    emb_scale: bool = True
    init: str = "xavier"
    adam_beta2: float = 0.98
    negatives_per: str = "sequence"

    LABEL = "seqrec config"
    CHOICES = {"model": MODELS, "loss": LOSSES, **OPTIONS}
    POSITIVE = ("epochs", "batch_size", "hidden", "blocks", "heads", "maxlen", "max_train_windows",
                "max_valid_windows", "patience")
    NULLABLE = ("max_train_windows", "max_valid_windows", "patience")
    KEY_IF_CHANGED = tuple(OPTIONS)

    def check(self):
        if self.loss in ("sampled-softmax", "sce") and int(self.negatives) < 1:
            raise ValueError("sampled losses need negatives >= 1")
        if self.loss == "sce" and float(self.alpha) <= 0:
            raise ValueError("alpha must be positive")


DEFAULTS: dict = SeqRecConfig().to_dict()  # what config.json holds for a run of every default


def complete(config: dict) -> dict:
    """``config`` over the defaults, checked, in plain JSON types (as stored in config.json)."""
    return SeqRecConfig.complete(config)
