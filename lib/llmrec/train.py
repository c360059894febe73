"""LoRA fine-tuning of a causal LM as a recommender, with any loss of the family.

The loop runs on accelerate, so ``accelerate launch`` / ``torchrun`` scale it to
several processes unchanged (ATS statistics are all-reduced across them). Every
epoch ends with a checkpoint (adapter, optimiser and RNG states, ATS state; not
the frozen base weights) and
a validation NDCG@5; the best epoch's adapter is kept in ``RUN/adapter``
(loadable with plain ``peft.PeftModel.from_pretrained``).

Losses (``--loss``): ``lml`` (eq. 1), ``lml-tau`` (LML with temperature),
``l2-only`` (eq. 4 alone, for Figure 4), ``msl`` (eq. 9 with a fixed tau),
``msl-ats`` (tau from the Adaptive Temperature Strategy), ``msl-alpha`` (Table 6
"MSL + alpha"), ``sdpo`` (S-DPO from an LML adapter, which is also the frozen
reference).

``lora_layers=k`` puts LoRA on the last k blocks only. The blocks below then
never change, so their output for each training sequence is computed once,
without gradients, and cached on disk (:class:`FrozenPrefix`); every step runs
only the top k blocks from it. Runs on the same windows share the cache, and the
one-off pass is logged apart from the training time (``frozen_seconds``).
"""

from __future__ import annotations

import hashlib
import io
import math
import os
import random
import resource
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import numpy as np
import torch

from . import losses as L
from . import runs
from .data import atomic_write, load_dataset, sample_windows
from .prompts import Example, PromptEncoder
from .models import blocks
from .trie import ItemTrie

LOSSES = ("lml", "lml-tau", "l2-only", "msl", "msl-ats", "msl-alpha", "sdpo")


@dataclass
class TrainConfig:
    dataset: str = "toy"
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
    sdpo_ref: str | None = None  # run dir (or adapter dir) of the LML model S-DPO starts from
    sdpo_negatives: int = 3
    sdpo_beta: float = 1.0
    lr: float = 1e-4
    weight_decay: float = 0.0
    epochs: int = 1
    batch_size: int = 8
    grad_accum: int = 1
    max_steps: int | None = None  # per epoch, for short mechanism runs
    n_train: int | None = 10_000
    n_valid_users: int = 100
    valid_beams: int = 10
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
    log_grad_norms: int = 0  # Figure 3: gradient norms of L1 and L2 every k steps (two extra backward passes); 0: never
    log_decomposition: bool = True  # log L1 and L2 (needs the full-vocabulary logsumexp)
    validate: bool = True
    profile: str = "custom"

    def __post_init__(self):
        if self.loss not in LOSSES:
            raise ValueError(f"unknown loss {self.loss!r}; choose one of {', '.join(LOSSES)}")
        if self.loss == "sdpo" and not self.sdpo_ref:
            raise ValueError("loss 'sdpo' needs sdpo_ref: the run directory of an LML model")
        if self.tau <= 0:
            raise ValueError(f"tau must be positive, got {self.tau}")
        if self.lora_layers is not None and self.lora_layers < 1:
            raise ValueError(f"lora_layers must be a positive number of blocks (or None for all), got {self.lora_layers}")
        self.log_grad_norms = int(self.log_grad_norms)  # True: every step
        if self.log_grad_norms < 0:
            raise ValueError(f"log_grad_norms must be a step interval >= 0, got {self.log_grad_norms}")
        self.lora_targets = tuple(self.lora_targets)
        self.ats_clamp = tuple(self.ats_clamp) if self.ats_clamp else None

    @classmethod
    def from_dict(cls, d: dict) -> "TrainConfig":
        names = {f.name for f in fields(cls)}
        unknown = set(d) - names
        if unknown:
            raise ValueError(f"unknown training option(s): {sorted(unknown)}")
        return cls(**d)

    def to_dict(self) -> dict:
        return asdict(self)


# ============================================================================ batches


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

    def to(self, device):
        for f in fields(self):
            v = getattr(self, f.name)
            if torch.is_tensor(v):
                setattr(self, f.name, v.to(device))
        return self


