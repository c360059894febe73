"""How the book names what it shows: each loss by the name the chapters give it and in one colour in every
figure, and each measure in words with its unit (axis labels, legends, table headers).

No plotting library is imported here, so the tables (:func:`llmrec.experiments.tables.for_reader`) and the
figures (:mod:`llmrec.plots`) share one vocabulary.
"""

from __future__ import annotations

import re

# the losses every family trains (llm, seqrec and lite configs' LOSSES), and the two methods the chapters show
# beside them that have no loss of their own to name them by: Lite-LLM4Rec (CE through a projection head) and
# popularity
LOSS_NAMES = {
    "lml": "LML", "lml-tau": "LML + τ", "l2-only": "L2 only", "msl": "MSL", "msl-alpha": "MSL + α",
    "msl-ats": "MSL + ATS", "sdpo": "S-DPO",
    "ce": "CE", "bce": "BCE", "bpr": "BPR", "sampled-softmax": "sampled softmax", "sce": "SCE",
    "lite": "Lite-LLM4Rec", "popularity": "popularity",
}

# The Okabe-Ito colours (seaborn's "colorblind" palette), one per loss in every chapter. Ten colours for fourteen
# names: the LLM losses (chapters 02-06) and the item-score losses (chapters 07-08) share a colour only where no
# figure shows both; the names one figure can compare (LLM_LOSSES, ITEM_LOSSES, CROSS_FAMILY) differ.
LOSS_COLOURS = {
    "lml": "#0173B2",  # blue
    "lml-tau": "#56B4E9",  # sky blue: LML with a temperature
    "l2-only": "#CA9161",  # brown
    "msl": "#D55E00",  # vermillion
    "msl-alpha": "#CC78BC",  # reddish purple
    "msl-ats": "#029E73",  # bluish green
    "sdpo": "#DE8F05",  # orange
    "ce": "#000000",  # black: the full softmax the others approximate
    "bce": "#CA9161",
    "bpr": "#DE8F05",
    "sampled-softmax": "#56B4E9",
    "sce": "#D55E00",
    "lite": "#CC78BC",
    "popularity": "#949494",  # grey, as anything that trains no loss: the floor
}
LLM_LOSSES = ("lml", "lml-tau", "l2-only", "msl", "msl-alpha", "msl-ats", "sdpo")
ITEM_LOSSES = ("ce", "bce", "bpr", "sampled-softmax", "sce", "lite", "popularity")
CROSS_FAMILY = ("lml", "msl-ats", "ce", "sce", "lite", "popularity")  # chapters 07-08: both families on one table
NEUTRAL = LOSS_COLOURS["popularity"]  # anything that trains no loss

# a method's loss from its name as the chapters write it ("MSL + tuning tau", "SASRec + SCE (K 500, α 100)",
# "CE, post-LN blocks"); the first pattern that matches the lower-cased name wins
_RULES = (
    (r"popularity", "popularity"),
    (r"lite-llm4rec|projection head", "lite"),
    (r"\bs-?dpo\b", "sdpo"),
    (r"\bats\b", "msl-ats"),
    (r"\bmsl\b.*\+ ?(α|alpha)", "msl-alpha"),
    (r"\bmsl\b", "msl"),
    (r"\blml\b.*(τ|tau)", "lml-tau"),
    (r"\bl2[ -]only\b", "l2-only"),
    (r"\blml\b", "lml"),
    (r"\bsce\b", "sce"),
    (r"\bsampled[ -]softmax\b", "sampled-softmax"),
    (r"\bbce\b", "bce"),
    (r"\bbpr\b", "bpr"),
    (r"\bce\b", "ce"),
)


def loss_of(name: str) -> str | None:
    """The loss (a key of :data:`LOSS_NAMES`) of a method named as the chapters name it, a loss's own name, or
    its reader's name; None for a name that names no loss (e.g. "dot-product head")."""
    if name in LOSS_NAMES:
        return name
    low = str(name).lower()
    for pattern, loss in _RULES:
        if re.search(pattern, low):
            return loss
    return None


def loss_colour(name: str, default: str | None = None) -> str:
    """The colour of the loss :func:`loss_of` finds in ``name``; else that of the loss ``default``, else grey."""
    loss = loss_of(name) or default
    return LOSS_COLOURS.get(loss, NEUTRAL)


