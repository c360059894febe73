"""The data boundary: `llmrec check`, the one reader behind it and `load_dataset`, and what a broken folder does
to `train` (nothing: no run folder, one line naming the file)."""

import gzip
import json
import math
from pathlib import Path

import pytest

from llmrec.cli import main
from llmrec.core.io import write_json
from llmrec.core.metrics import summarize
from llmrec.data import DataError, load_dataset

# --------------------------------------------------------------------------- a small valid dataset

ITEMS = {1: "Wooden Train Set", 2: "Café Puzzle", 3: "Robot Kit", 4: "Kite", 5: "Chess Board", 6: "Yo-yo",
         7: "Yo-yo"}  # a non-ASCII title; two items share a title (accepted: the summary says so)
WINDOWS = {  # (user_id, item ids: history then target, timestamp)
    "train": [(1, [1, 2, 3], 10), (1, [2, 3, 4], 11), (2, [5, 6], 12), (3, [7, 1, 2, 3], 13), (2, [6, 4], 14),
              (4, [3, 5, 7], 15)],
    "valid": [(1, [3, 4, 5], 20), (3, [1, 2], 21)],
    "test": [(2, [4, 6, 1], 30), (4, [5, 7, 2], 31)],
}
HEADER = "user_id,item_ids,timestamp"


def items_text(items=ITEMS) -> str:
    return json.dumps({str(k): v for k, v in items.items()}, ensure_ascii=False, indent=0)


def split_text(rows) -> str:
    return HEADER + "\n" + "".join(f"{u},{' '.join(map(str, ids))},{t}\n" for u, ids, t in rows)


def write_dataset(folder: Path, gz: bool = True) -> Path:
    """The clean dataset as ``prepare`` writes it (gzip) or as plain files."""
    folder.mkdir(parents=True, exist_ok=True)
    files = {"items.json": items_text(), **{f"{s}.csv": split_text(rows) for s, rows in WINDOWS.items()}}
    for name, text in files.items():
        if gz:
            (folder / f"{name}.gz").write_bytes(gzip.compress(text.encode(), mtime=0))
        else:
            (folder / name).write_text(text, encoding="utf-8")
    return folder


def rows_of(ds) -> dict:
    return {s: [(int(u), [*map(int, h), int(t)], int(ts))
                for u, h, t, ts in zip(df.user_id, df.history, df.target, df.timestamp)]
            for s, df in (("train", ds.train), ("valid", ds.valid), ("test", ds.test))}


def test_the_clean_dataset_loads(tmp_path):
    for gz in (True, False):
        ds = load_dataset(str(write_dataset(tmp_path / f"clean-{gz}", gz)))
        assert ds.items == ITEMS and rows_of(ds) == {s: [(u, ids, t) for u, ids, t in r] for s, r in WINDOWS.items()}


# --------------------------------------------------------------------------- the six faults of issue 28


@pytest.fixture()
def runs_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("LLMREC_RUNS", str(tmp_path / "runs"))
    return tmp_path / "runs"


def test_a_split_with_a_header_and_no_rows_is_refused_before_a_run_folder(tmp_path, runs_dir, capsys):
    folder = write_dataset(tmp_path / "d", gz=False)
    (folder / "valid.csv").write_text(HEADER + "\n")
    with pytest.raises(DataError, match=r"valid\.csv: no windows"):
        load_dataset(str(folder))
    assert main(["train", "--profile", "smoke", "--model", "sasrec", "--dataset", str(folder), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "valid.csv: no windows" in err and len(err.strip().splitlines()) == 1
    assert not runs_dir.exists() or not any(runs_dir.iterdir())


def test_metrics_over_zero_users_and_non_finite_json_are_errors(tmp_path):
    with pytest.raises(ValueError, match="zero users"):
        summarize([])
    with pytest.raises(ValueError, match=r"out\.json.*NaN.*\['summary'\]\['ndcg@10'\]"):
        write_json(tmp_path / "out.json", {"summary": {"ndcg@10": float("nan")}})
    with pytest.raises(ValueError, match=r"Infinity"):
        write_json(tmp_path / "out.json", {"x": [1.0, math.inf]})
    assert not (tmp_path / "out.json").exists()


def test_a_truncated_gzip_names_the_file(tmp_path):
    folder = write_dataset(tmp_path / "d")
    data = (folder / "train.csv.gz").read_bytes()
    (folder / "train.csv.gz").write_bytes(data[: len(data) // 2])
    with pytest.raises(DataError, match=r"train\.csv\.gz: .*truncated"):
        load_dataset(str(folder))


def test_items_json_holding_a_list_names_the_file(tmp_path):
    folder = write_dataset(tmp_path / "d", gz=False)
    (folder / "items.json").write_text(json.dumps(list(ITEMS.values())))
    with pytest.raises(DataError, match=r"items\.json: expected one JSON object .*, got a list"):
        load_dataset(str(folder))


def test_a_file_that_is_not_utf8_names_the_file_and_line(tmp_path):
    folder = write_dataset(tmp_path / "d", gz=False)
    (folder / "items.json").write_bytes(items_text().encode("latin-1"))
    with pytest.raises(DataError, match=r"items\.json, line 3: not UTF-8 text"):
        load_dataset(str(folder))


def test_a_numeric_title_is_not_called_empty(tmp_path):
    folder = write_dataset(tmp_path / "d", gz=False)
    (folder / "items.json").write_text('{"1": "Kite", "2": 1984}')
    with pytest.raises(DataError, match=r"items\.json, field item 2: the title must be a non-empty string, got "
                                        r"the number 1984"):
        load_dataset(str(folder))


def test_a_csv_beside_its_gzip_is_ambiguous(tmp_path):
    folder = write_dataset(tmp_path / "d")
    (folder / "valid.csv").write_text(split_text(WINDOWS["valid"][:1]))
    with pytest.raises(DataError, match=r"both valid\.csv and valid\.csv\.gz"):
        load_dataset(str(folder))