def collate(examples: list[Example], trie: ItemTrie, pad_id: int) -> Batch:
    B, Lmax = len(examples), max(len(e.input_ids) for e in examples)
    ids = torch.full((B, Lmax), pad_id, dtype=torch.long)
    att = torch.zeros((B, Lmax), dtype=torch.long)
    b_idx, pos_idx, first = [], [], []
    for b, e in enumerate(examples):
        ids[b, : len(e.input_ids)] = torch.tensor(e.input_ids)
        att[b, : len(e.input_ids)] = 1
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


def length_grouped_batches(lengths, batch_size: int, seed: int, epoch: int, mega: int = 16) -> list[list[int]]:
    """Shuffle, sort by length inside mega-batches of ``mega`` batches, shuffle the batches (seeded)."""
    rng = np.random.default_rng([seed, epoch])
    order = rng.permutation(len(lengths))
    out = []
    for s in range(0, len(order), batch_size * mega):
        chunk = sorted(order[s:s + batch_size * mega], key=lambda i: -lengths[i])
        out += [chunk[j:j + batch_size] for j in range(0, len(chunk), batch_size)]
    return [out[i] for i in rng.permutation(len(out))]


# ============================================================================ model pieces


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


class FrozenPrefix:
    """The output of the frozen lower blocks for every training sequence, computed once and kept on disk.

    With LoRA on the last ``k`` blocks only, the blocks below see no adapter,
    so their output for a token sequence never changes: it is computed once
    (no gradients, ``batch`` sequences per forward) and stored by content
    (sha1 of the model tag, the split block and the token ids) under
    ``$LLMREC_FROZEN`` (default ``cache_root()/frozen``), so every run on the same windows (every loss, every
    tau) reuses it. Each file is written atomically.
    """

    def __init__(self, model, cfg: "TrainConfig", batch: int = 8):
        from .models import cache_root

        body = model.get_decoder()
        self.model, self.body, self.batch = model, body, batch
        self.split = len(body.layers) - cfg.lora_layers
        below = [n for n, _ in body.layers[: self.split].named_parameters() if "lora_" in n]
        if below:
            raise ValueError(f"lora_layers={cfg.lora_layers}, but the adapter has LoRA weights in the lower blocks "
                             f"({below[0]}, ...): their output is not frozen")
        tag = cfg.model if cfg.model != "tiny" else f"tiny-seed{cfg.seed}"
        tag = f"{tag}-{cfg.dtype}-layers{cfg.layers or 'all'}"
        self.tag = f"{tag}-below{self.split}"
        root = Path(os.environ.get("LLMREC_FROZEN") or cache_root() / "frozen")
        self.dir = root / hashlib.sha1(self.tag.encode()).hexdigest()[:16]
        self.seconds = 0.0

    @classmethod
    def of(cls, model, cfg: "TrainConfig") -> "FrozenPrefix | None":
        """The frozen pass of a model whose LoRA covers only its top ``cfg.lora_layers`` blocks; None if all train."""
        n = len(model.get_decoder().layers)
        return cls(model, cfg) if cfg.lora_layers and cfg.lora_layers < n else None

    def _path(self, ids) -> Path:
        h = hashlib.sha1(np.asarray(ids, dtype=np.int64).tobytes()).hexdigest()
        return self.dir / h[:2] / f"{h}.pt"

    @torch.no_grad()
    def _compute(self, seqs: list[list[int]]) -> list[torch.Tensor]:
        out = []
        for b in range(0, len(seqs), self.batch):
            chunk = seqs[b:b + self.batch]
            L_ = max(map(len, chunk))
            ids = torch.zeros((len(chunk), L_), dtype=torch.long)
            att = torch.zeros((len(chunk), L_), dtype=torch.long)
            for r, q in enumerate(chunk):
                ids[r, :len(q)], att[r, :len(q)] = torch.tensor(q), 1
            dev = next(self.model.parameters()).device
            got = []
            hook = self.body.layers[self.split - 1].register_forward_hook(lambda m, i, o: got.append(o))
            try:
                with blocks(self.body, 0, self.split):
                    self.body(input_ids=ids.to(dev), attention_mask=att.to(dev), use_cache=False)
            finally:
                hook.remove()
            hs = got[0][0] if isinstance(got[0], tuple) else got[0]  # output of block split-1, before the final norm
            out += [hs[r, :len(q)].float().cpu() for r, q in enumerate(chunk)]
        return out

    def states(self, seqs: list[list[int]]) -> list[torch.Tensor]:
        """Frozen hidden states (len(seq), d) of each sequence, from disk or computed now (and stored)."""
        t0 = time.perf_counter()
        paths = [self._path(q) for q in seqs]
        missing = [i for i, p in enumerate(paths) if not p.exists()]
        got: dict[int, torch.Tensor] = {}
        if missing:
            was = self.model.training
            self.model.eval()
            for i, h in zip(missing, self._compute([seqs[i] for i in missing])):
                buf = io.BytesIO()
                torch.save(h, buf)
                atomic_write(paths[i], buf.getvalue())
                got[i] = h
            self.model.train(was)
        for i, p in enumerate(paths):
            if i not in got:
                got[i] = torch.load(p, weights_only=True)
        self.seconds += time.perf_counter() - t0
        return [got[i] for i in range(len(seqs))]

    def attach(self, batch: Batch) -> Batch:
        """Put the frozen states of the batch's sequences (right-padded with zeros) on ``batch``."""
        lens = batch.attention_mask.sum(1).tolist()
        seqs = [batch.input_ids[r, :n].tolist() for r, n in enumerate(lens)]
        hs = self.states(seqs)
        out = torch.zeros((len(seqs), batch.input_ids.shape[1], hs[0].shape[1]))
        for r, h in enumerate(hs):
            out[r, :len(h)] = h
        batch.frozen, batch.frozen_from = out, self.split
        return batch


