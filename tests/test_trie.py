import random
from collections import defaultdict

import numpy as np
import pytest
import torch

from llmrec.llm.trie import ItemTrie, TrieError


def brute_force_next(sequences):
    """prefix tuple -> set of next tokens, from every prefix of every sequence (no trie)."""
    nxt = defaultdict(set)
    for seq in sequences:
        for t in range(len(seq)):
            nxt[tuple(seq[:t])].add(seq[t])
    return nxt


@pytest.mark.parametrize("which", ["toy", "books"])
def test_valid_sets_equal_brute_force_for_every_prefix(which, request):
    trie = request.getfixturevalue(f"{which}_trie")
    ds = request.getfixturevalue(which)
    seqs = [trie.encode(t) for t in ds.items.values()]
    brute = brute_force_next(seqs)
    ptr, tok = trie.child_ptr.numpy(), trie.child_tok.numpy()
    checked = 0
    for iid, seq in zip(ds.items, seqs):
        path = trie.path(iid)
        assert len(path) == len(seq) + 1
        for t in range(len(seq)):
            n = path[t]
            assert tok[ptr[n]:ptr[n + 1]].tolist() == sorted(brute[tuple(seq[:t])])
            checked += 1
    assert checked == sum(len(s) for s in seqs)
    # the public per-prefix API on a sample, and prefixes that are not in the catalogue
    rng = random.Random(0)
    for seq in rng.sample(seqs, 200):
        t = rng.randrange(len(seq))
        assert trie.valid_next(seq[:t]) == sorted(brute[tuple(seq[:t])])
        assert trie.valid_sets(seq)[t] == sorted(brute[tuple(seq[:t])])
    assert trie.valid_next([seqs[0][0], 12345, 54321]) == []
    assert trie.valid_next(seqs[0]) == []  # after EOS nothing follows


def test_shared_titles_map_to_every_item(books, books_trie):
    by_title = defaultdict(list)
    for iid, t in books.items.items():
        by_title[t].append(iid)
    shared = {t: ids for t, ids in by_title.items() if len(ids) > 1}
    assert len(shared) == len(books.items) - len(by_title) > 0
    for t, ids in shared.items():
        assert books_trie.items_for(books_trie.encode(t)) == sorted(ids)
        terminal = torch.tensor([books_trie.path(ids[0])[-1]])
        assert books_trie.terminal_items(terminal) == [sorted(ids)]


def test_batched_advance_children_and_dense_mask(toy, toy_trie):
    ids = list(toy.items)[:50]
    seqs = [toy_trie.encode(toy.items[i]) for i in ids]
    T = max(map(len, seqs))
    nodes = torch.zeros(len(seqs), dtype=torch.long)
    for t in range(T):
        toks = torch.tensor([s[t] if t < len(s) else -1 for s in seqs])
        kids, mask = toy_trie.children(nodes.clamp_min(0))
        for b, s in enumerate(seqs):
            if t < len(s):
                assert kids[b][mask[b]].tolist() == toy_trie.valid_next(s[:t])
                assert int(toy_trie.target_columns(nodes[b:b + 1], toks[b:b + 1])) == toy_trie.valid_next(s[:t]).index(s[t])
        dense = toy_trie.dense_mask(nodes.clamp_min(0))
        assert dense.shape == (len(seqs), toy_trie.vocab_size)
        assert torch.equal(dense.sum(1), mask.sum(1))
        nodes = toy_trie.advance(nodes, toks)
    # an invalid first token leads nowhere
    bad = [t for t in range(200) if t not in toy_trie.valid_next([])][0]
    assert int(toy_trie.advance(torch.tensor([0]), torch.tensor([bad]))) == -1


def test_response_nodes_and_avt_by_hand():
    # three items over a toy vocabulary; 9 is EOS; items 1 and 2 share a sequence
    seqs = {1: [5, 6, 9], 2: [5, 6, 9], 3: [5, 7, 8, 9], 4: [4, 9]}
    trie = ItemTrie(seqs, eos_id=9, vocab_size=10)
    assert trie.valid_next([]) == [4, 5]
    assert trie.valid_next([5]) == [6, 7]
    assert trie.valid_next([5, 7]) == [8]
    assert trie.items_for([5, 6, 9]) == [1, 2]
    # AVT over each item's response once: items 1, 2: 2+2+1; item 3: 2+2+1+1; item 4: 2+1 -> 19 / 12
    assert trie.avt() == pytest.approx(19 / 12)
    assert trie.avt([4, 4, 3]) == pytest.approx((3 + 3 + 6) / 8)
    nodes, sample = trie.response_nodes([3, 4])
    assert sample.tolist() == [0, 0, 0, 0, 1, 1]
    assert trie.degree(nodes).tolist() == [2, 2, 1, 1, 2, 1]
    with pytest.raises(TrieError, match="end with EOS"):
        ItemTrie({1: [5, 6]}, eos_id=9)


def test_compact_form_is_far_smaller_than_dense(toy, toy_trie):
    n_positions = sum(len(toy_trie.encode(t)) for t in toy.items.values())
    dense_bytes = n_positions * toy_trie.vocab_size  # one bool byte per (position, token)
    assert dense_bytes / toy_trie.compact_bytes() > 100


def test_from_titles_rejects_empty_titles(tok):
    with pytest.raises(TrieError, match="item 2 has an empty title"):
        ItemTrie.from_titles({1: "A", 2: ""}, tok)
