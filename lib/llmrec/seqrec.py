"""Classic sequential recommenders (SASRec, GRU4Rec) trained with CE, BCE, BPR, sampled softmax or SCE.

The SCE paper's question: is an LLM recommender better because it is an LLM, or
because it is trained with a full-softmax cross-entropy while the classic
baselines get BCE/BPR with one negative? Here the classic models are trained
with every loss of :mod:`llmrec.losses` on the same windows and evaluated with
the same protocol as the LLM runs (full ranking of the target among *all*
items, history items included, pessimistic ties).

Models score a user state against the shared item embedding table,
s(u, i) = <h_u, e_i>, with id 0 as padding. Training uses every position of a
window's sequence (history + target): position t predicts item t + 1.

* ``ce``: full softmax over all items (:func:`llmrec.losses.ce_loss`);
* ``bce`` / ``bpr``: one negative per position drawn from the items not in the
  window's sequence (:func:`llmrec.samplers.unseen`), as in the SASRec code;
* ``sampled-softmax``: K negatives uniform over all items;
* ``sce``: the same K negatives with the normalising term scaled by alpha
  (:func:`llmrec.losses.sce_loss`). The K negatives are drawn per training
  sequence and shared by its positions, so the scores are one batched matrix
  product of size (batch x positions x K) instead of (positions x items).

Entry points: :func:`train_seqrec`, :func:`evaluate_seqrec`,
:data:`SEQREC_PROFILES` / :func:`seqrec_config`, :func:`bench_seqrec`, and the
notebook helpers :func:`run_seqrec`, :func:`compare_losses`, :func:`sce_grid`,
:func:`plot_sce_grid`, :func:`popularity_summary`.
"""

from __future__ import annotations

import io
import json
import math
import os
import resource
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from . import runs
from .data import atomic_write, load_dataset, sample_windows
from .losses import bce_loss, bpr_loss, ce_loss, sampled_softmax_loss, sce_loss
from .metrics import rank_of_target, summarize
from .samplers import item_counts, uniform, unseen

__all__ = [
    "DEFAULT_CONFIG", "SEQREC_PROFILES", "LOSSES", "MODELS", "seqrec_config", "profile_dataset",
    "SASRec", "GRU4Rec", "Caser", "build_model", "train_seqrec", "evaluate_seqrec", "load_model", "score_histories",
    "popularity_ranks", "popularity_summary", "run_seqrec", "compare_losses", "sce_grid", "sce_grid_values",
    "plot_sce_grid", "bench_seqrec", "PeakMemory",
]

LOSSES = ("ce", "bce", "bpr", "sampled-softmax", "sce")
MODELS = ("sasrec", "gru4rec", "caser")

# The SCE authors' SASRec setting (architecture, optimiser, alpha, K). Epochs and
# patience are ours: the authors train to convergence with early stopping.
DEFAULT_CONFIG: dict = {
    "dataset": "toy",
    "model": "sasrec",
    "loss": "ce",
    "alpha": 100.0,
    "negatives": 500,
    "epochs": 200,
    "batch_size": 512,
    "lr": 5e-4,
    "weight_decay": 0.0,
    "hidden": 64,
    "blocks": 2,  # transformer blocks (SASRec) or GRU layers (GRU4Rec)
    "heads": 1,
    "dropout": 0.6,
    "maxlen": 50,
    "patience": 10,  # epochs without a better validation NDCG@10; None = never stop early
    "seed": 0,
    "device": "cpu",
    "max_train_windows": None,  # None = all training windows
    "max_valid_windows": None,  # validation windows used for early stopping (None = all)
}

# Overrides of DEFAULT_CONFIG per profile (see DESIGN.md "Profiles").
SEQREC_PROFILES: dict[str, dict] = {
    # synthetic catalogue, tiny model: a run takes a second or two
    "smoke": {"dataset": "synthetic", "hidden": 32, "blocks": 1, "dropout": 0.2, "maxlen": 10,
              "batch_size": 64, "lr": 5e-3, "epochs": 12, "patience": 4, "negatives": 50},
    # real Toy / Books on 2 CPU cores: the authors' architecture (2 blocks, 1 head, hidden 64) with
    # maxlen 10 (histories have at most 10 items, so nothing is cut), a larger learning rate, less
    # dropout and at most 12 epochs (patience 3); Books is subsampled to 10,000 of its 30,677 training windows
    # (Toy has 5,000)
    "quick": {"maxlen": 10, "lr": 3e-3, "dropout": 0.2, "epochs": 12, "patience": 3, "max_train_windows": 10000},
    # the authors' setting
    "full": {},
}

