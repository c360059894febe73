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
from ..core.losses import project_valid
from ..core.recommender import Recommender
from ..data import load_dataset
from . import decode
from .config import TrainConfig
from .decode.prefill import prefill
from .frozen import FrozenBlocks
from .model import add_lora, base_model, load_llm, load_tokenizer
from .objectives import collate, output_weight, valid_logits
from .prompts import PromptEncoder, check_domain
from .trie import ItemTrie


class LLMRecommender(Recommender):
    """Dataset, tokenizer, trie and prompt encoder of a configuration, and (once loaded) its model."""

    family = "llm"
    modes = ("beam", "full", "ground")
    beam_score = "full"  # how beams are scored: "full" (log-softmax over the vocabulary) or "valid" (log P_valid)
    # users per call of the batched decoders, by device: ``eval_batch`` users per beam-search batch (and per
    # call of rank / likelihood in evaluate), ``exact_batch`` per exact-ranking pass, ``likelihood_batch`` per
    # teacher-forced call. The CPU's are measured (docs/architecture.md); the GPU's are estimates, not measured.
    BATCH_SIZES = {"cpu": {"eval_batch": 32, "exact_batch": 4, "likelihood_batch": 64},
                   "cuda": {"eval_batch": 256, "exact_batch": 32, "likelihood_batch": 256}}

    def __init__(self, cfg: TrainConfig, model=None, embed: str = "llm"):
        self.cfg, self.model, self.embed = cfg, model, embed
        for name, n in self.BATCH_SIZES["cuda" if str(cfg.device).startswith("cuda") else "cpu"].items():
            setattr(self, name, n)
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
        """log P_valid(title | prompt) of every item, (users, items) in :attr:`item_ids` order (``exact_batch``
        users per pass)."""
        P = self.prompts(histories)
        if not P:
            return np.zeros((0, len(self.item_ids)))
        return np.concatenate([decode.score_all_items_batch(self.model, P[b:b + self.exact_batch], self.trie)
                               for b in range(0, len(P), self.exact_batch)])

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
            return decode.exact_ranks(self.model, P, T, self.trie, mode="valid", users_per_pass=self.exact_batch)
        got = decode.ground_batch(self.model, self.tok, P, self.ds.items, embed=self.embed, k=k)
        return np.asarray([g.items.index(t) if t in g.items else np.inf for g, t in zip(got, T)], dtype=float)

    @torch.no_grad()
    def likelihood(self, histories, targets) -> dict[str, np.ndarray]:
        """Teacher-forced negative log-likelihood of each target's title given its history, in nats.

        ``nll_valid``: -log P_valid(y^v | x) = sum over the title's tokens of
        -log softmax restricted to the trie's valid next tokens (what MSL
        trains, Lemma 1's ranking score); ``nll_full``: -log P(y^v | x) under
        the whole vocabulary (what LML trains). ``likelihood_batch`` users at a
        time, batched as beam search is (:func:`llmrec.llm.decode.prefill.prefill`:
        the prompt template run once, the rest of each prompt + title sorted by
        length into forwards); with LoRA on the top blocks only, the frozen
        blocks below run once per window for every run on the same base model
        (:class:`~llmrec.llm.frozen.FrozenBlocks`) and the top blocks on
        length-sorted batches of prompt + title.
        """
        self.model.eval()
        exs = [self.encoder.encode(list(h), int(t)) for h, t in zip(histories, targets)]
        dev = next(self.model.parameters()).device
        frozen = FrozenBlocks.of(self.model, self.cfg)
        body, W = base_model(self.model).get_decoder(), output_weight(self.model)
        order = sorted(range(len(exs)), key=lambda i: len(exs[i].input_ids))  # similar lengths share a batch
        out = {"nll_valid": np.zeros(len(exs)), "nll_full": np.zeros(len(exs))}
        for b in range(0, len(exs), self.likelihood_batch):
            rows = order[b:b + self.likelihood_batch]
            chunk = [exs[i] for i in rows]
            batch = collate(chunk, self.trie, self.tok.pad_token_id)
            if frozen is not None:
                v = valid_logits(self.model, frozen.attach(batch).to(dev), full=True)
            else:
                batch = batch.to(dev)
                h = torch.cat(prefill(body, [e.input_ids[:-1] for e in chunk], keep_kv=False,
                                      tails=[len(e.input_ids) - e.prompt_len for e in chunk]).tail)
                v = project_valid(h, W, batch.valid_tokens, batch.valid_mask, batch.target_index, full=True,
                                  first=batch.first)  # rows in batch order: user, then position
            fy = v.target_logit().float()
            per_token = {"nll_valid": torch.logsumexp(v.masked(), -1) - fy, "nll_full": v.lse_all - fy}
            for key, per in per_token.items():
                out[key][rows] = torch.zeros(len(chunk), dtype=torch.float64).index_add(
                    0, batch.b_idx.cpu(), per.double().cpu()).numpy()
        return out


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


