"""The configuration of a Lite-LLM4Rec run (its hash names the run): the one configuration style,
:class:`llmrec.core.config.RunConfig`."""

from __future__ import annotations

from dataclasses import dataclass, field

from ..core.config import RunConfig

ENCODERS = ("smollm2-135m", "minilm", "tiny", "none")  # the item LLM; "none": learned item-id embeddings
REC_MODELS = ("smollm2-135m", "tiny")  # the recommendation LLM
HEADS = ("mlp", "dot")
TUNES = ("lora", "frozen", "full")
LOSSES = ("ce", "sampled-softmax", "sce")
POSITIONS = ("all", "last")


@dataclass
class LiteConfig(RunConfig):
    """Every option of a Lite-LLM4Rec run."""

    family: str = "lite"
    dataset: str = "toy"
    model: str = "lite"
    # item LLM: each item's title -> one vector (mean-pooled last hidden states), computed once and cached
    encoder: str = "smollm2-135m"
    encoder_max_tokens: int = 48
    encoder_dtype: str = "bfloat16"
    # recommendation LLM: the first rec_layers blocks of the LLM over the sequence of adapted item vectors
    rec_model: str = "smollm2-135m"
    rec_layers: int = 8
    tune: str = "lora"  # lora | frozen (only the adapter and the head train) | full
    lora_r: int = 8
    lora_alpha: int = 16
    lora_dropout: float = 0.05
    lora_targets: list = field(default_factory=lambda: ["q_proj", "k_proj", "v_proj", "o_proj"])
    dropout: float = 0.1  # on the adapted item vectors, as SASRec's embedding dropout
    # item projection head: the paper's MLP to catalogue scores, or a dot product with the item vectors
    head: str = "mlp"
    loss: str = "ce"
    positions: str = "all"  # CE at every position of the history (SASRec) or at the last only
    alpha: float = 100.0  # SCE
    negatives: int = 500  # sampled softmax / SCE
    epochs: int = 30
    patience: int | None = 5
    batch_size: int = 64
    lr: float = 1e-3
    weight_decay: float = 0.0
    maxlen: int = 10
    seed: int = 0
    device: str = "cpu"
    max_train_windows: int | None = None
    max_valid_windows: int | None = None

    LABEL = "lite config"
    CHOICES = {"encoder": ENCODERS, "rec_model": REC_MODELS, "head": HEADS, "tune": TUNES, "loss": LOSSES,
               "positions": POSITIONS}
    POSITIVE = ("epochs", "batch_size", "maxlen", "rec_layers", "lora_r", "encoder_max_tokens", "patience",
                "max_train_windows", "max_valid_windows", "negatives")
    NULLABLE = ("epochs", "batch_size", "maxlen", "rec_layers", "lora_r", "encoder_max_tokens", "patience",
                "max_train_windows", "max_valid_windows", "negatives")  # as before: None passes every size check

    def check(self):
        if float(self.lr) <= 0 or float(self.alpha) <= 0:
            raise ValueError(f"lr and alpha must be positive, got lr={self.lr!r}, alpha={self.alpha!r}")
        if not 0 <= float(self.dropout) < 1:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout!r}")


DEFAULTS: dict = LiteConfig().to_dict()  # what config.json holds for a run of every default
CHOICES = LiteConfig.CHOICES


def complete(config: dict) -> dict:
    """``config`` over the defaults, checked (each error names the key), in plain JSON types."""
    return LiteConfig.complete(config)