# The SCE grid of the chapter, per profile: K negatives and alpha (alpha = 1 is sampled softmax).
SCE_GRIDS = {
    "smoke": {"K": (10, 50), "alpha": (1.0, 10.0)},
    "quick": {"K": (10, 100, 500), "alpha": (1.0, 10.0, 100.0)},
    "full": {"K": (10, 100, 500), "alpha": (1.0, 10.0, 100.0)},
}

EVAL_BATCH = 1024


def seqrec_config(profile: str = "quick", **overrides) -> dict:
    """The full configuration of a profile (DEFAULT_CONFIG < SEQREC_PROFILES[profile] < overrides)."""
    if profile not in SEQREC_PROFILES:
        raise ValueError(f"unknown profile {profile!r}; choose one of {sorted(SEQREC_PROFILES)}")
    return _complete({**SEQREC_PROFILES[profile], **overrides})


def profile_dataset(profile: str, dataset: str) -> str:
    """The dataset a profile runs on: ``smoke`` always uses the synthetic catalogue."""
    return "synthetic" if profile == "smoke" else dataset


def sce_grid_values(profile: str) -> dict:
    return dict(SCE_GRIDS[profile])


def _complete(config: dict) -> dict:
    unknown = set(config) - set(DEFAULT_CONFIG)
    if unknown:
        raise ValueError(f"unknown seqrec config key(s) {sorted(unknown)}; known: {sorted(DEFAULT_CONFIG)}")
    cfg = {**DEFAULT_CONFIG, **config}
    if cfg["model"] not in MODELS:
        raise ValueError(f"model must be one of {MODELS}, got {cfg['model']!r}")
    if cfg["loss"] not in LOSSES:
        raise ValueError(f"loss must be one of {LOSSES}, got {cfg['loss']!r}")
    if cfg["loss"] in ("sampled-softmax", "sce") and int(cfg["negatives"]) < 1:
        raise ValueError("sampled losses need negatives >= 1")
    if cfg["loss"] == "sce" and float(cfg["alpha"]) <= 0:
        raise ValueError("alpha must be positive")
    return json.loads(json.dumps(cfg))  # plain JSON types, as stored in config.json


# ============================================================================ data


def _left_pad(seqs, width: int) -> np.ndarray:
    """(n, width) int64 array of the last ``width`` ids of each sequence, left-padded with 0."""
    out = np.zeros((len(seqs), width), dtype=np.int64)
    for r, s in enumerate(seqs):  # data preparation, once per run
        s = s[-width:]
        if len(s):
            out[r, width - len(s):] = s
    return out


def _train_sequences(df, maxlen: int) -> np.ndarray:
    """(n, W + 1) left-padded history + target (W = min(maxlen, longest history))."""
    seqs = [list(h) + [int(t)] for h, t in zip(df["history"], df["target"])]
    width = min(maxlen, max(len(s) for s in seqs) - 1)
    return _left_pad(seqs, width + 1)


def _histories(df, maxlen: int) -> np.ndarray:
    width = min(maxlen, max(1, max(len(h) for h in df["history"])))
    return _left_pad([list(h) for h in df["history"]], width)


# ============================================================================ models


class SASRec(nn.Module):
    """Self-attentive sequential recommendation (Kang & McAuley 2018), as in the reference PyTorch code.

    Learned positional embeddings counted from the most recent item (so left
    padding of any width gives the same result), causal self-attention that
    also ignores padding, pre-layer-norm blocks, output scored against the item
    embedding table.
    """

    def __init__(self, n_items: int, hidden: int = 64, blocks: int = 2, heads: int = 1, dropout: float = 0.6,
                 maxlen: int = 50):
        super().__init__()
        self.n_items, self.hidden, self.maxlen, self.heads = n_items, hidden, maxlen, heads
        self.item_emb = nn.Embedding(n_items + 1, hidden, padding_idx=0)
        self.pos_emb = nn.Embedding(maxlen, hidden)
        self.emb_dropout = nn.Dropout(dropout)
        self.attn_norms = nn.ModuleList(nn.LayerNorm(hidden, eps=1e-8) for _ in range(blocks))
        self.attns = nn.ModuleList(nn.MultiheadAttention(hidden, heads, dropout=dropout, batch_first=True)
                                   for _ in range(blocks))
        self.ffn_norms = nn.ModuleList(nn.LayerNorm(hidden, eps=1e-8) for _ in range(blocks))
        self.ffns = nn.ModuleList(
            nn.Sequential(nn.Linear(hidden, hidden), nn.ReLU(), nn.Dropout(dropout), nn.Linear(hidden, hidden),
                          nn.Dropout(dropout))
            for _ in range(blocks))
        self.last_norm = nn.LayerNorm(hidden, eps=1e-8)
        _init_weights(self)

    def forward(self, seq: torch.Tensor) -> torch.Tensor:
        """(B, W) left-padded item ids -> (B, W, hidden) states; position t has seen items <= t."""
        B, W = seq.shape
        if W > self.maxlen:
            raise ValueError(f"sequence width {W} exceeds maxlen {self.maxlen}")
        keep = (seq != 0).unsqueeze(-1)
        x = self.item_emb(seq) * math.sqrt(self.hidden)
        x = x + self.pos_emb(torch.arange(self.maxlen - W, self.maxlen, device=seq.device))[None]
        x = self.emb_dropout(x) * keep
        causal = torch.ones(W, W, dtype=torch.bool, device=seq.device).triu(1)
        blocked = causal[None] | (seq == 0)[:, None, :]  # future keys and padding keys
        blocked = blocked & ~torch.eye(W, dtype=torch.bool, device=seq.device)[None]  # a row never empty
        blocked = blocked.repeat_interleave(self.heads, dim=0)
        for norm, attn, fnorm, ffn in zip(self.attn_norms, self.attns, self.ffn_norms, self.ffns):
            q = norm(x)
            a, _ = attn(q, x, x, attn_mask=blocked, need_weights=False)
            x = q + a
            x = fnorm(x)
            x = (x + ffn(x)) * keep
        return self.last_norm(x)


