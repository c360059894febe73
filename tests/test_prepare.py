"""`llmrec prepare`: raw Amazon 2014 files -> filtered, windowed, split dataset folder.

Expected values below are worked out by hand from the raw lines, not by the code.
"""

import gzip
import json
from pathlib import Path

import pandas as pd
import pytest

from llmrec.data import DataError, load_dataset
from llmrec.data.prepare import (add_prepare_args, chronological_split, main_prepare, make_windows, prepare,
                            read_titles)

# --------------------------------------------------------------------------- raw data for core=3, window=3
# Titled items A..E; F has an empty title, G no title field, H no metadata at all.
META_STRICT = [
    '{"asin": "A", "title": "Alpha Toy", "price": 3.5}',
    '{"asin": "B", "title": "Bravo Toy"}',
    '',
    '{"asin": "C", "title": "Charlie\'s Toy"}',
    '{"asin": "D", "title": "  Delta Toy  "}',
    '{"asin": "E", "title": "Echo Toy"}',
    '{"asin": "F", "title": "   "}',
    '{"asin": "G", "categories": [["Toys"]]}',
]
META_LITERAL = [
    "{'asin': 'A', 'title': 'Alpha Toy', 'price': 3.5}",
    "{'asin': 'B', 'title': 'Bravo Toy'}",
    "",
    "{'asin': 'C', 'title': \"Charlie's Toy\"}",
    '{"asin": "D", "title": "  Delta Toy  "}',  # files may mix both styles
    "{'asin': 'E', 'title': 'Echo Toy'}",
    "{'asin': 'F', 'title': '   '}",
    "{'asin': 'G', 'categories': [['Toys']]}",
]
# (reviewerID, asin, unixReviewTime) in file order
REVIEWS = [
    ("u1", "A", 10), ("u1", "B", 20), ("u2", "B", 15), ("u1", "C", 30), ("u1", "D", 40),
    ("u2", "A", 25), ("u2", "F", 35), ("u2", "C", 50), ("u3", "C", 12), ("u3", "B", 22),
    ("u3", "A", 22), ("u4", "E", 33), ("u4", "H", 34), ("u4", "D", 36), ("u5", "D", 5),
    ("u5", "G", 6), ("u5", "E", 7), ("u6", "A", 3), ("u6", "C", 8), ("u6", "B", 9),
    ("u1", "A", 50), ("u1", "B", 60), ("u1", "C", 70), ("u1", "E", 80), ("u1", "A", 90),
    ("u1", "B", 100), ("u1", "C", 110),
]
# By hand: dropping untitled F, G, H leaves u4 = E D and u5 = D E (2 < 3 interactions) -> u4, u5 go.
# Then D and E have 1 interaction each (u1) -> D, E go. u1 = A B C A B C A B C, u2 = B A C,
# u3 = C B A (B and A tie at 22: file order), u6 = A C B; items A, B, C have 6 each: stable.
# Ids: A=1, B=2, C=3 (sorted asin); u1=1, u2=2, u3=3, u6=4 (sorted reviewerID).
# Windows of length 3 with the time of their last item, sorted by time (ties: user id, then position):
EXPECTED_WINDOWS = [  # (user_id, history, target, timestamp)
    (4, [1, 3], 2, 9),
    (3, [3, 2], 1, 22),
    (1, [1, 2], 3, 30),
    (1, [2, 3], 1, 50),
    (2, [2, 1], 3, 50),
    (1, [3, 1], 2, 60),
    (1, [1, 2], 3, 70),
    (1, [2, 3], 1, 90),
    (1, [3, 1], 2, 100),
    (1, [1, 2], 3, 110),
]


def frame(rows):
    return pd.DataFrame(
        {
            "user_id": pd.array([r[0] for r in rows], dtype="int64"),
            "history": [r[1] for r in rows],
            "target": pd.array([r[2] for r in rows], dtype="int64"),
            "timestamp": pd.array([r[3] for r in rows], dtype="int64"),
        }
    )


def as_rows(df):
    return [(int(u), [int(i) for i in h], int(t), int(s))
            for u, h, t, s in zip(df["user_id"], df["history"], df["target"], df["timestamp"])]