def loss_name(loss: str) -> str:
    """A loss as the chapters name it ("msl-ats" -> "MSL + ATS"); a name that is no loss unchanged."""
    return LOSS_NAMES.get(loss, loss)


# each measure (a column of the library's frames, a logged column) in words with its unit
MEASURES = {
    # likelihood of the target title (nats per title)
    "nll_valid": "−log P_valid of the target (nats)",
    "nll_full": "−log P of the target, full vocabulary (nats)",
    # ranking
    "ndcg@5": "NDCG@5", "ndcg@10": "NDCG@10", "hr@5": "HR@5", "hr@10": "HR@10", "mrr": "MRR",
    "recall@10": "Recall@10",
    "beam": "by beam search", "beam metric": "beam-search measure", "beam users": "beam-search users",
    "beam rank": "rank by beam search (0 = top)", "exact rank": "exact rank (0 = top)",
    "full softmax": "beams scored by the full softmax", "P_valid": "beams scored by P_valid",
    # what was varied
    "tau": "temperature τ", "alpha": "scale α", "K": "negatives K", "lr": "learning rate",
    # cost
    "s/step": "time per training step (s)", "train_s": "training time (s)", "train_seconds": "training time (s)",
    "seconds_total": "training time (s)", "eval_s/user": "evaluation time per user (s)",
    "seconds_per_epoch": "time per epoch (s)", "s/run": "time per run (s)", "peak_memory_mb": "peak memory (MB)",
    "peak MB": "peak memory (MB)", "score_matrix_mb": "score matrix of a batch (MB)", "ms/user": "time per user (ms)",
    "time saved vs beam": "time saved against beam search", "beam s/user": "beam search per user (s)",
    "exact s/user": "exact ranking per user (s)", "s/user full": "time per user, full softmax (s)",
    "s/user P_valid": "time per user, P_valid (s)",
    # training facts
    "best_epoch": "best epoch", "epochs_run": "epochs run", "epochs_cap": "epoch cap",
    "best at cap": "best epoch is the cap", "at cap": "runs whose best epoch is the cap", "best epoch": "best epoch",
    "best epochs": "best epochs", "seeds": "seeds", "chosen": "chosen",
    # who and how many
    "n_users": "users", "users": "users", "user_id": "user", "method": "method", "variant": "variant",
    "metric": "measure", "vs": "against", "model": "model", "loss": "loss", "split": "split", "dataset": "dataset",
    "resolved": "interval excludes 0", "verdict": "verdict", "diff": "difference",
    # chapter 01's trie, chapter 04's normality
    "build_s": "trie build time, median (s)", "paper_build_s": "paper's trie build time, Table 7 (s)",
    "paper_AVT": "paper's AVT (Table 4)",
    "vocab": "vocabulary (tokens)", "n": "logits", "std": "standard deviation", "skew": "skewness",
    "excess_kurtosis": "excess kurtosis", "ks_distance": "Kolmogorov–Smirnov distance",
    # logged during training
    "l2": "L2: −log P_valid(y_t) per token (nats)",
    "grad_norm_l1": "gradient norm of L1", "grad_norm_l2": "gradient norm of L2", "step": "training step",
}

# values of a column shown in words: splits, models, losses and measures
VALUES = {
    "split": {"valid": "validation", "test": "test", "train": "training"},
    "model": {"sasrec": "SASRec", "gru4rec": "GRU4Rec", "caser": "Caser", "popularity": "popularity"},
    "loss": {**LOSS_NAMES, "-": "–"},
}
_PREFIXES = {"valid ": "validation ", "test ": "test "}


def measure(column) -> str:
    """A column in words with its unit: a :data:`MEASURES` name, "valid X" / "test X" (validation / test X),
    "vs NAME" (difference from NAME), else the column itself."""
    if not isinstance(column, str):
        return str(column)
    if column in MEASURES:
        return MEASURES[column]
    for prefix, words in _PREFIXES.items():
        if column.startswith(prefix) and column[len(prefix):] in MEASURES:
            return words + MEASURES[column[len(prefix):]]
    if column.startswith("vs "):
        return f"difference from {column[3:]}"
    return column


def value(column, v):
    """A value of ``column`` in words (a split, a model, a loss, a measure), else ``v`` unchanged."""
    if column in ("metric", "beam metric"):
        return MEASURES.get(v, v)
    return VALUES.get(column, {}).get(v, v) if isinstance(v, str) else v