class GRU4Rec(nn.Module):
    """GRU4Rec (Hidasi et al.) for next-item prediction: embedding, GRU, dot product with item embeddings."""

    def __init__(self, n_items: int, hidden: int = 64, blocks: int = 1, dropout: float = 0.2, **_):
        super().__init__()
        self.n_items, self.hidden = n_items, hidden
        self.item_emb = nn.Embedding(n_items + 1, hidden, padding_idx=0)
        self.emb_dropout = nn.Dropout(dropout)
        self.gru = nn.GRU(hidden, hidden, num_layers=blocks, batch_first=True,
                          dropout=dropout if blocks > 1 else 0.0)
        _init_weights(self)

    def forward(self, seq: torch.Tensor) -> torch.Tensor:
        """(B, W) left-padded ids -> (B, W, hidden); the GRU sees each sequence from its first real item."""
        B, W = seq.shape
        pads = (seq == 0).sum(1, keepdim=True)
        ar = torch.arange(W, device=seq.device)[None]
        to_right = (ar + pads) % W  # rotate left padding to the right end
        out, _ = self.gru(self.emb_dropout(self.item_emb(seq.gather(1, to_right))))
        back = ((ar - pads) % W).unsqueeze(-1).expand(-1, -1, self.hidden)
        return out.gather(1, back) * (seq != 0).unsqueeze(-1)


class Caser(nn.Module):
    """Caser (Tang & Wang 2018): convolutions over the "image" of the last ``window`` item embeddings.

    Horizontal filters of heights 1..window (``n_h`` each, ReLU, max over time)
    catch union-level and point-level sequential patterns, ``n_v`` vertical
    filters take weighted sums over the window; a fully connected layer maps both
    to the state h_t. Applied at every position with the window ending at that
    position (left zero-padded), so it is causal and trains on every position
    like SASRec; no user embedding (test users are windows, not known users).
    """

    def __init__(self, n_items: int, hidden: int = 64, window: int = 5, n_h: int = 16, n_v: int = 4,
                 dropout: float = 0.2, **_):
        super().__init__()
        self.n_items, self.hidden, self.window = n_items, hidden, window
        self.item_emb = nn.Embedding(n_items + 1, hidden, padding_idx=0)
        self.conv_h = nn.ModuleList(nn.Conv2d(1, n_h, (h, hidden)) for h in range(1, window + 1))
        self.conv_v = nn.Conv2d(1, n_v, (window, 1))
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(n_h * window + n_v * hidden, hidden)
        _init_weights(self)

    def forward(self, seq: torch.Tensor) -> torch.Tensor:
        """(B, W) left-padded ids -> (B, W, hidden); position t sees items t-window+1..t."""
        B, W = seq.shape
        e = self.item_emb(seq)  # (B, W, d); padding embeds to 0
        e = nn.functional.pad(e, (0, 0, self.window - 1, 0))  # zero rows before the first item
        img = e.unfold(1, self.window, 1).permute(0, 1, 3, 2).reshape(B * W, 1, self.window, self.hidden)
        horiz = [torch.relu(conv(img)).squeeze(3).amax(2) for conv in self.conv_h]  # (B*W, n_h) each
        vert = self.conv_v(img).reshape(B * W, -1)  # (B*W, n_v * d)
        h = torch.relu(self.fc(self.dropout(torch.cat(horiz + [vert], 1))))
        return h.view(B, W, self.hidden) * (seq != 0).unsqueeze(-1)


