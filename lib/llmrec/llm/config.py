"""The configuration of an LLM run: every option that changes its result (its hash names the run)."""

from __future__ import annotations

from dataclasses import dataclass

from ..core.config import RunConfig
from .prompts import check_domain

NULLABLE = ("max_steps", "n_train", "layers", "lora_layers", "checkpoint_every")  # None: no limit / the whole model
# How a run is carried out, never what it computes (resuming is exact): kept out of config.json and so out of
# the run cache's key; an interrupted run may be resumed with another value.
RUN_OPTIONS = ("checkpoint_every",)
# Options added after runs were cached: at their default (None) they stay out of config.json, so the keys of
# the runs made before them do not change.
KEY_IF_SET = ("domain", "valid_by", "micro_batch")
KEY_IF_CHANGED = ("compile",)
VALID_BY = ("ndcg@5", "nll_valid")  # what chooses the best epoch: beam NDCG@5, or the lowest mean -log P_valid
LOSSES = ("lml", "lml-tau", "l2-only", "msl", "msl-ats", "msl-alpha", "sdpo")


@dataclass
class TrainConfig(RunConfig):
    """Every option of an LLM run (the one configuration style: :class:`llmrec.core.config.RunConfig`)."""

    family: str = "llm"
    dataset: str = "toy"
    domain: str | None = None  # the prompt's template (llmrec.llm.prompts.TEMPLATES); None: the dataset's meta.json domain
    model: str = "smollm2-135m"
    layers: int | None = None  # keep only the first k transformer blocks (tests; breaks a pretrained LM)
    loss: str = "msl-ats"
    tau: float = 1.0  # msl, lml-tau
    alpha: float | str = "auto"  # msl-alpha: |Z| / |Z_valid| per position
    eta: float = 0.25  # ATS target P_valid
    ats_root: str = "+"
    ats_positions: str = "paper"  # or "code": first response token only
    ats_clamp: tuple | None = (1.5, 5.0)
    ats_ema: float = 0.05
    drop_singletons: bool = True
    sdpo_ref: str | None = None  # run dir, adapter dir or run-cache name of the LML model S-DPO starts from
    sdpo_negatives: int = 3
    sdpo_beta: float = 1.0
    lr: float = 1e-4
    weight_decay: float = 0.0
    epochs: int = 1
    batch_size: int = 8
    grad_accum: int = 1
    # windows in one forward: None, batch_size (accumulate grad_accum batches, one forward each), a multiple of
    # batch_size up to batch_size * grad_accum (several logical batches share a forward: the same optimiser step up
    # to rounding and LoRA dropout's draws), or "auto" (llmrec.llm.memory: as many as the GPU's memory holds)
    micro_batch: int | str | None = None
    max_steps: int | None = None  # per epoch, for short mechanism runs
    n_train: int | None = 10_000
    n_valid_users: int = 100
    valid_beams: int = 10
    valid_by: str | None = None  # the best epoch by: None / "ndcg@5" (beam search), "nll_valid" (the likelihood)
    max_history: int = 10
    lora_r: int = 8
    lora_alpha: int = 16
    lora_dropout: float = 0.05
    lora_targets: tuple = ("q_proj", "v_proj")
    lora_layers: int | None = None  # LoRA on the last k blocks only; the frozen blocks below run once per window
    seed: int = 0
    device: str = "cpu"
    dtype: str = "float32"
    log_every: int = 1
    checkpoint_every: int | None = None  # also checkpoint every k training steps inside an epoch (None: epoch ends only)
    log_grad_norms: int = 0  # Figure 3: gradient norms of L1 and L2 every k steps (two extra backward passes); 0: never
    log_decomposition: bool = True  # log L1 and L2 (needs the full-vocabulary logsumexp)
    validate: bool = True
    compile: bool = False  # torch.compile each transformer block (llmrec.llm.training.compile_blocks)

    LABEL = "training"
    CHOICES = {"loss": LOSSES}
    NULLABLE = NULLABLE
    POSITIVE = ("epochs", "batch_size", "grad_accum", "max_steps", "n_train", "layers", "valid_beams",
                "max_history", "lora_r", "checkpoint_every")
    KEY_IF_SET = KEY_IF_SET
    KEY_IF_CHANGED = KEY_IF_CHANGED
    RUN_OPTIONS = RUN_OPTIONS

    def check(self):
        if self.loss == "sdpo" and not self.sdpo_ref:
            raise ValueError("loss 'sdpo' needs sdpo_ref: the run directory of an LML model")
        if not isinstance(self.n_valid_users, int) or isinstance(self.n_valid_users, bool) or self.n_valid_users < 0:
            raise ValueError(f"n_valid_users must be an integer >= 0, got {self.n_valid_users!r}")
        if self.domain is not None:
            check_domain(self.domain)
        if self.valid_by is not None and self.valid_by not in VALID_BY:
            raise ValueError(f"valid_by must be one of {', '.join(VALID_BY)}, got {self.valid_by!r}")
        if self.tau <= 0:
            raise ValueError(f"tau must be positive, got {self.tau}")
        if self.lora_layers is not None and self.lora_layers < 1:
            raise ValueError(f"lora_layers must be a positive number of blocks (or None for all), got {self.lora_layers}")
        self.log_grad_norms = int(self.log_grad_norms)  # True: every step
        if self.log_grad_norms < 0:
            raise ValueError(f"log_grad_norms must be a step interval >= 0, got {self.log_grad_norms}")
        self.lora_targets = tuple(self.lora_targets)
        mb = self.micro_batch
        if mb is not None and mb != "auto":
            top = self.batch_size * self.grad_accum
            if not isinstance(mb, int) or isinstance(mb, bool) or mb < 1 or mb % self.batch_size or mb > top:
                raise ValueError(f"micro_batch must be 'auto', None or a multiple of batch_size ({self.batch_size}) "
                                 f"up to batch_size * grad_accum ({top}), got {mb!r}")
            if mb == self.batch_size:
                self.micro_batch = None  # one logical batch per forward: the default, one run-cache key
        self.ats_clamp = tuple(self.ats_clamp) if self.ats_clamp else None
