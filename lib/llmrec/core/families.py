"""The family registry: one entry says everything the rest of the study needs to know about a model family.

A :class:`Family` names its configuration class (a :class:`llmrec.core.config.RunConfig`), its ``train``
function, its recommender class (with ``from_run``), its default evaluation mode, the ``--model`` values that
select it, its own command-line options, and the profile sizes it runs at when
:data:`llmrec.core.profiles.PROFILES` has no sub-table for it. The command line (its ``--family`` choices and
options), the profiles (:func:`llmrec.core.profiles.train_config`) and :mod:`llmrec.runs` (train, load,
evaluate) read the registry; adding a family is one subpackage and one :func:`register` call.

Entries name their code by dotted path (``"llmrec.seqrec.training:train"``), imported on first use: the
registry sits in ``core`` and imports no family, and the command line reads its options without importing torch.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field

# The options every family may take from ``llmrec train`` (each family says which of them it accepts).
COMMON = ("dataset", "loss", "model", "epochs", "lr", "seed", "device", "alpha", "negatives")


@dataclass(frozen=True)
class Option:
    """A command-line option of one family: ``flag`` sets the configuration key ``key``; ``kwargs`` are
    argparse's (``type`` may be ``"positive int"``, ``"positive float"`` or ``"count"``: the command line's
    checked parsers; ``choices`` default to the configuration class's ``CHOICES[key]``, or name a table as
    ``"module:NAME"`` whose keys are the choices)."""

    flag: str
    key: str
    kwargs: dict = field(default_factory=dict)


@dataclass(frozen=True)
class Family:
    name: str
    summary: str  # one line for ``--family``'s help
    config: str  # "module:Class", a RunConfig
    train: str  # "module:function", train(config: dict, run_dir=None, progress=True[, loss_fn=None]) -> Path
    recommender: str  # "module:Class", with from_run(run_dir, **load_options) -> a Recommender
    weights: str | None = None  # "module:function", base_weights(config) -> fingerprints of the pretrained weights
    default_mode: str = "full"  # how ``evaluate`` ranks by default
    models: tuple = ()  # --model values that select this family without --family
    common: tuple = COMMON  # which of COMMON this family accepts
    options: tuple = ()  # its own Option s
    test_users: str | None = None  # the profile's size of a test evaluation after ``train`` (None: every window)
    profiles: dict = field(default_factory=dict)  # profile -> options, where PROFILES has no sub-table for it
    load_options: tuple = ()  # keyword arguments of from_run that runs.load passes on (the LLM's "embed")
    # "module:NAME", {model: options}: what the study uses for one model over the configuration class's defaults
    # (train_config adds them; the class keeps the values that the runs cached before them were made with)
    model_defaults: str | None = None

    def load(self, part: str):
        """The object a dotted path of this entry names (``config``, ``train``, ``recommender``, ``weights``,
        ``model_defaults``)."""
        module, _, name = getattr(self, part).partition(":")
        return getattr(importlib.import_module(module), name)


REGISTRY: dict[str, Family] = {}


def register(family: Family) -> Family:
    """Add (or replace) a family; returns it."""
    REGISTRY[family.name] = family
    return family


def unregister(name: str) -> None:
    REGISTRY.pop(name, None)


def get(name: str) -> Family:
    if name not in REGISTRY:
        raise ValueError(f"unknown family {name!r}; choose one of {sorted(REGISTRY)}")
    return REGISTRY[name]


def names() -> list[str]:
    return list(REGISTRY)


def for_model(model: str | None, default: str = "llm") -> str:
    """The family a ``--model`` value selects (the LLM family for any other model name)."""
    for fam in REGISTRY.values():
        if model in fam.models:
            return fam.name
    return default


register(Family(
    name="llm", summary="the generative LLM (MSL paper)",
    config="llmrec.llm.config:TrainConfig", train="llmrec.llm.training:train",
    recommender="llmrec.llm.recommender:LLMRecommender", weights="llmrec.llm.training:base_weights",
    default_mode="beam", test_users="eval_users", load_options=("embed",),
    common=("dataset", "loss", "model", "epochs", "lr", "seed", "device", "alpha"),
    options=(
        Option("--tau", "tau", dict(type="positive float", help="temperature (msl, lml-tau, msl-alpha)")),
        Option("--n-train", "n_train", dict(type="positive int", help="training windows")),
        Option("--layers", "layers", dict(type="positive int", help="keep only the first k blocks")),
        Option("--lora-layers", "lora_layers", dict(type="positive int", help="LoRA on the last k blocks only")),
        Option("--max-steps", "max_steps", dict(type="positive int", help="training steps per epoch at most")),
        Option("--checkpoint-every", "checkpoint_every", dict(type="positive int",
                                                              help="also checkpoint every k steps inside an epoch")),
        Option("--domain", "domain", dict(choices="llmrec.llm.prompts:TEMPLATES",
                                          help="the prompt's template (default: the dataset's meta.json "
                                               "\"domain\", else generic)")),
        Option("--sdpo-ref", "sdpo_ref", dict(help="run directory of the LML run S-DPO starts from")),
        Option("--log-grad-norms", "log_grad_norms", dict(type="count", nargs="?", const=1, metavar="K",
                                                          help="log the gradient norms of L1 and L2 every K steps "
                                                               "(default K: 1; 0: never)")),
        Option("--micro-batch", "micro_batch", dict(type="positive int or auto", metavar="N|auto",
                                                    help="windows in one forward: a multiple of the batch size up to "
                                                         "batch x grad_accum, or auto (as many as the GPU holds)")),
        Option("--compile", "compile", dict(action="store_const", const=True,
                                            help="torch.compile each transformer block")),
    )))

register(Family(
    name="seqrec", summary="SASRec, GRU4Rec, Caser (SCE paper)",
    config="llmrec.seqrec.config:SeqRecConfig", train="llmrec.seqrec.training:train",
    recommender="llmrec.seqrec.recommender:SeqRecommender", models=("sasrec", "gru4rec", "caser"),
    model_defaults="llmrec.seqrec.config:MODEL_DEFAULTS"))

register(Family(
    name="lite", summary="Lite-LLM4Rec (item LLM + recommendation LLM + projection head)",
    config="llmrec.lite.config:LiteConfig", train="llmrec.lite.training:train",
    recommender="llmrec.lite.recommender:LiteRecommender", weights="llmrec.lite.training:base_weights",
    common=("dataset", "loss", "epochs", "lr", "seed", "device", "alpha", "negatives"),
    options=(
        Option("--encoder", "encoder", dict(help="item LLM (none: learned item-id embeddings)")),
        Option("--head", "head", dict(help="item projection head")),
        Option("--tune", "tune", dict(help="the recommendation LLM")),
        Option("--rec-layers", "rec_layers", dict(type="positive int", help="blocks of the recommendation LLM")),
        Option("--positions", "positions", dict(help="positions trained with the loss")),
    )))