def write_lines(path: Path, lines):
    text = "\n".join(lines) + "\n"
    if path.name.endswith(".gz"):
        path.write_bytes(gzip.compress(text.encode()))
    else:
        path.write_text(text)
    return path


def review_lines(rows):
    return [json.dumps({"reviewerID": u, "asin": a, "unixReviewTime": t, "overall": 5.0}) for u, a, t in rows]


@pytest.fixture
def raw(tmp_path):
    return (write_lines(tmp_path / "reviews.json", review_lines(REVIEWS)),
            write_lines(tmp_path / "meta.json.gz", META_LITERAL))


# --------------------------------------------------------------------------- the protocol on hand-checked data


@pytest.mark.parametrize("reviews_name,meta_name,meta_lines", [
    ("reviews.json", "meta.json", META_STRICT),
    ("reviews.json.gz", "meta.json.gz", META_LITERAL),
    ("reviews.json.gz", "meta.json", META_LITERAL),
])
def test_prepare_matches_hand_worked_example(tmp_path, reviews_name, meta_name, meta_lines):
    reviews = write_lines(tmp_path / reviews_name, review_lines(REVIEWS))
    meta = write_lines(tmp_path / meta_name, meta_lines)
    out = tmp_path / "out"
    ds = prepare(reviews, meta, out, window=3, core=3, domain="toys")

    assert ds.items == {1: "Alpha Toy", 2: "Bravo Toy", 3: "Charlie's Toy"}
    assert as_rows(ds.train) == EXPECTED_WINDOWS[:8]
    assert as_rows(ds.valid) == EXPECTED_WINDOWS[8:9]
    assert as_rows(ds.test) == EXPECTED_WINDOWS[9:]

    assert sorted(p.name for p in out.iterdir()) == sorted(
        ["items.json.gz", "train.csv.gz", "valid.csv.gz", "test.csv.gz", "meta.json", "id_map.json.gz"])
    meta_json = json.loads((out / "meta.json").read_text())
    assert meta_json["domain"] == "toys"
    assert meta_json["params"] == {"window": 3, "core": 3, "sample": None, "seed": 0, "split": [8, 1, 1]}
    c = meta_json["counts"]
    assert (c["review records"], c["titled items in meta"], c["reviews of titled items"]) == (27, 5, 24)
    assert (c["reviews after core filter"], c["users"], c["items"], c["windows"]) == (18, 4, 3, 10)
    id_map = json.loads(gzip.decompress((out / "id_map.json.gz").read_bytes()))
    assert id_map == {"items": {"1": "A", "2": "B", "3": "C"}, "users": {"1": "u1", "2": "u2", "3": "u3", "4": "u6"}}

    back = load_dataset(str(out))
    assert back.items == ds.items and back.domain == "toys"
    assert as_rows(back.train) == EXPECTED_WINDOWS[:8]
    assert as_rows(back.test) == EXPECTED_WINDOWS[9:]
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_default_protocol_core5_window11(tmp_path):
    """Ten users buy the same five items in a user-specific rotation; two rows fall to the 5-core."""
    items = ["P1", "P2", "P3", "P4", "P5"]
    rows = []
    for k in range(10):  # user U0k starts at day k*10, item P(k%5+1) first
        rows += [(f"U0{k}", items[(k + j) % 5], 1000 * k + j) for j in range(5)]
    rows += [("U0" + str(k), "Q", 1000 * k + 9) for k in range(4)]  # Q: only 4 interactions
    rows += [("Z", p, 50_000 + j) for j, p in enumerate(items[:4])]  # Z: only 4 interactions
    reviews = write_lines(tmp_path / "r.json.gz", review_lines(rows))
    meta = write_lines(tmp_path / "m.json", [f"{{'asin': '{p}', 'title': 'Toy {p}'}}" for p in items + ["Q"]])
    ds = prepare(reviews, meta, tmp_path / "out")
    # Q and Z are removed; each user keeps 5 items -> one window each, ordered by user (time 1000k + 4).
    expected = [
        (1, [1, 2, 3, 4], 5, 4),
        (2, [2, 3, 4, 5], 1, 1004),
        (3, [3, 4, 5, 1], 2, 2004),
        (4, [4, 5, 1, 2], 3, 3004),
        (5, [5, 1, 2, 3], 4, 4004),
        (6, [1, 2, 3, 4], 5, 5004),
        (7, [2, 3, 4, 5], 1, 6004),
        (8, [3, 4, 5, 1], 2, 7004),
        (9, [4, 5, 1, 2], 3, 8004),
        (10, [5, 1, 2, 3], 4, 9004),
    ]
    assert ds.items == {1: "Toy P1", 2: "Toy P2", 3: "Toy P3", 4: "Toy P4", 5: "Toy P5"}
    assert as_rows(ds.train) == expected[:8]
    assert as_rows(ds.valid) == expected[8:9] and as_rows(ds.test) == expected[9:]
    assert ds.notes["counts"]["users"] == 10 and ds.domain == "generic"


