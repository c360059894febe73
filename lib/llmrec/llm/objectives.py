"""The training objectives of the generative LLM: batches of prompt + title, hidden states, and each loss.

A batch holds, for every response position, the hidden-state position that
predicts it and Z_valid(y_<t) (the trie's valid next tokens); the fast path
projects the hidden states only onto those tokens (:func:`valid_logits`),
the dense teaching forms in :mod:`llmrec.core.losses` take full logits, and so
does a loss function of the user's (:func:`dense_logits`, :mod:`llmrec.core.custom_loss`).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field, fields

import numpy as np
import torch

from ..core import losses as L
from ..core.custom_loss import configure
from ..core.tensors import eval_mode, pad_sequences
from .config import TrainConfig
from .model import blocks, trainable
from .prompts import Example
from .trie import ItemTrie


@dataclass
class Batch:
    input_ids: torch.Tensor  # (B, L) right-padded
    attention_mask: torch.Tensor
    b_idx: torch.Tensor  # (N,) sample of each response position
    pos_idx: torch.Tensor  # (N,) hidden-state position that predicts the response token
    targets: torch.Tensor  # (N,) response token ids
    valid_tokens: torch.Tensor  # (N, K) Z_valid(y_<t), padded
    valid_mask: torch.Tensor
    target_index: torch.Tensor  # (N,) column of y_t in valid_tokens
    first: torch.Tensor  # (N,) first response token of its sample
    items: torch.Tensor  # (B,) item id of each sequence
    group: list = field(default_factory=list)  # S-DPO: (positive row, negative rows) per window
    frozen: torch.Tensor | None = None  # (B, L, d) output of the frozen lower blocks, when training only the top ones
    frozen_from: int = 0  # the first block that runs on ``frozen``
    parts: list = field(default_factory=list)  # windows of each logical batch in one forward, in order ([]: one)

    def to(self, device):
        for f in fields(self):
            v = getattr(self, f.name)
            if torch.is_tensor(v):
                setattr(self, f.name, v.to(device))
        return self


def collate(examples: list[Example], trie: ItemTrie, pad_id: int) -> Batch:
    """Right-padded prompt + response ids, and for every response position its Z_valid and target column."""
    ids, att = pad_sequences([e.input_ids for e in examples], pad_id)
    b_idx, pos_idx, first = [], [], []
    for b, e in enumerate(examples):
        T = len(e.input_ids) - e.prompt_len
        b_idx.append(torch.full((T,), b))
        pos_idx.append(torch.arange(e.prompt_len - 1, e.prompt_len - 1 + T))
        first.append(torch.arange(T) == 0)
    b_idx, pos_idx = torch.cat(b_idx), torch.cat(pos_idx)
    targets = ids[b_idx, pos_idx + 1]
    nodes, _ = trie.response_nodes([e.target for e in examples])
    tokens, mask = trie.children(nodes)
    return Batch(ids, att, b_idx, pos_idx, targets, tokens, mask, trie.target_columns(nodes, targets),
                 torch.cat(first), torch.tensor([e.target for e in examples]))


def length_grouped_batches(lengths, batch_size: int, seed: int, epoch: int, mega: int = 16,
                           group: int = 1) -> list[list[int]]:
    """Shuffle, sort by length inside mega-batches of ``mega`` batches, shuffle the batches (seeded).

    ``group`` consecutive batches stay together through the last shuffle (an optimiser step of ``group``
    accumulated batches: its windows come from one mega-batch, so they have about the same length and one
    forward over all of them pads little); the mega-batch is rounded up to whole groups, and a last group short of
    ``group`` batches stays last. ``group=1`` is the plain shuffle of batches.
    """
    rng = np.random.default_rng([seed, epoch])
    order = rng.permutation(len(lengths))
    out = []
    mega = -(-mega // group) * group
    for s in range(0, len(order), batch_size * mega):
        chunk = sorted(order[s:s + batch_size * mega], key=lambda i: -lengths[i])
        out += [chunk[j:j + batch_size] for j in range(0, len(chunk), batch_size)]
    groups = [out[i:i + group] for i in range(0, len(out), group)]
    tail = groups.pop() if len(groups[-1]) < group else []  # a short last group stays last: steps keep their places
    return [b for i in rng.permutation(len(groups)) for b in groups[i]] + tail


def response_hidden(model, batch: Batch) -> torch.Tensor:
    """Final hidden states at the positions that predict response tokens (N, d): no LM head.

    With ``batch.frozen`` (the cached output of the lower, adapter-free blocks)
    only the blocks above it run.
    """
    body = model.get_decoder()
    if batch.frozen is None:
        h = body(input_ids=batch.input_ids, attention_mask=batch.attention_mask).last_hidden_state
    else:
        with blocks(body, batch.frozen_from, len(body.layers)):
            h = body(inputs_embeds=batch.frozen, attention_mask=batch.attention_mask, use_cache=False).last_hidden_state
    return h[batch.b_idx, batch.pos_idx]


def output_weight(model) -> torch.Tensor:
    return model.get_output_embeddings().weight


def valid_logits(model, batch: Batch, full: bool, full_tau: float = 1.0) -> L.ValidLogits:
    """The fast path: hidden states of response positions projected only onto their valid tokens (and, with
    ``full``, the whole vocabulary's logsumexp, at temperature ``full_tau`` too when it is not 1)."""
    h = response_hidden(model, batch)
    return L.project_valid(h, output_weight(model), batch.valid_tokens, batch.valid_mask, batch.target_index,
                           full=full, first=batch.first, full_tau=full_tau)


def dense_logits(hidden: torch.Tensor, weight: torch.Tensor, batch: Batch) -> tuple[torch.Tensor, torch.Tensor]:
    """The dense teaching form of a batch's response positions: their logits over the whole vocabulary (N, |V|,
    float32) from ``hidden`` (N, d) and the output embedding ``weight`` (|V|, d), and the boolean mask of each
    position's valid tokens Z_valid(y_<t) (N, |V|)."""
    logits = (hidden @ weight.to(hidden.dtype).T).float()
    valid = torch.zeros_like(logits, dtype=torch.bool)
    rows = torch.arange(len(logits), device=logits.device)[:, None].expand_as(batch.valid_tokens)
    valid[rows[batch.valid_mask], batch.valid_tokens[batch.valid_mask]] = True
    return logits, valid


def sequence_logprob(model, batch: Batch) -> torch.Tensor:
    """log pi(y | x) of every sequence of the batch under the full softmax (for S-DPO)."""
    v = valid_logits(model, batch, full=True)
    per = v.target_logit().float() - v.lse_all
    return torch.zeros(len(batch.items), device=per.device).index_add(0, batch.b_idx, per)


def component_grad_norms(l1: torch.Tensor, l2: torch.Tensor, params) -> dict[str, float]:
    """Norms of the gradients of L1 and L2 (eqs. 3-4) w.r.t. ``params`` (Figure 3).

    Two extra backward passes through the graph (kept for the main backward).
    """
    params = list(params)
    out = {}
    for name, comp in (("grad_norm_l1", l1), ("grad_norm_l2", l2)):
        grads = torch.autograd.grad(comp, params, retain_graph=True, allow_unused=True)
        out[name] = float(torch.sqrt(sum((g.float() ** 2).sum() for g in grads if g is not None)))
    return out


# ============================================================================ one step


class LossComputer:
    """Computes the configured loss on a batch and the quantities worth logging.

    A configuration whose loss is ``custom:<name>`` needs its function, ``loss_fn`` (a function or a
    :class:`~llmrec.core.custom_loss.CustomLoss`): it is called as ``loss_fn(logits, valid, targets)`` on the
    batch's dense teaching form (:func:`dense_logits`; the targets are the response tokens) in place of a
    built-in loss, and the same quantities are logged (L1, L2 and the gradient weights at tau = 1).
    """

    def __init__(self, cfg: TrainConfig, loss_fn=None):
        cfg, self.custom = configure(cfg, loss_fn)  # loss_fn's configuration and CustomLoss (None: a built-in loss)
        self.cfg = cfg
        self.ats = L.ATSController(cfg.eta, cfg.ats_root, cfg.ats_positions, cfg.ats_clamp, cfg.ats_ema) \
            if cfg.loss == "msl-ats" else None
        self.calls = 0  # batches seen: gradient norms are logged on every log_grad_norms-th
        self.grad_norm_seconds = 0.0  # time of those extra backward passes (kept out of train_seconds)

    def needs_full(self) -> bool:
        return self.cfg.loss in ("lml", "lml-tau") or self.cfg.log_decomposition or self.cfg.log_grad_norms

    def __call__(self, model, batch: Batch, ref_model=None) -> tuple[torch.Tensor, dict]:
        """The loss of a batch that is one logical batch, and its log (:meth:`parts`)."""
        if len(batch.parts) > 1:
            raise ValueError(f"the batch holds {len(batch.parts)} logical batches: use LossComputer.parts")
        losses, logs = self.parts(model, batch)
        return losses[0], logs[0]

    def parts(self, model, batch: Batch) -> tuple[list[torch.Tensor], list[dict]]:
        """One forward over ``batch`` and, for each of its logical batches (``batch.parts``: windows of each, in
        order; empty: one), its loss and log as if it had run alone: the mean over its own positions (S-DPO: its
        own windows), ATS stepping once per logical batch, in order, and gradient norms on every
        ``log_grad_norms``-th logical batch."""
        cfg = self.cfg
        if cfg.loss == "sdpo":
            r = self._sdpo_ratios(model, batch)
            bounds = np.cumsum([0, *(batch.parts or [len(batch.group)])])
            out = [self.sdpo(r, batch.group[a:b]) for a, b in zip(bounds[:-1], bounds[1:])]
            return [loss for loss, _ in out], [log for _, log in out]
        if self.custom is not None:
            v, dense = self._custom_logits(model, batch)
        else:
            v = valid_logits(model, batch, full=self.needs_full(), full_tau=cfg.tau if cfg.loss == "lml-tau" else 1.0)
            dense = None
        if len(batch.parts) <= 1:
            out = [self._token_loss(model, v, dense)]
        else:
            bounds = np.cumsum([0, *batch.parts])
            sel = [(batch.b_idx >= a) & (batch.b_idx < b) for a, b in zip(bounds[:-1], bounds[1:])]
            out = [self._token_loss(model, v.rows(m), None if dense is None else tuple(t[m] for t in dense)) for m in sel]
        return [loss for loss, _ in out], [log for _, log in out]

    def _token_loss(self, model, v: L.ValidLogits, dense: tuple | None = None) -> tuple[torch.Tensor, dict]:
        """The configured token loss of one logical batch's valid logits (a loss function of the user's: of its
        ``dense`` (logits, valid, targets)), and its log."""
        cfg = self.cfg
        tau = self.ats.step(v) if cfg.loss == "msl-ats" else cfg.tau
        if self.custom is not None:
            loss = self.custom(*dense)
        elif cfg.loss == "lml-tau":
            loss = L.lml_loss(v, tau=cfg.tau)
        elif cfg.loss == "lml":
            loss = L.lml_loss(v)
        elif cfg.loss == "l2-only":
            loss = L.msl_loss(v, tau=1.0, drop_singletons=False)
        elif cfg.loss == "msl-alpha":
            loss = L.msl_loss(v, tau=cfg.tau, alpha=cfg.alpha, drop_singletons=cfg.drop_singletons)
        else:  # msl, msl-ats
            loss = L.msl_loss(v, tau=tau, drop_singletons=cfg.drop_singletons)
        log = {"loss": loss.item(), "tokens": int(v.keep.sum())}
        if cfg.loss == "msl-ats":
            log.update(tau=self.ats.tau, **{f"ats_{k}": x for k, x in self.ats.last.items()})
        elif cfg.loss in ("msl", "msl-alpha", "lml-tau"):
            log["tau"] = cfg.tau
        if v.lse_all is not None:
            l1, l2 = L.lml_decomposition(v)
            log.update(l1=l1.item(), l2=l2.item())
            if cfg.log_grad_norms and self.calls % cfg.log_grad_norms == 0 and l1.requires_grad:
                t0 = time.perf_counter()
                log.update(component_grad_norms(l1, l2, trainable(model)))
                self.grad_norm_seconds += time.perf_counter() - t0
        log["w_mean"] = float(np.nanmean(L.gradient_weights(v, tau=log.get("tau", 1.0)).cpu().numpy()))
        self.calls += 1
        return loss, log

    def _custom_logits(self, model, batch: Batch) -> tuple[L.ValidLogits, tuple]:
        """The valid logits the log is computed from, and the dense teaching form a loss function of the user's
        takes: (logits, valid, targets) of every response position (:func:`dense_logits`)."""
        h, weight = response_hidden(model, batch), output_weight(model)
        logits, valid = dense_logits(h, weight, batch)
        v = L.project_valid(h, weight, batch.valid_tokens, batch.valid_mask, batch.target_index, first=batch.first)
        if self.needs_full():
            v.lse_all = torch.logsumexp(logits, -1)
        return v, (logits, valid, batch.targets)

    @staticmethod
    def _sdpo_ratios(model, batch: Batch) -> torch.Tensor:
        """r = log pi(y | x) - log pi_ref(y | x) of every row (the reference: the "ref" adapter, no dropout)."""
        logp = sequence_logprob(model, batch)
        with torch.no_grad(), eval_mode(model):
            model.set_adapter("ref")
            ref = sequence_logprob(model, batch)
            model.set_adapter("default")
        return logp - ref

    def sdpo(self, r: torch.Tensor, group: list) -> tuple[torch.Tensor, dict]:
        """S-DPO over the windows of ``group`` ((positive row, negative rows) each)."""
        pos = torch.stack([r[p] for p, _ in group])
        neg = torch.stack([r[n] for _, n in group])
        loss = L.sdpo_loss(pos, neg, beta=self.cfg.sdpo_beta)
        self.calls += 1
        return loss, {"loss": loss.item(), "margin": float((pos[:, None] - neg).detach().mean())}