def _init_weights(model: nn.Module) -> None:
    """Xavier-normal for matrices (as the reference SASRec code), zero padding embedding."""
    for name, p in model.named_parameters():
        if p.dim() >= 2 and "norm" not in name:
            nn.init.xavier_normal_(p)
    with torch.no_grad():
        model.item_emb.weight[0].zero_()


def build_model(cfg: dict, n_items: int) -> nn.Module:
    if cfg["model"] == "sasrec":
        return SASRec(n_items, cfg["hidden"], cfg["blocks"], cfg["heads"], cfg["dropout"], cfg["maxlen"])
    if cfg["model"] == "caser":
        return Caser(n_items, cfg["hidden"], min(5, cfg["maxlen"]), dropout=cfg["dropout"])
    return GRU4Rec(n_items, cfg["hidden"], cfg["blocks"], cfg["dropout"])


# ============================================================================ losses


def _batch_loss(model: nn.Module, seqs: torch.Tensor, cfg: dict, n_items: int, gen: torch.Generator,
                device: torch.device) -> torch.Tensor:
    """Mean loss over every labelled position of a batch of (B, W + 1) sequences (on CPU)."""
    inp, lab = seqs[:, :-1], seqs[:, 1:]
    m = lab != 0
    h = model(inp.to(device))  # (B, W, d)
    E = model.item_emb.weight
    lab_d, m_d = lab.to(device), m.to(device)
    hp = h[m_d]  # (P, d)
    tp = lab_d[m_d]
    loss = cfg["loss"]
    if loss == "ce":
        return ce_loss(hp @ E[1:].T, tp - 1)
    # F.embedding, not E[idx]: the backward of advanced indexing accumulates in a
    # thread-dependent order on CPU, which would break bitwise-exact resume
    pos = (hp * F.embedding(tp, E)).sum(-1)
    if loss in ("bce", "bpr"):
        neg = unseen(seqs, n_items, inp.shape[1], gen).to(device)[m_d]  # one unseen item per position
        neg_s = (hp * F.embedding(neg, E)).sum(-1, keepdim=True)
        return bce_loss(pos, neg_s) if loss == "bce" else bpr_loss(pos, neg_s)
    neg = uniform(n_items, (len(seqs), int(cfg["negatives"])), gen).to(device)  # K per sequence
    neg_s = torch.bmm(h, F.embedding(neg, E).transpose(1, 2))[m_d]  # (P, K)
    if loss == "sampled-softmax":
        return sampled_softmax_loss(pos, neg_s)
    return sce_loss(pos, neg_s, alpha=float(cfg["alpha"]))


# ============================================================================ memory


class PeakMemory:
    """Peak memory of a code block.

    CUDA: ``torch.cuda.max_memory_allocated`` (bytes held by tensors).
    CPU: the peak resident set size (RSS) above the RSS at entry, polled from
    ``/proc/self/statm`` every ``interval`` seconds by a background thread
    (torch's CPU allocator bypasses ``tracemalloc``); where /proc is missing,
    the growth of ``resource.getrusage().ru_maxrss`` (0 if the process peaked
    higher before). ``method`` says which was used. Memory the process already
    holds (freed by an earlier run in the same process) is reused without
    growing RSS, so compare configurations in fresh processes, as
    :func:`bench_seqrec` does.
    """

    def __init__(self, device="cpu", interval: float = 0.005):
        self.device = torch.device(device)
        self.interval = interval
        self.peak_mb = 0.0
        self.method = ""
        self._thread = None

    @staticmethod
    def _rss() -> int | None:
        try:
            with open("/proc/self/statm") as f:
                return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
        except (OSError, ValueError, IndexError):
            return None

    def __enter__(self):
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
            self._base = torch.cuda.memory_allocated(self.device)
            self.method = "torch.cuda.max_memory_allocated above the allocation at start"
            return self
        self._base = self._rss()
        if self._base is None:
            self._base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
            self.method = "ru_maxrss growth (process peak RSS; 0 if the process peaked higher before)"
            return self
        self.method = f"peak RSS above RSS at start, polled from /proc/self/statm every {self.interval * 1000:g} ms"
        self._max = self._base
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)
        self._thread.start()
        return self

    def _poll(self):
        while not self._stop.is_set():
            r = self._rss()
            if r is not None and r > self._max:
                self._max = r
            self._stop.wait(self.interval)

    def peak_so_far(self) -> float:
        """Peak in MB since entry (the block may still be running)."""
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            peak = torch.cuda.max_memory_allocated(self.device) - self._base
        elif self.method.startswith("ru_maxrss"):
            peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - self._base
        else:
            r = self._rss()
            self._max = max(self._max, r or 0)
            peak = self._max - self._base
        self.peak_mb = max(peak, 0) / 2**20
        return self.peak_mb

    def __exit__(self, *exc):
        if getattr(self, "_thread", None) is not None:
            self._stop.set()
            self._thread.join()
            self._thread = None
        self.peak_so_far()
        return False