def test_sample_keeps_a_seeded_subset_of_train(raw, tmp_path):
    a = prepare(*raw, tmp_path / "a", window=3, core=3, sample=3, seed=5)
    b = prepare(*raw, tmp_path / "b", window=3, core=3, sample=3, seed=5)
    assert len(a.train) == 3 and as_rows(a.train) == as_rows(b.train)
    rows = as_rows(a.train)
    assert all(r in EXPECTED_WINDOWS[:8] for r in rows)
    assert rows == sorted(rows, key=EXPECTED_WINDOWS.index)  # chronological order kept
    assert as_rows(a.valid) == EXPECTED_WINDOWS[8:9] and as_rows(a.test) == EXPECTED_WINDOWS[9:]
    counts = a.notes["counts"]
    assert counts["train windows before sample"] == 8 and counts["train windows"] == 3


def test_rerun_replaces_an_earlier_output(raw, tmp_path):
    out = tmp_path / "out"
    prepare(*raw, out, window=3, core=3)
    with pytest.raises(DataError, match="--force"):
        prepare(*raw, out, window=3, core=3, sample=2)
    assert len(load_dataset(str(out)).train) == 8
    prepare(*raw, out, window=3, core=3, sample=2, force=True)
    assert len(load_dataset(str(out)).train) == 2
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


# --------------------------------------------------------------------------- windows and splits


def test_make_windows_rules():
    seqs = [(7, [1, 2, 3, 4, 5], [10, 20, 30, 40, 50]), (8, [9], [5]), (9, [4, 6], [1, 2])]
    got = as_rows(make_windows(seqs, window=4))
    assert got == [(7, [1, 2, 3], 4, 40), (7, [2, 3, 4], 5, 50), (9, [4], 6, 2)]
    assert as_rows(make_windows(seqs[:1], window=11)) == [(7, [1, 2, 3, 4], 5, 50)]
    with pytest.raises(ValueError):
        make_windows(seqs, window=1)


def test_chronological_split_cuts_like_int_08_09():
    df = frame([(1, [1], 2, ts) for ts in [5, 3, 9, 1, 7, 2, 8, 4, 6, 0, 11, 10, 12]])
    train, valid, test = chronological_split(df)
    assert len(train) == 10 and len(valid) == 1 and len(test) == 2  # int(13*.8)=10, int(13*.9)=11
    assert train["timestamp"].tolist() == list(range(10))
    assert valid["timestamp"].tolist() == [10] and test["timestamp"].tolist() == [11, 12]


# --------------------------------------------------------------------------- bad input: clear errors, nothing written


