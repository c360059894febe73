"""Rebuild data/toy and data/books from the processed MSL files (../shared/data/amazon or a path).

    python data/build.py [SOURCE_DIR]

Toy: train = train_5000.csv (the published sample), valid.csv, test.csv.
Books: the published train.csv has no validation split; its latest windows by
timestamp (as many as test.csv has, 4,383, i.e. the 1 part of 8:1:1) become
valid, the rest train. Item 5746 of Books has an empty title in the source; it
is given the placeholder title "Untitled book 5746" (it occurs in 32 training
windows and in no test window).
"""

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "lib"))
from llmrec.data import Dataset, chronological_cut, read_windows, save_dataset  # noqa: E402

HERE = Path(__file__).resolve().parent
PLACEHOLDERS = {"books": {5746: "Untitled book 5746"}}


def titles(path: Path, name: str) -> dict[int, str]:
    raw = json.loads(path.read_text(encoding="utf-8"))
    items = {int(k): v for k, v in raw.items()}
    for iid, title in PLACEHOLDERS.get(name, {}).items():
        assert not items[iid].strip(), f"{name} item {iid} now has a title; drop the placeholder"
        items[iid] = title
    return items


def main(src: Path) -> None:
    toy = src / "toy"
    items = titles(toy / "id2name4Rec.json", "toy")
    ds = Dataset("toy", items, *(read_windows(toy / f, items) for f in ("train_5000.csv", "valid.csv", "test.csv")))
    save_dataset(ds, HERE / "toy")

    books = src / "books"
    items = titles(books / "id2name4Rec.json", "books")
    full = read_windows(books / "train.csv", items)
    test = read_windows(books / "test.csv", items)
    train, valid = chronological_cut(full, len(test))
    save_dataset(Dataset("books", items, train, valid, test), HERE / "books")
    for name in ("toy", "books"):
        print(name, "written to", HERE / name)


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else HERE.parents[1] / "shared" / "data" / "amazon")
