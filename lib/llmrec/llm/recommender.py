"""The generative LLM as a recommender: prompts from histories, titles from the trie, ranks three ways.

:class:`LLMRecommender` holds what a run needs, built once (dataset,
tokenizer, trie, prompt encoder) and, once loaded, the fine-tuned model. It
implements :class:`llmrec.core.recommender.Recommender`: ``score`` is the
exact log P_valid of every item (:mod:`.decode.exact`), ``recommend`` the
constrained beam search (:mod:`.decode.beam`), and ``rank`` has three modes:
``"beam"`` (rank in the beam list; a miss is ``inf``), ``"full"`` (exact rank
over the whole catalogue by P_valid, ties pessimistic) and ``"ground"`` (free
generation, then the ``k`` nearest titles, :mod:`.decode.ground`).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from peft import PeftModel

from ..core import rundir
from ..core.io import read_json
from ..core.recommender import Recommender
from ..data import load_dataset
from . import decode
from .config import TrainConfig
from .model import add_lora, load_llm, load_tokenizer
from .frozen import FrozenBlocks
from .objectives import collate, valid_logits
from .prompts import PromptEncoder, check_domain
from .trie import ItemTrie


class LLMRecommender(Recommender):
    """Dataset, tokenizer, trie and prompt encoder of a configuration, and (once loaded) its model."""

    family = "llm"
    modes = ("beam", "full", "ground")
    likelihood_batch = 16  # users per teacher-forced forward
    eval_batch = 24  # users per beam-search batch
    beam_score = "full"  # how beams are scored: "full" (log-softmax over the vocabulary) or "valid" (log P_valid)

    def __init__(self, cfg: TrainConfig, model=None, embed: str = "llm"):
        self.cfg, self.model, self.embed = cfg, model, embed
        self.ds = load_dataset(cfg.dataset)
        self.tok = load_tokenizer(cfg.model)
        self.trie = ItemTrie.from_titles(self.ds.items, self.tok)
        self.domain = check_domain(cfg.domain or self.ds.domain,
                                   "" if cfg.domain else f" (dataset {cfg.dataset}: meta.json's \"domain\")")
        self.encoder = PromptEncoder(self.tok, self.trie, self.ds.items, self.domain, cfg.max_history)
        self.item_ids = decode.trie_plan(self.trie).item_ids

    @classmethod
    def from_run(cls, run_dir: str | Path, embed: str = "llm") -> "LLMRecommender":
        """The recommender of a finished run, with its best adapter loaded (eval mode)."""
        run_dir = Path(run_dir)
        rec = cls(TrainConfig.from_dict(read_json(run_dir / "config.json")), embed=embed)
        rec.model = rec.load_model(run_dir / "adapter").eval()
        return rec

    def load_model(self, adapter: str | Path | None = None, trainable_adapter: bool = False):
        """The base model with a fresh LoRA adapter, or with the adapter saved at ``adapter``."""
        cfg = self.cfg
        model, _ = load_llm(cfg.model, device=cfg.device, dtype=cfg.dtype, layers=cfg.layers, seed=cfg.seed)
        if adapter is None:
            return add_lora(model, cfg)
        return PeftModel.from_pretrained(model, str(adapter), is_trainable=trainable_adapter).to(cfg.device)

    def prompts(self, histories) -> list[list[int]]:
        return [self.encoder.prompt_ids(list(h)) for h in histories]

    @torch.no_grad()
    def score(self, histories) -> np.ndarray:
        """log P_valid(title | prompt) of every item, (users, items) in :attr:`item_ids` order."""
        return np.concatenate([decode.score_all_items_batch(self.model, [p], self.trie)
                               for p in self.prompts(histories)])

    @torch.no_grad()
    def recommend(self, histories, k: int = 10) -> list[list[int]]:
        """The items of the ``k`` best titles of a constrained beam search (``k`` beams), best first."""
        beams = decode.beam_search_batch(self.model, self.prompts(histories), self.trie, num_beams=k,
                                         batch_size=self.eval_batch, score=self.beam_score)
        return [[i for items, _ in res for i in items] for res in beams]

    @torch.no_grad()
    def rank(self, histories, targets, mode: str = "beam", k: int = 10) -> np.ndarray:
        self.check_mode(mode)
        self.model.eval()
        P, T = self.prompts(histories), [int(t) for t in targets]
        if mode == "beam":
            beams = decode.beam_search_batch(self.model, P, self.trie, num_beams=k, batch_size=self.eval_batch,
                                             score=self.beam_score)
            return np.asarray([decode.rank_from_beams(res, t) for res, t in zip(beams, T)], dtype=float)
        if mode == "full":
            return decode.exact_ranks(self.model, P, T, self.trie, mode="valid")
        got = decode.ground_batch(self.model, self.tok, P, self.ds.items, embed=self.embed, k=k)
        return np.asarray([g.items.index(t) if t in g.items else np.inf for g, t in zip(got, T)], dtype=float)

    @torch.no_grad()
    def likelihood(self, histories, targets) -> dict[str, np.ndarray]:
        """Teacher-forced negative log-likelihood of each target's title given its history, in nats.

        ``nll_valid``: -log P_valid(y^v | x) = sum over the title's tokens of
        -log softmax restricted to the trie's valid next tokens (what MSL
        trains, Lemma 1's ranking score); ``nll_full``: -log P(y^v | x) under
        the whole vocabulary (what LML trains). One forward of prompt + title
        per user, ``likelihood_batch`` users at a time; with LoRA on the top
        blocks only, the frozen blocks below run once per window for every run
        on the same base model (:class:`~llmrec.llm.frozen.FrozenBlocks`).
        """
        self.model.eval()
        exs = [self.encoder.encode(list(h), int(t)) for h, t in zip(histories, targets)]
        dev = next(self.model.parameters()).device
        frozen = FrozenBlocks.of(self.model, self.cfg)
        valid, full = [], []
        for b in range(0, len(exs), self.likelihood_batch):
            batch = collate(exs[b:b + self.likelihood_batch], self.trie, self.tok.pad_token_id)
            if frozen is not None:
                frozen.attach(batch)
            batch = batch.to(dev)
            v = valid_logits(self.model, batch, full=True)
            fy = v.target_logit().float()
            per_token = {"valid": torch.logsumexp(v.masked(), -1) - fy, "full": v.lse_all - fy}
            n = len(batch.items)
            for out, key in ((valid, "valid"), (full, "full")):
                out.append(torch.zeros(n, dtype=torch.float64).index_add(0, batch.b_idx.cpu(),
                                                                         per_token[key].double().cpu()).numpy())
        return {"nll_valid": np.concatenate(valid) if valid else np.zeros(0),
                "nll_full": np.concatenate(full) if full else np.zeros(0)}


def adapter_dir(p: str | Path) -> Path:
    """The LoRA adapter folder of a run directory, an adapter folder, or a run's name in the run cache (what
    :func:`llmrec.experiments.profile_runs.llm_run` stores as ``sdpo_ref``, so that the S-DPO run's key does not
    depend on where the repository lies)."""
    p = Path(p)
    if not p.exists() and len(p.parts) == 1:
        p = rundir.runs_root() / p
    if (p / "adapter" / "adapter_config.json").exists():
        return p / "adapter"
    if (p / "adapter_config.json").exists():
        return p
    raise FileNotFoundError(f"{p}: no LoRA adapter here (expected a run directory or an adapter folder)")