def output_weight(model) -> torch.Tensor:
    return model.get_output_embeddings().weight


def valid_logits(model, batch: Batch, full: bool) -> L.ValidLogits:
    """The fast path: hidden states of response positions projected only onto their valid tokens."""
    h = response_hidden(model, batch)
    return L.project_valid(h, output_weight(model), batch.valid_tokens, batch.valid_mask, batch.target_index,
                           full=full, first=batch.first)


def sequence_logprob(model, batch: Batch) -> torch.Tensor:
    """log pi(y | x) of every sequence of the batch under the full softmax (for S-DPO)."""
    v = valid_logits(model, batch, full=True)
    per = v.target_logit().float() - v.lse_all
    return torch.zeros(len(batch.items), device=per.device).index_add(0, batch.b_idx, per)


def add_lora(model, cfg: TrainConfig):
    from peft import LoraConfig, get_peft_model

    n = len(model.get_decoder().layers)
    if cfg.lora_layers is not None and cfg.lora_layers > n:
        raise ValueError(f"lora_layers={cfg.lora_layers} but the model has {n} blocks")
    top = list(range(n - cfg.lora_layers, n)) if cfg.lora_layers else None
    lc = LoraConfig(r=cfg.lora_r, lora_alpha=cfg.lora_alpha, lora_dropout=cfg.lora_dropout,
                    target_modules=list(cfg.lora_targets), task_type="CAUSAL_LM", layers_to_transform=top)
    return get_peft_model(model, lc)


def trainable(model) -> list[torch.nn.Parameter]:
    return [p for p in model.parameters() if p.requires_grad]


# ============================================================================ one step


class LossComputer:
    """Computes the configured loss on a batch and the quantities worth logging."""

    def __init__(self, cfg: TrainConfig):
        self.cfg = cfg
        self.ats = L.ATSController(cfg.eta, cfg.ats_root, cfg.ats_positions, cfg.ats_clamp, cfg.ats_ema) \
            if cfg.loss == "msl-ats" else None
        self.calls = 0  # batches seen: gradient norms are logged on every log_grad_norms-th
        self.grad_norm_seconds = 0.0  # time of those extra backward passes (kept out of train_seconds)

    def needs_full(self) -> bool:
        return self.cfg.loss in ("lml", "lml-tau") or self.cfg.log_decomposition or self.cfg.log_grad_norms

    def __call__(self, model, batch: Batch, ref_model=None) -> tuple[torch.Tensor, dict]:
        cfg = self.cfg
        if cfg.loss == "sdpo":
            return self.sdpo(model, batch, ref_model)
        if cfg.loss == "lml-tau":
            h = response_hidden(model, batch)
            logits = h @ output_weight(model).to(h.dtype).T
            loss = L.lml_loss_dense(logits, batch.targets, tau=cfg.tau)
            v = L.project_valid(h, output_weight(model), batch.valid_tokens, batch.valid_mask, batch.target_index,
                                full=True, first=batch.first)
        else:
            v = valid_logits(model, batch, full=self.needs_full())
            tau = cfg.tau
            if cfg.loss == "msl-ats":
                tau = self.ats.step(v)
            if cfg.loss == "lml":
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
                from .analysis import component_grad_norms

                t0 = time.perf_counter()
                log.update(component_grad_norms(l1, l2, trainable(model)))
                self.grad_norm_seconds += time.perf_counter() - t0
        log["w_mean"] = float(np.nanmean(L.gradient_weights(v, tau=log.get("tau", 1.0)).cpu().numpy()))
        self.calls += 1
        return loss, log

    def sdpo(self, model, batch: Batch, ref_model) -> tuple[torch.Tensor, dict]:
        logp = sequence_logprob(model, batch)
        was_training = model.training
        with torch.no_grad():  # the reference is a frozen model: its adapter, no dropout
            model.set_adapter("ref")
            model.eval()
            ref = sequence_logprob(model, batch)
            model.set_adapter("default")
            model.train(was_training)
        r = logp - ref
        pos = torch.stack([r[p] for p, _ in batch.group])
        neg = torch.stack([r[n] for _, n in batch.group])
        loss = L.sdpo_loss(pos, neg, beta=self.cfg.sdpo_beta)
        return loss, {"loss": loss.item(), "margin": float((pos[:, None] - neg).detach().mean())}


