"""A small synthetic catalogue with learnable sequential structure (``load_dataset("synthetic")``).

Items form *families* (a brand's product line) of numbered instalments, e.g.
``"Acme Robot Builder Series 3"``; some instalments also have an edition variant
(``"... Series 3 Deluxe Edition"``), and two instalments have a reissue: a second
item id with the very same title (real catalogues have such duplicates). Titles
therefore share long prefixes, so a token trie over them branches at the brand,
the line, the number and the edition.

Each user has a favourite family (drawn by family popularity) and walks through
it: the next item is usually the next instalment (70%), else a jump to a family of
the same brand (15%) or a popularity-skewed random item (15%). Sequences are
chronological with day-aligned timestamps and are windowed and split exactly like
the real data (:func:`llmrec.data.dataset.make_windows`, :func:`llmrec.data.dataset.chronological_split`).
"""

from __future__ import annotations

import numpy as np

from .dataset import Dataset, chronological_split, make_windows

BRANDS = ("Acme", "Blue Fox", "Red Panda", "Northwind", "Star Forge", "Little Owl",
          "Silver Comet", "Happy Otter", "Iron Oak", "Moon River", "Tiny Giant", "Golden Bee")
LINES = ("Robot Builder", "Puzzle Adventure", "Space Station", "Dragon Quest", "Mystery Club", "Racing League",
         "Castle Kingdom", "Ocean Explorer", "Magic School", "Dino Park", "Train Set", "Farm Friends",
         "Pirate Cove", "Jungle Trek", "Star Academy", "Science Lab")
MARKERS = ("Series", "Vol.", "Book", "Part")
EDITIONS = ("Deluxe Edition", "Collector's Edition", "Travel Edition")
START = 1_325_376_000  # 2012-01-01 UTC
DAY = 86_400


def _catalogue(n_items: int, rng: np.random.Generator):
    """Titles (index = item slot) and families: a list of instalments, each a list of slots (main first)."""
    n_shared = 2 if n_items >= 20 else 0
    titles: list[str] = []
    families: list[list[list[int]]] = []
    combos = [(b, l) for b in BRANDS for l in LINES]
    combos = [combos[j] for j in rng.permutation(len(combos))]
    brand_of: list[str] = []
    while len(titles) < n_items - n_shared:
        k = len(families)
        brand, line = combos[k % len(combos)]
        name = f"{brand} {line}" + (f" Mark {k // len(combos) + 1}" if k >= len(combos) else "")
        marker = MARKERS[rng.integers(len(MARKERS))]
        family: list[list[int]] = []
        for number in range(1, int(rng.integers(3, 9)) + 1):
            if len(titles) >= n_items - n_shared:
                break
            base = f"{name} {marker} {number}"
            family.append([len(titles)])
            titles.append(base)
            if rng.random() < 0.15 and len(titles) < n_items - n_shared:
                family[-1].append(len(titles))
                titles.append(f"{base} {EDITIONS[rng.integers(len(EDITIONS))]}")
        families.append(family)
        brand_of.append(brand)
    # reissues: a second item id with exactly the title of an existing instalment
    slots = [(f, p) for f, fam in enumerate(families) for p in range(len(fam))]
    for j in rng.choice(len(slots), size=n_shared, replace=False):
        f, p = slots[j]
        families[f][p].append(len(titles))
        titles.append(titles[families[f][p][0]])
    return titles, families, brand_of


def make_synthetic(n_items: int = 300, n_users: int = 200, seed: int = 0, history_len: int = 10) -> Dataset:
    """A deterministic synthetic :class:`~llmrec.data.Dataset` (item ids 1..``n_items``, domain ``generic``).

    Users get 5..19 interactions by default (``history_len // 2`` .. ``2 * history_len - 1``);
    windows have length ``history_len + 1`` and are split 8:1:1 chronologically.
    """
    if n_items < 2 or n_users < 1 or history_len < 1:
        raise ValueError(f"need n_items >= 2, n_users >= 1, history_len >= 1; got {n_items}, {n_users}, {history_len}")
    rng = np.random.default_rng(seed)
    titles, families, brand_of = _catalogue(n_items, rng)
    ids = rng.permutation(n_items) + 1  # slot -> item id, so ids carry no order
    items = dict(sorted((int(ids[s]), t) for s, t in enumerate(titles)))

    fam_w = 1.0 / (rng.permutation(len(families)) + 1.0)  # Zipf-like family popularity
    fam_p = fam_w / fam_w.sum()
    flat = [(f, p) for f, fam in enumerate(families) for p in range(len(fam))]
    pos_w = np.array([fam_w[f] / (p + 1.0) for f, p in flat])  # earlier instalments sell more
    pos_p = pos_w / pos_w.sum()
    by_brand: dict[str, list[int]] = {}
    for f, b in enumerate(brand_of):
        by_brand.setdefault(b, []).append(f)

    seqs = []
    lo, hi = max(2, history_len // 2), max(3, 2 * history_len)
    for user in range(1, n_users + 1):
        fav = int(rng.choice(len(families), p=fam_p))
        same_brand = by_brand[brand_of[fav]]
        f, p = fav, int(rng.integers(min(3, len(families[fav]))))
        t = START + int(rng.integers(3 * 365)) * DAY
        seq, times = [], []
        for _ in range(int(rng.integers(lo, hi))):
            variants = families[f][p]
            v = 0 if len(variants) == 1 or rng.random() < 0.75 else int(rng.integers(1, len(variants)))
            seq.append(int(ids[variants[v]]))
            times.append(t)
            t += int(rng.integers(1, 30)) * DAY
            r = rng.random()
            if r < 0.70:  # next instalment; at the end of a family, start another of the same brand
                p += 1
                if p >= len(families[f]):
                    f, p = same_brand[int(rng.integers(len(same_brand)))], 0
            elif r < 0.85:  # brand affinity
                f = same_brand[int(rng.integers(len(same_brand)))]
                p = int(rng.integers(len(families[f])))
            else:  # popularity-skewed noise
                f, p = flat[int(rng.choice(len(flat), p=pos_p))]
        seqs.append((user, seq, times))

    train, valid, test = chronological_split(make_windows(seqs, history_len + 1), (8, 1, 1))
    notes = {"domain": "generic", "generator": {"n_items": n_items, "n_users": n_users, "seed": seed,
                                                "history_len": history_len}}
    return Dataset("synthetic", items, train, valid, test, domain="generic", notes=notes)