# ============================================================================ training


def _save_torch(path: Path, obj) -> None:
    buf = io.BytesIO()
    torch.save(obj, buf)
    atomic_write(path, buf.getvalue())


def _prepare_run_dir(cfg: dict, run_dir: Path) -> bool:
    """Write/check config.json. Returns True when the run is finished for this config (run cache)."""
    cfg_path = run_dir / "config.json"
    if cfg_path.exists():
        old = runs.read_json(cfg_path)
        if old == cfg:
            return runs.is_done(run_dir)
        differ = {k for k in set(old) | set(cfg) if old.get(k) != cfg.get(k)}
        if differ != {"epochs"}:
            raise ValueError(f"{run_dir} holds a run with a different configuration (keys {sorted(differ)}); "
                             "only 'epochs' may change when a run is continued")
        # continue (or cut short) a run with another epoch budget: reopen it
        (run_dir / "done.json").unlink(missing_ok=True)
    runs.write_json(cfg_path, cfg)
    return False


def _rng_state(gen: torch.Generator, device: torch.device) -> dict:
    st = {"torch": torch.get_rng_state(), "sampler": gen.get_state()}
    if device.type == "cuda":
        st["cuda"] = torch.cuda.get_rng_state(device)
    return st


def _set_rng_state(st: dict, gen: torch.Generator, device: torch.device) -> None:
    torch.set_rng_state(st["torch"])
    gen.set_state(st["sampler"])
    if device.type == "cuda" and "cuda" in st:
        torch.cuda.set_rng_state(st["cuda"], device)


