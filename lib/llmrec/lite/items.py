"""The item LLM: every catalogue item's text -> one vector, computed once and cached on disk.

The cache key is the catalogue's content (every id and title), the encoder's
settings and its weights (:func:`encoder_fingerprint`), so a changed catalogue
(or encoder, or the encoder's weights under the same name) is encoded again and
an unchanged one never is. Files: ``<cache>/item-vectors/<dataset>-<encoder>-<key>.pt``
holding an (n_items + 1, d) float32 table, row ``i`` = item id ``i``, row 0 (padding) zero.
"""

from __future__ import annotations

import hashlib
import time

import torch

from ..core.io import cache_root, save_torch
from ..llm.encoders import LLMEncoder, MiniLMEncoder
from ..llm.model import load_llm, weights_fingerprint


def encoder_fingerprint(name: str) -> str:
    """A short hash of the item LLM's weights (what :func:`encode_items` loads for ``name``)."""
    return MiniLMEncoder.fingerprint() if name == "minilm" else weights_fingerprint(name)


def catalogue_key(items: dict[int, str], encoder: str, max_tokens: int, dtype: str, weights: str) -> str:
    h = hashlib.sha1(f"{encoder}\x00{weights}\x00{max_tokens}\x00{dtype}\x02".encode())
    for i in sorted(items):
        h.update(f"{i}\x00{items[i]}\x01".encode())
    return h.hexdigest()[:16]


def item_text(title: str) -> str:
    """The text the item LLM reads (the shipped datasets have titles only; no category field)."""
    return title


def _encoder(name: str, max_tokens: int, dtype: str, batch_size: int = 64):
    if name == "minilm":
        return MiniLMEncoder(batch_size)
    model, tok = load_llm(name, dtype="float32" if name == "tiny" else dtype)
    return LLMEncoder(model, tok, batch_size, max_tokens)


def encode_items(items: dict[int, str], encoder: str, max_tokens: int = 48, dtype: str = "bfloat16",
                 batch_size: int = 64) -> torch.Tensor:
    """(max id + 1, d) float32 vectors of the items' texts (row 0 and ids absent from ``items`` are zero)."""
    ids = sorted(items)
    vec = _encoder(encoder, max_tokens, dtype, batch_size)([item_text(items[i]) for i in ids]).float()
    table = torch.zeros(max(ids) + 1, vec.shape[1])
    table[torch.as_tensor(ids)] = vec
    return table


def item_vectors(ds, encoder: str, max_tokens: int = 48, dtype: str = "bfloat16", progress: bool = False,
                 root=None) -> torch.Tensor:
    """The cached item table of dataset ``ds`` under ``encoder`` (encoded on first use)."""
    key = catalogue_key(ds.items, encoder, max_tokens, dtype, encoder_fingerprint(encoder))
    path = (root or cache_root() / "item-vectors") / f"{ds.name}-{encoder}-{key}.pt".replace("/", "_")
    if path.exists():
        return torch.load(path, weights_only=True)["vectors"]
    t0 = time.perf_counter()
    table = encode_items(ds.items, encoder, max_tokens, dtype)
    seconds = time.perf_counter() - t0
    if progress:
        print(f"item LLM {encoder}: {len(ds.items)} items encoded in {seconds:.0f} s -> {path}")
    save_torch(path, {"vectors": table, "encoder": encoder, "max_tokens": max_tokens, "dtype": dtype,
                      "seconds": seconds})
    return table