# ============================================================================ the run


def set_seed(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


class Recommender:
    """Everything a run needs, built once: dataset, tokenizer, trie, prompt encoder."""

    def __init__(self, cfg: TrainConfig):
        from .models import load_tokenizer

        self.cfg = cfg
        self.ds = load_dataset(cfg.dataset)
        self.tok = load_tokenizer(cfg.model if cfg.model in ("smollm2-135m", "tiny") else cfg.model)
        self.trie = ItemTrie.from_titles(self.ds.items, self.tok)
        self.encoder = PromptEncoder(self.tok, self.trie, self.ds.items, self.ds.domain, cfg.max_history)

    def load_model(self, adapter: str | Path | None = None, trainable_adapter: bool = False):
        from .models import load_llm

        cfg = self.cfg
        model, _ = load_llm(cfg.model, device=cfg.device, dtype=cfg.dtype, layers=cfg.layers, seed=cfg.seed)
        if adapter is None:
            return add_lora(model, cfg)
        from peft import PeftModel

        return PeftModel.from_pretrained(model, str(adapter), is_trainable=trainable_adapter).to(cfg.device)


def train(config: TrainConfig | dict, run_dir: str | Path | None = None, progress: bool = True,
          stop_after_epoch: int | None = None, evaluate_fn=None) -> Path:
    """Train (or resume, or find in the run cache) and return the run directory.

    ``stop_after_epoch`` simulates an interruption (tests); ``evaluate_fn(rec,
    model, split, n_users, beams) -> ranks`` overrides validation (default:
    constrained beam search, :func:`llmrec.evaluate.rank_users`).
    """
    from accelerate import Accelerator
    from tqdm.auto import tqdm

    cfg = config if isinstance(config, TrainConfig) else TrainConfig.from_dict(config)
    run_dir = Path(run_dir) if run_dir else runs.run_dir_for(cfg.to_dict())
    if runs.is_done(run_dir):
        return run_dir
    run_dir.mkdir(parents=True, exist_ok=True)
    runs.write_json(run_dir / "config.json", cfg.to_dict())
    acc = Accelerator(cpu=cfg.device == "cpu", gradient_accumulation_steps=cfg.grad_accum,
                      mixed_precision="bf16" if cfg.dtype in ("bf16", "bfloat16") and cfg.device != "cpu" else "no")
    set_seed(cfg.seed)
    rec = Recommender(cfg)
    train_df = sample_windows(rec.ds.train, cfg.n_train, seed=cfg.seed)
    examples = rec.encoder.encode_frame(train_df)
    if cfg.loss == "sdpo":
        ref_dir = _adapter_dir(cfg.sdpo_ref)
        model = rec.load_model(ref_dir, trainable_adapter=True)
        model.load_adapter(str(ref_dir), adapter_name="ref")
        model.set_adapter("default")
    else:
        model = rec.load_model()
    opt = torch.optim.AdamW(trainable(model), lr=cfg.lr, weight_decay=cfg.weight_decay)
    # No DDP wrapper: the loss reaches into the decoder (no LM head), so LoRA gradients are averaged
    # across processes by hand after each backward (they are a few hundred thousand numbers).
    model = model.to(acc.device)
    opt = acc.prepare(opt)
    compute = LossComputer(cfg)
    frozen = FrozenPrefix.of(model, cfg)
    evaluate_fn = evaluate_fn or _default_validation

    state = {"epoch": 0, "step": 0, "best_ndcg5": -1.0, "best_epoch": None, "seconds": 0.0, "history": []}
    last = _latest_checkpoint(run_dir)
    if last is not None:  # resume exactly at the last finished epoch
        state = _load_checkpoint(last, acc.unwrap_model(model), opt)
        if compute.ats is not None:
            compute.ats.load_state_dict(state["ats"])
    lengths = [len(e.input_ids) for e in examples]
    rank, world = acc.process_index, acc.num_processes
    for epoch in range(state["epoch"], cfg.epochs):
        batches = length_grouped_batches(lengths, cfg.batch_size * world, cfg.seed, epoch)
        if cfg.max_steps:
            batches = batches[: cfg.max_steps * cfg.grad_accum]
        model.train()
        t0, f0, g0 = time.perf_counter(), frozen.seconds if frozen is not None else 0.0, compute.grad_norm_seconds
        bar = tqdm(batches, desc=f"epoch {epoch + 1}/{cfg.epochs} [{cfg.loss}]", disable=not (progress and acc.is_main_process))
        for idx in bar:
            mine = idx[rank::world] if world > 1 else idx  # same global batch, split over processes
            exs = [examples[i] for i in mine]
            if cfg.loss == "sdpo":
                batch = _sdpo_batch(exs, rec, cfg, epoch, mine)
            else:
                batch = collate(exs, rec.trie, rec.tok.pad_token_id)
            if frozen is not None:
                frozen.attach(batch)
            batch.to(acc.device)
            with acc.accumulate(model):
                loss, log = compute(model, batch)
                acc.backward(loss)
                if world > 1:
                    _average_gradients(model, world)
                opt.step()
                opt.zero_grad()
            state["step"] += 1
            if acc.is_main_process and state["step"] % cfg.log_every == 0:
                runs.append_log(run_dir, {"epoch": epoch, "step": state["step"], **log})
            bar.set_postfix(loss=f"{log['loss']:.3f}", **({"tau": f"{log['tau']:.2f}"} if "tau" in log else {}))
        frozen_s = (frozen.seconds if frozen is not None else 0.0) - f0  # the one-off frozen pass, shared by runs
        grad_norm_s = compute.grad_norm_seconds - g0  # Figure 3's logging, not training
        seconds = time.perf_counter() - t0 - frozen_s - grad_norm_s
        state["seconds"] += seconds
        ndcg5 = None
        if cfg.validate:
            model.eval()
            ranks = evaluate_fn(rec, acc.unwrap_model(model), "valid", cfg.n_valid_users, cfg.valid_beams)
            from .metrics import ndcg_at_k

            ndcg5 = float(ndcg_at_k(ranks, 5).mean())
        state["history"].append({"epoch": epoch, "train_seconds": seconds, "frozen_seconds": frozen_s,
                                 "grad_norm_seconds": grad_norm_s,
                                 "steps": len(batches), "valid_ndcg@5": ndcg5})
        if acc.is_main_process:
            runs.append_log(run_dir, {"epoch": epoch, "event": "epoch_end", "train_seconds": seconds,
                                      "valid_ndcg@5": ndcg5, "peak_rss_mb": peak_rss_mb()})
            if ndcg5 is None or ndcg5 > state["best_ndcg5"]:
                state["best_ndcg5"], state["best_epoch"] = (ndcg5 if ndcg5 is not None else -1.0), epoch
                _save_adapter(acc.unwrap_model(model), run_dir / "adapter")
        state["epoch"] = epoch + 1
        if compute.ats is not None:
            state["ats"] = compute.ats.state_dict()
        if acc.is_main_process:
            _save_checkpoint(run_dir / "checkpoints" / f"epoch-{epoch + 1}", acc.unwrap_model(model), opt, state)
        acc.wait_for_everyone()
        if stop_after_epoch is not None and epoch + 1 >= stop_after_epoch:
            return run_dir
    if acc.is_main_process:
        n_steps = sum(h["steps"] for h in state["history"])
        runs.write_json(run_dir / "done.json", {
            "best_epoch": state["best_epoch"], "best_valid_ndcg@5": state["best_ndcg5"],
            "train_seconds": state["seconds"], "seconds_per_step": state["seconds"] / max(n_steps, 1),
            "steps": n_steps, "peak_rss_mb": peak_rss_mb(), "world_size": world,
            "n_train": len(examples), "history": state["history"]})
    acc.wait_for_everyone()
    return run_dir


def _average_gradients(model, world: int) -> None:
    """All-reduce the trainable gradients and divide by the number of processes (what DDP does)."""
    import torch.distributed as dist

    grads = [p.grad for p in trainable(model) if p.grad is not None]
    flat = torch.cat([g.reshape(-1) for g in grads])
    dist.all_reduce(flat)
    flat /= world
    offset = 0
    for g in grads:
        g.copy_(flat[offset:offset + g.numel()].view_as(g))
        offset += g.numel()


def _default_validation(rec, model, split, n_users, beams):
    from .evaluate import rank_users

    return rank_users(rec, model, split, n_users=n_users, mode="beam", beams=beams)["ranks"]


def _save_adapter(model, path: Path) -> None:
    """Save the LoRA adapter atomically (temporary folder + rename)."""
    import shutil
    import tempfile

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=path.parent, prefix=".adapter."))
    model.save_pretrained(str(tmp), selected_adapters=["default"])
    if path.exists():
        shutil.rmtree(path)
    os.replace(tmp, path)