def train_seqrec(config: dict, run_dir: str | Path | None = None, progress: bool = True) -> Path:
    """Train one SASRec / GRU4Rec configuration; return its run directory.

    ``config``: keys of :data:`DEFAULT_CONFIG` (missing keys take their
    defaults). ``run_dir`` defaults to :func:`llmrec.runs.run_dir_for` of the
    completed config, so an identical configuration is trained once (run
    cache: a finished run returns immediately). An interrupted run resumes
    from its last epoch checkpoint (model, optimiser, RNG states, early-stopping
    state) and ends with the same weights as an uninterrupted run; calling again
    with a larger ``epochs`` continues a finished run.

    Writes ``log.jsonl`` (per epoch: epoch, loss, seconds, valid_seconds,
    valid ndcg@10), ``checkpoints/last.pt`` (every epoch), ``checkpoints/best.pt``
    (weights of the best validation epoch) and ``done.json`` (best_epoch,
    seconds_per_epoch, peak memory and how it was measured).
    """
    cfg = _complete(config)
    run_dir = Path(run_dir) if run_dir is not None else runs.run_dir_for(cfg)
    run_dir.mkdir(parents=True, exist_ok=True)
    if _prepare_run_dir(cfg, run_dir):
        return run_dir
    device = torch.device(cfg["device"])
    ds = load_dataset(cfg["dataset"])
    n_items = max(ds.items)
    train_df = sample_windows(ds.train, cfg["max_train_windows"], seed=cfg["seed"])
    valid_df = sample_windows(ds.valid, cfg["max_valid_windows"], seed=cfg["seed"])
    seqs = torch.from_numpy(_train_sequences(train_df, cfg["maxlen"]))
    valid_hist = _histories(valid_df, cfg["maxlen"])
    valid_target = valid_df["target"].to_numpy(np.int64)

    torch.manual_seed(cfg["seed"])
    model = build_model(cfg, n_items).to(device)
    opt = torch.optim.Adam(model.parameters(), lr=cfg["lr"], betas=(0.9, 0.98), weight_decay=cfg["weight_decay"])
    gen = torch.Generator().manual_seed(cfg["seed"])

    ckpt_dir = run_dir / "checkpoints"
    state = {"epoch": 0, "best_ndcg": -1.0, "best_epoch": 0, "bad_epochs": 0, "train_seconds": [],
             "peak_mb": 0.0}
    last = ckpt_dir / "last.pt"
    if last.exists():
        ck = torch.load(last, map_location=device, weights_only=False)
        model.load_state_dict(ck["model"])
        opt.load_state_dict(ck["optimizer"])
        _set_rng_state(ck["rng"], gen, device)
        state = ck["state"]
        kept = [r for r in runs.read_log(run_dir) if r.get("epoch", 0) <= state["epoch"]]
        atomic_write(run_dir / "log.jsonl", "".join(json.dumps(r) + "\n" for r in kept).encode())
    elif (run_dir / "log.jsonl").exists():
        (run_dir / "log.jsonl").unlink()

    patience = cfg["patience"]
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=cfg["epochs"], initial=min(state["epoch"], cfg["epochs"]),
                   desc=f"{cfg['model']}/{cfg['loss']} on {cfg['dataset']}")
    mem = PeakMemory(device).__enter__()  # peak over this session's epochs (max with earlier sessions)
    try:
        while state["epoch"] < cfg["epochs"] and not (patience and state["bad_epochs"] >= patience):
            epoch = state["epoch"] + 1
            model.train()
            order = torch.randperm(len(seqs), generator=gen)
            total, n_batches = 0.0, 0
            t0 = time.perf_counter()
            for start in range(0, len(seqs), cfg["batch_size"]):
                batch = seqs[order[start:start + cfg["batch_size"]]]
                loss = _batch_loss(model, batch, cfg, n_items, gen, device)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                total += float(loss.detach())
                n_batches += 1
            seconds = time.perf_counter() - t0
            t1 = time.perf_counter()
            ranks = _rank(model, valid_hist, valid_target, device)
            valid_seconds = time.perf_counter() - t1
            state["memory_method"] = mem.method
            ndcg = summarize(ranks)["ndcg@10"]
            state["epoch"] = epoch
            state["train_seconds"].append(seconds)
            state["peak_mb"] = max(state["peak_mb"], mem.peak_so_far())
            if ndcg > state["best_ndcg"]:
                state.update(best_ndcg=ndcg, best_epoch=epoch, bad_epochs=0)
                _save_torch(ckpt_dir / "best.pt", {"model": model.state_dict(), "epoch": epoch})
            else:
                state["bad_epochs"] += 1
            runs.append_log(run_dir, {"epoch": epoch, "loss": total / max(n_batches, 1), "seconds": seconds,
                                      "valid_seconds": valid_seconds, "valid_ndcg@10": ndcg})
            _save_torch(last, {"model": model.state_dict(), "optimizer": opt.state_dict(),
                               "rng": _rng_state(gen, device), "state": state, "epoch": epoch})
            if bar is not None:
                bar.update(1)
                bar.set_postfix(loss=f"{total / max(n_batches, 1):.4f}", ndcg10=f"{ndcg:.4f}")
    finally:
        mem.__exit__(None, None, None)
        if bar is not None:
            bar.close()
    secs = state["train_seconds"]
    runs.write_json(run_dir / "done.json", {
        "best_epoch": state["best_epoch"],
        "best_valid_ndcg@10": state["best_ndcg"],
        "epochs_run": state["epoch"],
        "stopped_early": bool(patience and state["bad_epochs"] >= patience and state["epoch"] < cfg["epochs"]),
        "seconds_per_epoch": float(np.mean(secs)) if secs else None,
        "seconds_total": float(np.sum(secs)),
        "peak_memory_mb": state["peak_mb"],
        "memory_method": state.get("memory_method", ""),
        "score_matrix_mb": _score_matrix_mb(cfg, seqs.shape[1] - 1, n_items),
        "n_train_windows": len(train_df),
        "n_train_positions": int((seqs[:, 1:] != 0).sum()),
        "n_valid_windows": len(valid_df),
        "n_params": sum(p.numel() for p in model.parameters()),
        "torch_threads": torch.get_num_threads(),
        "device": str(device),
    })
    return run_dir


def _score_matrix_mb(cfg: dict, width: int, n_items: int) -> float:
    """Size of a full batch's score matrix in float32 (forward only): B x W x scored items."""
    per_pos = {"ce": n_items, "bce": 2, "bpr": 2}.get(cfg["loss"], 1 + int(cfg["negatives"]))
    return cfg["batch_size"] * width * per_pos * 4 / 2**20


# ============================================================================ evaluation


@torch.no_grad()
def _scores(model: nn.Module, hist: np.ndarray, device) -> torch.Tensor:
    """(B, n_items) scores of items 1..n_items for left-padded histories (column j = item j + 1)."""
    h = model(torch.from_numpy(hist).to(device))[:, -1]
    return h @ model.item_emb.weight[1:].T


