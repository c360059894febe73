"""The token trie over item titles: Z_valid(y_<t), in Python and in tensors.

Every title becomes the token ids of ``"Title"`` followed by EOS (exactly the
response ids training uses). Two stores serve two jobs:

* a ``marisa_trie.RecordTrie`` keyed by the token sequence (fixed-width
  base-250 digits per token) holds the compact key store and the
  sequence -> item ids lookup; titles shared by several items map to all of
  them (sorted by item id);
* a node table in CSR form (``child_ptr``, ``child_tok``, ``child_node``, each a
  torch tensor; children sorted by token) lets a whole batch of trie states
  advance or list their valid next tokens with tensor ops, no Python walk per
  token per step. Node 0 is the root (the empty prefix).
"""

from __future__ import annotations

import time

import marisa_trie
import numpy as np
import torch

from .prompts import quote


_BASE = 250


class TrieError(ValueError):
    pass


class ItemTrie:
    def __init__(self, sequences: dict[int, list[int]], eos_id: int, tokenizer=None, vocab_size: int | None = None):
        """``sequences``: item id -> response token ids (ending with ``eos_id``)."""
        if not sequences:
            raise TrieError("an item trie needs at least one item")
        for iid, seq in sequences.items():
            if not seq or seq[-1] != eos_id:
                raise TrieError(f"item {iid}: token sequence must be non-empty and end with EOS ({eos_id})")
        self.eos_id = eos_id
        self.tokenizer = tokenizer
        self.vocab_size = vocab_size or (len(tokenizer) if tokenizer is not None else max(max(s) for s in sequences.values()) + 1)
        self.width = 1
        while _BASE ** self.width < self.vocab_size:
            self.width += 1
        self.sequences = sequences
        self._title_ids: dict[str, list[int]] = {}

        ids = list(sequences)
        lens = np.fromiter((len(sequences[i]) for i in ids), dtype=np.int64, count=len(ids))
        flat = np.fromiter((t for i in ids for t in sequences[i]), dtype=np.int64, count=int(lens.sum()))
        offsets = np.concatenate([[0], np.cumsum(lens)])

        # marisa key store: sequence key -> item ids (several for shared titles)
        blob = self._digits(flat).tobytes().decode("latin-1")
        w = self.width
        self.keys = marisa_trie.RecordTrie(
            "<I", ((blob[offsets[k] * w:offsets[k + 1] * w], (iid,)) for k, iid in enumerate(ids)))

        # node table, vectorised: sort the sequences (rows padded with -1), a row creates a node at
        # depth d when it differs from the previous row somewhere in columns <= d
        S = np.full((len(ids), int(lens.max())), -1, dtype=np.int64)
        S[np.arange(len(ids)).repeat(lens), np.arange(len(flat)) - offsets[:-1].repeat(lens)] = flat
        order = np.lexsort(S.T[::-1])
        S_sorted = S[order]
        differs = np.ones_like(S_sorted, dtype=bool)
        differs[1:] = np.logical_or.accumulate(S_sorted[1:] != S_sorted[:-1], axis=1)
        is_new = differs & (S_sorted >= 0)
        n_new = int(is_new.sum())
        node_at = np.zeros(S_sorted.shape, dtype=np.int64)
        node_at[is_new] = np.arange(1, n_new + 1)  # row-major: DFS pre-order, children by token
        # forward-fill each column: a row that did not create the node shares the one above
        filled = np.where(is_new, np.arange(len(ids))[:, None], 0)
        np.maximum.accumulate(filled, axis=0, out=filled)
        node_at = node_at[filled, np.arange(S_sorted.shape[1])[None, :]]
        node_at[S_sorted < 0] = -1
        parent_of = np.concatenate([np.zeros((len(ids), 1), dtype=np.int64), node_at[:, :-1]], axis=1)
        parent_a, token_a, child_a = parent_of[is_new], S_sorted[is_new], node_at[is_new]
        self.n_nodes = n_new + 1
        counts = np.bincount(parent_a, minlength=self.n_nodes)
        self.child_ptr = torch.from_numpy(np.concatenate([[0], np.cumsum(counts)])).long()
        parent = np.full(self.n_nodes, -1, dtype=np.int64)
        parent[child_a] = parent_a
        self.parent = torch.from_numpy(parent)
        by_parent = np.argsort(parent_a, kind="stable")  # rows are sorted, so siblings come by token
        self.child_tok = torch.from_numpy(token_a[by_parent]).long()
        self.child_node = torch.from_numpy(child_a[by_parent]).long()
        self._edge_key = self._node_key(torch.from_numpy(parent_a[by_parent]), self.child_tok)
        if not bool((self._edge_key[1:] > self._edge_key[:-1]).all()):
            raise TrieError("internal error: trie edges are not sorted")

        # the nodes each item's response visits (root ... terminal), flat with offsets
        self._row = {iid: k for k, iid in enumerate(ids)}
        walk = np.empty((len(ids), S.shape[1] + 1), dtype=np.int64)
        walk[order] = np.concatenate([np.zeros((len(ids), 1), dtype=np.int64), node_at], axis=1)
        self._path_ptr = np.concatenate([[0], np.cumsum(lens + 1)])
        self._path_flat = walk[walk >= 0]

    # ------------------------------------------------------------------ construction

    @classmethod
    def from_titles(cls, titles, tokenizer) -> "ItemTrie":
        """Build from ``{item_id: title}`` (or a list, ids 0..n-1) with a Hugging Face tokenizer."""
        if not isinstance(titles, dict):
            titles = dict(enumerate(titles))
        if tokenizer.eos_token_id is None:
            raise TrieError("the tokenizer has no EOS token")
        for iid, t in titles.items():
            if not isinstance(t, str) or not t.strip():
                raise TrieError(f"item {iid} has an empty title")
        ids = list(titles)
        enc = tokenizer([quote(titles[i]) for i in ids], add_special_tokens=False)["input_ids"]
        eos = tokenizer.eos_token_id
        trie = cls({i: list(e) + [eos] for i, e in zip(ids, enc)}, eos, tokenizer, len(tokenizer))
        trie._title_ids = {titles[i]: trie.sequences[i] for i in ids}
        trie.titles = titles
        return trie

    @classmethod
    def timed_build(cls, titles, tokenizer) -> tuple["ItemTrie", float]:
        """Build and return (trie, seconds), tokenisation included (the paper's Table 7 measure)."""
        t0 = time.perf_counter()
        trie = cls.from_titles(titles, tokenizer)
        return trie, time.perf_counter() - t0

    # ------------------------------------------------------------------ single sequences

    def _digits(self, tokens: np.ndarray) -> np.ndarray:
        """Fixed-width base-250 digits 1..250 per token (uint8, most significant first):
        order-preserving, and free of the bytes 0x00 and 0xff that marisa's record tries reserve."""
        powers = _BASE ** np.arange(self.width - 1, -1, -1)
        return ((np.asarray(tokens, dtype=np.int64)[:, None] // powers) % _BASE + 1).astype(np.uint8)

    def _key(self, seq) -> str:
        return self._digits(np.asarray(list(seq), dtype=np.int64)).tobytes().decode("latin-1")

    def _node_key(self, nodes: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        return nodes * self.vocab_size + tokens

    def encode(self, title: str) -> list[int]:
        """The exact response ids (quoted title + EOS) for a catalogue title."""
        if title in self._title_ids:
            return list(self._title_ids[title])
        if self.tokenizer is None:
            raise TrieError("encode needs a trie built with a tokenizer")
        return self.tokenizer(quote(title), add_special_tokens=False)["input_ids"] + [self.eos_id]

    def node_of(self, prefix_ids) -> int:
        """Node id of a prefix, or -1 when no title starts with it."""
        node = torch.zeros(1, dtype=torch.long)
        for t in prefix_ids:
            node = self.advance(node, torch.tensor([int(t)]))
            if node[0] < 0:
                return -1
        return int(node[0])

    def valid_next(self, prefix_ids) -> list[int]:
        """Z_valid(prefix): sorted tokens z such that prefix + z starts some title ([] if none)."""
        node = self.node_of(prefix_ids)
        if node < 0:
            return []
        a, b = int(self.child_ptr[node]), int(self.child_ptr[node + 1])
        return self.child_tok[a:b].tolist()

    def items_for(self, ids) -> list[int]:
        """Item ids whose response is exactly ``ids`` (several when items share a title)."""
        key = self._key(ids)
        return sorted(v[0] for v in self.keys[key]) if key in self.keys else []

    def valid_sets(self, response_ids) -> list[list[int]]:
        """Z_valid(y_<t) for every t of a catalogue response, the first token included."""
        nodes = self._walk(response_ids)
        return [self.child_tok[int(self.child_ptr[n]):int(self.child_ptr[n + 1])].tolist() for n in nodes[:-1].tolist()]

    def _walk(self, seq) -> torch.Tensor:
        """Nodes visited by a response: root, after y_1, ..., after y_T (length T + 1)."""
        nodes = [0]
        for t in seq:
            nxt = self.advance(torch.tensor([nodes[-1]]), torch.tensor([int(t)]))
            if nxt[0] < 0:
                raise TrieError(f"token sequence {list(seq)[:8]}... is not a catalogue title")
            nodes.append(int(nxt[0]))
        return torch.tensor(nodes)

    # ------------------------------------------------------------------ batched tensor form

    def advance(self, nodes: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        """Next node for each (node, token); -1 where the token is not valid (or the node is -1)."""
        keys = self._node_key(nodes.clamp_min(0), tokens.clamp_min(0))
        pos = torch.searchsorted(self._edge_key, keys).clamp_max(len(self._edge_key) - 1)
        ok = (self._edge_key[pos] == keys) & (nodes >= 0) & (tokens >= 0)
        return torch.where(ok, self.child_node[pos], -1)

    def degree(self, nodes: torch.Tensor) -> torch.Tensor:
        return self.child_ptr[nodes + 1] - self.child_ptr[nodes]

    def children(self, nodes: torch.Tensor, max_k: int | None = None):
        """Padded valid-token lists: (tokens (B, K), mask (B, K)), K = largest degree in the batch."""
        start, deg = self.child_ptr[nodes], self.degree(nodes)
        K = int(deg.max()) if max_k is None else max_k
        cols = torch.arange(max(K, 1))
        mask = cols[None, :] < deg[:, None]
        idx = (start[:, None] + cols[None, :]).clamp_max(max(len(self.child_tok) - 1, 0))
        return torch.where(mask, self.child_tok[idx], 0), mask

    def target_columns(self, nodes: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        """Column of each token inside ``children(nodes)`` (-1 if not a child)."""
        keys = self._node_key(nodes, tokens)
        pos = torch.searchsorted(self._edge_key, keys).clamp_max(len(self._edge_key) - 1)
        return torch.where(self._edge_key[pos] == keys, pos - self.child_ptr[nodes], -1)

    def dense_mask(self, nodes: torch.Tensor) -> torch.Tensor:
        """The dense (B, |V|) boolean Z_valid mask; only on request (it is |V| / AVT times larger)."""
        toks, mask = self.children(nodes)
        out = torch.zeros(len(nodes), self.vocab_size, dtype=torch.bool)
        out.scatter_(1, toks, mask)
        return out

    def path(self, item_id) -> np.ndarray:
        """Nodes visited by an item's response: root, after y_1, ..., terminal (length T + 1)."""
        k = self._row[int(item_id)]
        return self._path_flat[self._path_ptr[k]:self._path_ptr[k + 1]]

    def response_nodes(self, item_ids) -> tuple[torch.Tensor, torch.Tensor]:
        """For a batch of targets: (prefix node of every response position, sample index of each)."""
        paths = [self.path(i)[:-1] for i in item_ids]
        sample = np.repeat(np.arange(len(paths)), [len(p) for p in paths])
        return torch.from_numpy(np.concatenate(paths)), torch.from_numpy(sample)

    def terminal_items(self, nodes: torch.Tensor) -> list[list[int]]:
        """Items ending at each terminal node (after EOS)."""
        out = []
        for n in nodes.tolist():
            seq, node = [], n
            while node > 0:
                seq.append(int(self._token_into(node)))
                node = int(self.parent[node])
            out.append(self.items_for(seq[::-1]))
        return out

    def _token_into(self, node: int) -> int:
        p = int(self.parent[node])
        a, b = int(self.child_ptr[p]), int(self.child_ptr[p + 1])
        j = int((self.child_node[a:b] == node).nonzero()[0, 0])
        return int(self.child_tok[a + j])

    # ------------------------------------------------------------------ statistics

    def avt(self, item_ids=None) -> float:
        """Average |Z_valid| per response token instance (Table 4): over each item's response once,
        or over the responses of ``item_ids`` (e.g. the training targets, repeats counted)."""
        if item_ids is None:  # every path minus its terminal node
            keep = np.ones(len(self._path_flat), dtype=bool)
            keep[self._path_ptr[1:] - 1] = False
            nodes = torch.from_numpy(self._path_flat[keep])
        else:
            nodes = self.response_nodes(item_ids)[0]
        return float(self.degree(nodes).float().mean())

    def stats(self) -> dict:
        lens = [len(s) for s in self.sequences.values()]
        return {"items": len(self.sequences), "distinct responses": len({tuple(s) for s in self.sequences.values()}),
                "nodes": self.n_nodes, "avg response tokens": float(np.mean(lens)), "AVT (items)": self.avt(),
                "root degree": int(self.degree(torch.tensor([0]))[0]),
                "max degree": int(self.degree(torch.arange(self.n_nodes)).max())}

    def compact_bytes(self) -> int:
        return sum(t.element_size() * t.numel() for t in (self.child_ptr, self.child_tok, self.child_node, self._edge_key))