def test_bad_review_line_names_file_and_line(tmp_path, raw):
    lines = review_lines(REVIEWS[:3]) + ["{this is not json"] + review_lines(REVIEWS[3:])
    reviews = write_lines(tmp_path / "bad.json", lines)
    with pytest.raises(DataError, match=r"bad\.json, line 4: neither JSON nor a Python literal"):
        prepare(reviews, raw[1], tmp_path / "out", window=3, core=3)
    assert not (tmp_path / "out").exists()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_review_missing_field_names_line_and_field(tmp_path, raw):
    lines = review_lines(REVIEWS[:1]) + ['{"reviewerID": "u9", "asin": "A"}'] + review_lines(REVIEWS[1:])
    reviews = write_lines(tmp_path / "missing.json.gz", lines)
    with pytest.raises(DataError, match=r"missing\.json\.gz, line 2: missing field 'unixReviewTime'"):
        prepare(reviews, raw[1], tmp_path / "out", window=3, core=3)
    lines[1] = '{"reviewerID": "u9", "asin": "A", "unixReviewTime": "soon"}'
    write_lines(tmp_path / "missing.json.gz", lines)
    with pytest.raises(DataError, match=r"line 2, field 'unixReviewTime': not an integer"):
        prepare(reviews, raw[1], tmp_path / "out", window=3, core=3)
    assert not (tmp_path / "out").exists()


def test_bad_meta_line(tmp_path):
    meta = write_lines(tmp_path / "meta.json", META_LITERAL[:4] + ["{'asin': 'Z', 'title': }"])
    with pytest.raises(DataError, match=r"meta\.json, line 5"):
        read_titles(meta)
    write_lines(meta, ["['not', 'a', 'record']"])
    with pytest.raises(DataError, match=r"line 1: expected an object"):
        read_titles(meta)
    write_lines(meta, ["{'title': 'no asin'}"])
    with pytest.raises(DataError, match=r"line 1: missing field 'asin'"):
        read_titles(meta)


def test_too_few_windows_and_missing_files(tmp_path, raw):
    with pytest.raises(DataError, match="at least 10"):
        prepare(*raw, tmp_path / "out", window=11, core=3)  # 4 users -> 4 windows
    with pytest.raises(DataError, match="no interactions left"):
        prepare(*raw, tmp_path / "out", core=50)
    with pytest.raises(DataError, match="no such file"):
        prepare(tmp_path / "nope.json", raw[1], tmp_path / "out")
    empty = write_lines(tmp_path / "empty.json", [])  # no titles at all: the titles' file is named, not the reviews'
    with pytest.raises(DataError, match=r"empty\.json: no item with a title"):
        prepare(raw[0], empty, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_failure_while_writing_leaves_nothing(raw, tmp_path, monkeypatch):
    import llmrec.data.prepare as prep

    def broken_save(ds, directory):
        (Path(directory) / "items.json.gz").write_bytes(b"partial")
        raise OSError("disk full")

    monkeypatch.setattr(prep, "save_dataset", broken_save)
    with pytest.raises(OSError, match="disk full"):
        prepare(*raw, tmp_path / "out", window=3, core=3)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["meta.json.gz", "reviews.json"]


def test_failure_keeps_an_earlier_output_intact(raw, tmp_path):
    out = tmp_path / "out"
    prepare(*raw, out, window=3, core=3)
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    with pytest.raises(DataError):
        prepare(*raw, out, window=11, core=3, force=True)
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before


def test_refuses_to_overwrite_a_foreign_folder(raw, tmp_path):
    out = tmp_path / "notes"
    out.mkdir()
    (out / "thesis.tex").write_text("precious")
    with pytest.raises(DataError, match="not empty"):
        prepare(*raw, out, window=3, core=3)
    assert [p.name for p in out.iterdir()] == ["thesis.tex"]


# --------------------------------------------------------------------------- command line


def test_cli(raw, tmp_path, capsys):
    out = tmp_path / "cli"
    assert main_prepare(["--reviews", str(raw[0]), "--meta", str(raw[1]), "--out", str(out),
                         "--window", "3", "--core", "3", "--domain", "books"]) == 0
    assert "train windows" in capsys.readouterr().out
    assert load_dataset(str(out)).domain == "books"
    assert main_prepare(["--reviews", str(raw[0]), "--meta", str(raw[1]), "--out", str(tmp_path / "x")]) == 2
    assert "no interactions left after keeping titled items and the 5-core filter" in capsys.readouterr().err

    import argparse

    args = add_prepare_args(argparse.ArgumentParser()).parse_args(["--reviews", "r", "--meta", "m", "--out", "o"])
    assert (args.window, args.core, args.sample, args.seed, args.domain) == (11, 5, None, 0, "generic")