@torch.no_grad()
def _rank(model: nn.Module, hist: np.ndarray, target: np.ndarray, device) -> np.ndarray:
    model.eval()
    out = []
    for s in range(0, len(hist), EVAL_BATCH):
        sc = _scores(model, hist[s:s + EVAL_BATCH], device).float().cpu().numpy()
        out.append(rank_of_target(sc, target[s:s + EVAL_BATCH] - 1))
    return np.concatenate(out) if out else np.zeros(0, dtype=np.int64)


def load_model(run_dir: str | Path, which: str = "best") -> tuple[nn.Module, dict]:
    """The trained model of a run (``which="best"`` epoch, or ``"last"``) in eval mode, and its config."""
    run_dir = Path(run_dir)
    cfg = runs.read_json(run_dir / "config.json")
    ds = load_dataset(cfg["dataset"])
    model = build_model(cfg, max(ds.items)).to(cfg["device"])
    path = run_dir / "checkpoints" / f"{which}.pt"
    if not path.exists():
        path = run_dir / "checkpoints" / "last.pt"
    model.load_state_dict(torch.load(path, map_location=cfg["device"], weights_only=False)["model"])
    return model.eval(), cfg


def score_histories(model: nn.Module, histories, maxlen: int, device="cpu") -> np.ndarray:
    """(users, n_items) scores for a list of histories (column j = item j + 1)."""
    model.eval()
    import pandas as pd

    hist = _histories(pd.DataFrame({"history": list(histories)}), maxlen)
    return _scores(model, hist, device).float().cpu().numpy()


def evaluate_seqrec(run_dir: str | Path, split: str = "test", force: bool = False) -> dict:
    """Rank each window's target among ALL items by its score (history items included, pessimistic ties).

    Uses the best validation epoch. Stores ``{"summary", "user_ids", "ranks"}``
    under ``"<split>/full"`` in ``metrics.json`` and returns it (a stored entry
    is returned as is unless ``force``).
    """
    run_dir = Path(run_dir)
    key = f"{split}/full"
    if not force:
        stored = runs.load_metrics(run_dir).get(key)
        if stored is not None:
            return stored
    model, cfg = load_model(run_dir)
    df = load_dataset(cfg["dataset"]).split(split)
    ranks = _rank(model, _histories(df, cfg["maxlen"]), df["target"].to_numpy(np.int64), cfg["device"])
    entry = {"summary": summarize(ranks), "user_ids": df["user_id"].to_numpy().tolist(),
             "ranks": ranks.astype(int).tolist(), "n": int(len(ranks))}
    runs.save_metrics(run_dir, key, entry)
    return entry


def popularity_ranks(dataset: str, split: str = "test") -> np.ndarray:
    """Ranks under a popularity ranking (training interaction counts, pessimistic ties)."""
    ds = load_dataset(dataset)
    n_items = max(ds.items)
    counts = item_counts(ds.train, n_items).astype(np.float64)[1:]
    df = ds.split(split)
    t = counts[df["target"].to_numpy(np.int64) - 1]
    return (counts[None, :] >= t[:, None]).sum(1) - 1


def popularity_summary(dataset: str, split: str = "test") -> dict:
    return summarize(popularity_ranks(dataset, split))


# ============================================================================ notebook helpers


def run_seqrec(config: dict, split: str = "test", progress: bool = False) -> dict:
    """Train (or find in the run cache) and evaluate one configuration: a flat result row."""
    cfg = _complete(config)
    run_dir = train_seqrec(cfg, progress=progress)
    ev = evaluate_seqrec(run_dir, split)
    done = runs.read_json(run_dir / "done.json")
    row = {k: cfg[k] for k in ("dataset", "model", "loss")}
    if cfg["loss"] in ("sampled-softmax", "sce"):
        row.update(K=cfg["negatives"], alpha=cfg["alpha"] if cfg["loss"] == "sce" else 1.0)
    row.update(ev["summary"])
    row.update({k: done.get(k) for k in ("best_epoch", "epochs_run", "seconds_per_epoch", "peak_memory_mb",
                                         "score_matrix_mb")})
    row["run_dir"] = str(run_dir)
    return row


def compare_losses(profile: str, dataset: str, models=MODELS, losses=("ce", "bce", "bpr"), split: str = "test",
                   progress: bool = False, **overrides):
    """One row per (model, loss): test metrics, best epoch, seconds per epoch, peak memory."""
    import pandas as pd

    rows = [run_seqrec(seqrec_config(profile, dataset=dataset, model=m, loss=l, **overrides), split, progress)
            for m in models for l in losses]
    return pd.DataFrame(rows)