def _save_checkpoint(path: Path, model, opt, state: dict) -> None:
    """Adapter weights, optimiser, RNG states and the loop state, written atomically (no base weights)."""
    import shutil
    import tempfile

    from peft import get_peft_model_state_dict

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}."))
    rng = {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate()}
    if torch.cuda.is_available():
        rng["cuda"] = torch.cuda.get_rng_state_all()
    torch.save({"adapter": get_peft_model_state_dict(model), "optimizer": opt.state_dict(), "rng": rng},
               tmp / "checkpoint.pt")
    runs.write_json(tmp / "state.json", state)
    if path.exists():
        shutil.rmtree(path)
    os.replace(tmp, path)


def _load_checkpoint(path: Path, model, opt) -> dict:
    from peft import set_peft_model_state_dict

    ck = torch.load(path / "checkpoint.pt", weights_only=False)
    set_peft_model_state_dict(model, ck["adapter"])
    opt.load_state_dict(ck["optimizer"])
    torch.set_rng_state(ck["rng"]["torch"])
    np.random.set_state(ck["rng"]["numpy"])
    random.setstate(ck["rng"]["python"])
    if "cuda" in ck["rng"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(ck["rng"]["cuda"])
    return runs.read_json(path / "state.json")


def _adapter_dir(p: str | Path) -> Path:
    p = Path(p)
    if (p / "adapter" / "adapter_config.json").exists():
        return p / "adapter"
    if (p / "adapter_config.json").exists():
        return p
    raise FileNotFoundError(f"{p}: no LoRA adapter here (expected a run directory or an adapter folder)")


def _latest_checkpoint(run_dir: Path) -> Path | None:
    cks = sorted((run_dir / "checkpoints").glob("epoch-*"), key=lambda p: int(p.name.split("-")[1]))
    cks = [c for c in cks if (c / "state.json").exists()]
    return cks[-1] if cks else None


def _sdpo_batch(exs: list[Example], rec: Recommender, cfg: TrainConfig, epoch: int, idx: list[int]) -> Batch:
    """Positive + ``sdpo_negatives`` uniformly sampled other items per window, seeded per (epoch, window)."""
    items = rec.trie.sequences
    ids = np.asarray(sorted(items))
    rows, group = [], []
    for e, i in zip(exs, idx):
        rng = np.random.default_rng([cfg.seed, epoch, i])
        negs = []
        while len(negs) < cfg.sdpo_negatives:
            c = int(ids[rng.integers(len(ids))])
            if c != e.target and c not in negs:
                negs.append(c)
        prompt = e.input_ids[: e.prompt_len]
        start = len(rows)
        rows.append(e)
        rows += [Example(prompt + list(items[c]), e.prompt_len, c) for c in negs]
        group.append((start, list(range(start + 1, start + 1 + len(negs)))))
    batch = collate(rows, rec.trie, rec.tok.pad_token_id)
    batch.group = [(p, torch.tensor(n)) for p, n in group]
    return batch


def steps_per_epoch(n: int, batch_size: int) -> int:
    return math.ceil(n / batch_size)
