import gzip

import numpy as np
import pandas as pd
import pytest

from llmrec.core.io import atomic_write
from llmrec.data import DataError, chronological_cut, load_dataset, read_items, read_windows, sample_windows


def test_toy_counts(toy):
    assert len(toy.items) == 11_758
    assert (len(toy.train), len(toy.valid), len(toy.test)) == (5_000, 4_793, 4_794)
    assert toy.domain == "toys"


def test_books_counts_and_validation_cut(books):
    assert len(books.items) == 6_344
    assert len(books.train) + len(books.valid) == 35_060  # the published train file, before the cut
    assert len(books.valid) == len(books.test) == 4_383
    assert books.domain == "books"


@pytest.mark.parametrize("name", ["toy", "books"])
def test_split_is_chronological(name):
    ds = load_dataset(name)
    last_train = ds.train.timestamp.max()
    assert ds.valid.timestamp.min() >= last_train
    assert ds.test.timestamp.min() >= last_train
    assert ds.test.timestamp.min() >= ds.valid.timestamp.max() or name == "toy"


@pytest.mark.parametrize("name", ["toy", "books"])
def test_every_window_is_well_formed(name):
    ds = load_dataset(name)
    for split in ("train", "valid", "test"):
        df = ds.split(split)
        assert df.history.map(len).min() >= 1
        assert df.history.map(len).max() <= 10
        ids = set(df.target) | {i for h in df.history for i in h}
        assert ids <= set(ds.items)
    assert all(t.strip() for t in ds.items.values())


def test_windows_match_the_source_rows(toy):
    # first row of the published Toy test file, read by hand from the source CSV
    row = toy.test.iloc[0]
    assert row.user_id == 351
    assert list(row.history[:3]) == [5910, 8510, 5913]
    assert row.target == 3704


def test_samples_of_one_seed_are_nested():
    from llmrec.core.samplers import sample_rows

    small, large = set(sample_rows(10_000, 64, seed=3)), set(sample_rows(10_000, 512, seed=3))
    assert small < large and len(small) == 64
    assert set(sample_rows(10_000, 64, seed=4)) != small


def test_sample_windows_is_reproducible(toy):
    a = sample_windows(toy.train, 100, seed=1)
    b = sample_windows(toy.train, 100, seed=1)
    c = sample_windows(toy.train, 100, seed=2)
    pd.testing.assert_frame_equal(a, b)
    assert not a.equals(c)
    assert len(a) == 100 and sample_windows(toy.train, None) is toy.train
    with pytest.raises(ValueError, match="positive"):
        sample_windows(toy.train, 0)


def test_chronological_cut():
    df = pd.DataFrame({"user_id": [1, 2, 3, 4], "history": [[1]] * 4, "target": [2] * 4, "timestamp": [5, 1, 9, 3]})
    early, late = chronological_cut(df, 2)
    assert early.timestamp.tolist() == [1, 3] and late.timestamp.tolist() == [5, 9]


def write(path, text):
    path.write_text(text)
    return path


def test_bad_rows_name_file_line_and_field(tmp_path):
    items = {1: "A", 2: "B"}
    p = write(tmp_path / "w.csv", "user_id,item_ids,timestamp\n1,\"[1, 2]\",10\n2,\"[1, x]\",11\n")
    with pytest.raises(DataError, match=r"w\.csv, line 3, field item_ids"):
        read_windows(p, items)
    p = write(tmp_path / "w2.csv", "user_id,item_ids,timestamp\n1,\"[1, 7]\",10\n")
    with pytest.raises(DataError, match=r"line 2, field item_ids: item 7 has no title"):
        read_windows(p, items)
    p = write(tmp_path / "w3.csv", "user_id,item_ids,timestamp\n1,\"[1]\",10\n")
    with pytest.raises(DataError, match=r"line 2.*history of at least 1 item"):
        read_windows(p, items)
    p = write(tmp_path / "w4.csv", "user_id,item_ids,timestamp\nu,\"[1, 2]\",10\n")
    with pytest.raises(DataError, match=r"line 2, field user_id"):
        read_windows(p, items)
    p = write(tmp_path / "w5.csv", "user,item_ids\n1,\"[1, 2]\"\n")
    with pytest.raises(DataError, match=r"missing column"):
        read_windows(p, items)


def test_bad_titles(tmp_path):
    p = write(tmp_path / "items.json", '{"1": "A", "2": "  "}')
    with pytest.raises(DataError, match=r"items\.json, field item 2: the title must be a non-empty string, got only "
                                        r"spaces \('  '\)"):
        read_items(p)
    p = write(tmp_path / "items2.json", '{"x": "A"}')
    with pytest.raises(DataError, match="an item id must be a positive integer, got 'x'"):
        read_items(p)
    gz = tmp_path / "items3.json.gz"
    gz.write_bytes(gzip.compress(b'{"1": "A"}'))
    assert read_items(gz) == {1: "A"}


def test_unknown_dataset():
    with pytest.raises(ValueError, match="unknown dataset 'nope'"):
        load_dataset("nope")


def test_atomic_write_leaves_nothing_on_failure(tmp_path, monkeypatch):
    target = tmp_path / "out.bin"
    import os

    def boom(*a):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", boom)
    with pytest.raises(OSError):
        atomic_write(target, b"data")
    assert list(tmp_path.iterdir()) == []


def test_usable_cpus_respects_a_cgroup_quota(tmp_path):
    import os

    from llmrec.core.io import usable_cpus

    pinned = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    quota = tmp_path / "cpu.max"
    quota.write_text("max 100000\n")
    assert usable_cpus(quota) == pinned  # no quota: the CPUs the process is pinned to
    quota.write_text("150000 100000\n")
    assert usable_cpus(quota) == min(pinned, 2)  # 1.5 CPUs of time: 2 threads, rounded up
    quota.write_text("50000 100000\n")
    assert usable_cpus(quota) == 1
    assert usable_cpus(tmp_path / "missing") == pinned


def test_a_user_subset_keeps_whole_users_renumbers_items_and_is_reproducible(tmp_path):
    """bench/transfer_cost.py's dataset: Books users drawn until their training windows reach the target, each
    user with all of its windows, the items they name numbered 1..N with their titles, the same every time."""
    from llmrec.data.dataset import save_dataset, user_subset

    books = load_dataset("books")
    small = user_subset(books, 2_000, seed=0)
    users = set(small.train["user_id"])
    assert 2_000 <= len(small.train) < 2_000 + books.train.groupby("user_id").size().max()
    for split in ("train", "valid", "test"):  # whole users: every window of each chosen user, no other user's
        full = books.split(split)
        assert len(small.split(split)) == full["user_id"].isin(users).sum()
        assert set(small.split(split)["user_id"]) <= users
    assert sorted(small.items) == list(range(1, len(small.items) + 1))
    old = books.train[books.train["user_id"].isin(users)].reset_index(drop=True)  # same order, old ids
    assert [small.items[t] for t in small.train["target"]] == [books.items[t] for t in old["target"]]
    assert [[small.items[i] for i in h] for h in small.train["history"][:50]] == \
        [[books.items[i] for i in h] for h in old["history"][:50]]
    again = user_subset(books, 2_000, seed=0)
    assert again.train.equals(small.train) and again.items == small.items
    assert set(user_subset(books, 2_000, seed=1).train["user_id"]) != users
    assert load_dataset(save_dataset(small, tmp_path / small.name)).summary() == small.summary()  # passes the checks
    with pytest.raises(ValueError, match="train_windows"):
        user_subset(books, 0)