def sce_grid(profile: str, dataset: str, Ks=None, alphas=None, model: str = "sasrec", split: str = "test",
             progress: bool = False, **overrides):
    """SCE over K x alpha (alpha = 1 is sampled softmax); one row per cell."""
    import pandas as pd

    grid = sce_grid_values(profile)
    Ks, alphas = Ks or grid["K"], alphas or grid["alpha"]
    rows = []
    for K in Ks:
        for a in alphas:
            cfg = seqrec_config(profile, dataset=dataset, model=model, loss="sce", negatives=int(K), alpha=float(a),
                                **overrides)
            rows.append(run_seqrec(cfg, split, progress))
    return pd.DataFrame(rows)


def plot_sce_grid(grid, ce_ndcg: float | None = None, metric: str = "ndcg@10", title: str | None = None):
    """Metric vs K, one line per alpha; a dashed line for full-softmax CE."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.5, 3.8))
    for a, g in grid.groupby("alpha"):
        g = g.sort_values("K")
        label = "sampled softmax (α=1)" if a == 1 else f"SCE α={a:g}"
        ax.plot(g["K"], g[metric], marker="o", label=label)
    if ce_ndcg is not None:
        ax.axhline(ce_ndcg, ls="--", color="k", lw=1, label="full-softmax CE")
    ax.set_xscale("log")
    ks = sorted(grid["K"].unique())
    ax.set_xticks(ks, [str(int(k)) for k in ks])
    ax.minorticks_off()
    ax.set_xlabel("K uniform negatives per sequence")
    ax.set_ylabel(metric.upper())
    ax.set_title(title or "SASRec: sampled softmax and SCE vs full CE")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


# ============================================================================ benchmark


def _bench_child(cfg: dict) -> dict:
    """Train ``cfg`` in a temporary run directory of this (fresh) process; return done.json + RSS numbers."""
    load_dataset(cfg["dataset"])  # data in memory before the baseline is taken
    with tempfile.TemporaryDirectory(prefix="llmrec-bench-") as tmp:
        done = runs.read_json(train_seqrec(cfg, run_dir=tmp, progress=False) / "done.json")
    done["process_peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return done


def bench_seqrec(dataset: str = "books", device: str = "cpu", epochs: int = 2, profile: str = "quick",
                 K: int = 500, alpha: float = 100.0, fresh_process: bool = True, **overrides) -> dict:
    """Epoch time and peak memory of SASRec with full CE vs SCE (K, alpha), side by side in one call.

    Each loss trains ``epochs`` epochs (no early stopping) from the same seed
    in a temporary run directory, each in a fresh spawned process by default so
    that memory one run freed cannot hide the other's peak. Reported per loss:
    mean training seconds per epoch (validation excluded), ``peak_memory_mb``
    (peak RSS above the RSS once data and model are loaded, polled every 5 ms;
    on CUDA ``max_memory_allocated``; ``memory_method`` says which),
    ``process_peak_rss_mb`` (``ru_maxrss`` of that process), the float32 size of
    one batch's score matrix, and the CE / SCE ratios.
    """
    base = dict(dataset=dataset, device=device, epochs=epochs, patience=None, model="sasrec", **overrides)
    out = {"dataset": dataset, "device": device, "epochs": epochs, "profile": profile,
           "torch_threads": torch.get_num_threads(), "fresh_process": fresh_process}
    for name, extra in (("ce", {"loss": "ce"}), ("sce", {"loss": "sce", "negatives": K, "alpha": alpha})):
        cfg = seqrec_config(profile, **{**base, **extra})
        if fresh_process:
            import multiprocessing as mp
            from concurrent.futures import ProcessPoolExecutor

            with ProcessPoolExecutor(max_workers=1, mp_context=mp.get_context("spawn")) as pool:
                done = pool.submit(_bench_child, cfg).result()
        else:
            done = _bench_child(cfg)
        out[name] = {"loss": cfg["loss"], **({"K": K, "alpha": alpha} if name == "sce" else {}),
                     **{k: done[k] for k in ("seconds_per_epoch", "peak_memory_mb", "process_peak_rss_mb",
                                             "score_matrix_mb", "n_train_positions")}}
        out["memory_method"] = done["memory_method"]
    out["speedup_sce_vs_ce"] = out["ce"]["seconds_per_epoch"] / out["sce"]["seconds_per_epoch"]
    out["memory_ratio_ce_vs_sce"] = (out["ce"]["peak_memory_mb"] / out["sce"]["peak_memory_mb"]
                                     if out["sce"]["peak_memory_mb"] > 0 else None)
    return out
