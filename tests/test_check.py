"""The data boundary: `llmrec check`, the one reader behind it and `load_dataset`, and what a broken folder does
to `train` (nothing: no run folder, one line naming the file)."""

import csv
import gzip
import io
import json
import math
import tempfile
from contextlib import redirect_stderr, redirect_stdout
from datetime import datetime, timezone
from pathlib import Path

import pytest
from hypothesis import HealthCheck, event, given, settings, strategies as st

from llmrec.cli import main
from llmrec.core.io import write_json
from llmrec.core.metrics import summarize
from llmrec.data import DataError, check_folder, load_dataset
from llmrec.data.prepare import prepare

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


# --------------------------------------------------------------------------- generated corruptions (hypothesis)
#
# From the clean folder, a drawn mix of harmless variants (gzip or plain, CRLF, a byte-order mark, an extra
# column anywhere, the columns in any order, latin-1 of an ASCII file) and at most one fault in one file.
# Harmless only: the folder loads exactly the clean data. A fault: a DataError that names the file, `check`
# exits 1, `train` exits 2 with one line and makes no run folder. Never another exception.

CLEAN = {"items.json": items_text(), **{f"{s}.csv": split_text(rows) for s, rows in WINDOWS.items()}}
SPLIT_FILES = tuple(f"{s}.csv" for s in WINDOWS)
CELL = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00\r"), max_size=6)
BAD = {
    "user_id": ["-1", "x", "", " ", "1.5", "1_0", "+1", "٣", str(2 ** 63), "1e3", "9" * 5000],
    "item_ids": ["0", "-1", "99", "x", "1.5", "٣", str(2 ** 70), "+2", "9" * 5000],
    "timestamp": ["x", "", "nan", "inf", "-inf", "1e999", "9" * 5000, "12:00", "2021-01-01", "1,5"],
}
BAD_TITLES = [1984, 3.5, None, True, ["Kite"], {"title": "Kite"}, "", "  "]
BAD_KEYS = ["x", "-1", "0", "1.5", "", "٣", " 1", "2 3"]
WRONG_SHAPES = [json.dumps(list(ITEMS.values())), '"Kite"', "42", "9" * 5000, "null", "[" * 100_000,
                json.dumps({"items": {"1": "Kite"}}), "{}"]
ENCODINGS = ["utf-16", "utf-16-le", "latin-1", "cp1252"]


def table(text: str) -> list[list[str]]:
    return list(csv.reader(io.StringIO(text, newline="")))


def untable(rows) -> str:
    buf = io.StringIO()
    csv.writer(buf, lineterminator="\n").writerows(rows)
    return buf.getvalue()


@st.composite
def corrupted(draw, clean: dict[str, str], columns: dict[str, tuple[str, ...]], fault: str,
              bad: dict[str, list[str]]):
    """``(files, expect, target)`` with ``fault`` (or ``"none"``) in one file: the bytes of each file by name,
    "clean", "error" or "either" (a byte of gzip flipped: its header's time and OS bytes are not checked), and the
    name of the faulty file. ``bad``: wrong values of a column."""
    texts = dict(clean)
    for name, cols in columns.items():
        rows = table(texts[name])
        if draw(st.booleans()):  # an extra column, anywhere
            at, head = draw(st.integers(0, len(cols))), draw(st.sampled_from(["rating", "note", ""]))
            rows = [r[:at] + [head if k == 0 else draw(CELL)] + r[at:] for k, r in enumerate(rows)]
        order = draw(st.permutations(range(len(rows[0]))))
        texts[name] = untable([[r[i] for i in order] for r in rows])
    target = draw(st.sampled_from(sorted(columns) if fault in CSV_FAULTS else
                                  ["items.json"] if fault in ITEMS_FAULTS else sorted(texts)))
    expect = "clean" if fault == "none" else "error"
    gz = {name: draw(st.booleans()) for name in texts}
    encoding = {name: ("utf-8-sig" if draw(st.booleans()) else "utf-8") for name in texts}
    crlf = {name: draw(st.booleans()) for name in texts}

    if target in columns and fault in CSV_FAULTS:
        rows = table(texts[target])
        header = rows[0]
        col = draw(st.sampled_from([c for c in columns[target] if fault != "bad value" or c in bad]))
        at = header.index(col)
        row = draw(st.integers(1, len(rows) - 1))
        if fault == "drop column":
            rows = [r[:at] + r[at + 1:] for r in rows]
        elif fault == "rename column":
            header[at] = draw(st.sampled_from([col.upper(), col + "_", "x" + col, col[:-1]]))
        elif fault == "repeat column":
            rows = [r + [r[at]] for r in rows]
        elif fault == "header only":
            rows = rows[:1]
        elif fault == "repeat header":
            rows.insert(row, list(header))
        elif fault == "extra field":
            rows[row].append("1")
        elif fault == "bad value":
            value = draw(st.sampled_from(bad[col]))
            if col == "item_ids":
                ids = rows[row][at].split()
                ids[draw(st.integers(0, len(ids) - 1))] = value
                value = " ".join(ids) if draw(st.booleans()) else ids[-1]  # one bad id, or a window of 1 item
            rows[row][at] = value
        texts[target] = untable(rows)
    elif fault in ITEMS_FAULTS:
        pairs = [(str(k), v) for k, v in ITEMS.items()]
        k = draw(st.integers(0, len(pairs) - 1))
        if fault == "bad title":
            pairs[k] = (pairs[k][0], draw(st.sampled_from(BAD_TITLES)))
        elif fault == "bad key":
            pairs[k] = (draw(st.sampled_from(BAD_KEYS)), pairs[k][1])
        elif fault == "drop item":
            del pairs[k]
        if fault == "wrong shape":
            texts[target] = draw(st.sampled_from(WRONG_SHAPES))
        else:  # by hand: a repeated key stays repeated
            extra = [(pairs[k][0], "Other")] if fault == "repeated id" else []
            texts[target] = "{\n" + ",\n".join(f"{json.dumps(a)}: {json.dumps(b, ensure_ascii=False)}"
                                               for a, b in pairs + extra) + "\n}"
    elif fault == "encoding":
        encoding[target] = draw(st.sampled_from(ENCODINGS))
        plain, encoded = texts[target].encode("utf-8"), texts[target].encode(encoding[target], errors="replace")
        try:  # a character the encoding lacks becomes "?": still UTF-8, harmless in a column no loader reads
            encoded.decode("utf-8")
            valid_utf8 = True
        except UnicodeDecodeError:
            valid_utf8 = False
        expect = "clean" if encoded == plain else "either" if valid_utf8 else "error"

    files = {}
    for name, text in texts.items():
        data = (text.replace("\n", "\r\n") if crlf[name] else text).encode(encoding[name], errors="replace")
        if name == target and fault == "garble":  # a byte that is never UTF-8 where it stands
            at = draw(st.integers(0, len(data)))
            data = data[:at] + draw(st.sampled_from([b"\xff", b"\xfe", b"\xc0", b"\x80"])) + data[at:]
        if name == target and fault == "truncate" and not gz[name]:  # inside the header line, or JSON's last brace
            data = data[:draw(st.integers(0, (data.index(b"\n") if name in columns else data.rindex(b"}")) - 1))]
        if gz[name]:
            data = gzip.compress(data, mtime=0)
            if name == target and fault == "truncate":
                data = data[:draw(st.integers(0, len(data) - 1))]
            if name == target and fault == "flip gzip byte":
                at = draw(st.integers(0, len(data) - 1))
                data = data[:at] + bytes([data[at] ^ draw(st.integers(1, 255))]) + data[at + 1:]
                expect = "either"
        on_disk = name + (".gz" if gz[name] else "")
        if name == target and fault == "misnamed":  # gzip data without .gz, or plain text named .gz
            on_disk = name if gz[name] else name + ".gz"
        files[on_disk] = data
        if name == target and fault == "both":
            files[name if gz[name] else name + ".gz"] = text.encode() if gz[name] else gzip.compress(text.encode())
        if name == target and fault == "delete":
            del files[on_disk]
    if fault == "flip gzip byte" and not gz[target]:
        expect = "clean"
    return files, expect, target


CSV_FAULTS = ("drop column", "rename column", "repeat column", "header only", "repeat header", "extra field",
              "bad value")
ITEMS_FAULTS = ("bad title", "bad key", "drop item", "repeated id", "wrong shape")
FOLDER_FAULTS = ("none", *CSV_FAULTS, *ITEMS_FAULTS, "encoding", "garble", "truncate", "flip gzip byte", "misnamed",
                 "both", "delete")
FAST = settings(max_examples=10, deadline=None, database=None,  # per fault: about 10 s for all of them
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])


def write_files(folder: Path, files: dict[str, bytes]) -> Path:
    folder.mkdir(parents=True)
    for name, data in files.items():
        (folder / name).write_bytes(data)
    return folder


@pytest.mark.parametrize("fault", FOLDER_FAULTS)
@FAST
@given(data=st.data())
def test_a_corrupted_folder_loads_the_clean_data_or_names_the_file(fault, data, tmp_path, monkeypatch):
    files, expect, target = data.draw(corrupted(CLEAN, {name: tuple(HEADER.split(",")) for name in SPLIT_FILES},
                                                fault, BAD))
    with tempfile.TemporaryDirectory(dir=tmp_path) as tmp:
        folder = write_files(Path(tmp) / "d", files)
        monkeypatch.setenv("LLMREC_RUNS", str(Path(tmp) / "runs"))
        try:
            result = load_dataset(str(folder))
        except DataError as e:
            result = e
        out, err = io.StringIO(), io.StringIO()
        with redirect_stdout(out), redirect_stderr(err):
            status = main(["check", str(folder)])
        report = check_folder(folder)  # its summary of what could be read, whatever it was
        event(f"{fault}: {'refused' if isinstance(result, DataError) else 'loaded'}")
        if isinstance(result, DataError):
            assert expect in ("error", "either"), f"refused a harmless variant: {result}"
            assert target in str(result) and str(folder) in str(result)
            assert status == 1 and target in out.getvalue() and report.problems and not report.dataset
            with redirect_stdout(out), redirect_stderr(err):
                assert main(["train", "--profile", "smoke", "--model", "sasrec", "--dataset", str(folder)]) == 2
            assert len(err.getvalue().strip().splitlines()) == 1 and target in err.getvalue()
            assert not (Path(tmp) / "runs").exists()
        else:
            assert expect in ("clean", "either"), f"loaded a folder with a fault in {target}"
            assert result.items == ITEMS and rows_of(result) == {s: [(u, ids, t) for u, ids, t in r]
                                                                 for s, r in WINDOWS.items()}
            assert status == 0 and "no problems" in out.getvalue()


# prepare's two CSV files: six users, eight items (one title a number, one not ASCII), window 3, core 2; the last
# user's times written as ISO dates
TITLES = {f"i{k}": t for k, t in enumerate(["Kite", "Café Train", "1984", "Robot", "Chess", "Yo-yo", "Puzzle",
                                             "Ball"])}
EVENTS = [(f"u{u}", f"i{(u + j) % 8}", 1000 * u + 10 * j) for u in range(6) for j in range(5)]
PREPARE_CLEAN = {
    "titles.csv": untable([["item_id", "title"], *TITLES.items()]),
    "interactions.csv": untable([["user_id", "item_id", "timestamp"]] + [
        [u, i, datetime.fromtimestamp(t, timezone.utc).isoformat() if u == "u5" else str(t)] for u, i, t in EVENTS]),
}
PREPARE_COLUMNS = {"titles.csv": ("item_id", "title"), "interactions.csv": ("user_id", "item_id", "timestamp")}
PREPARE_BAD = {"user_id": ["", " "], "item_id": ["", " "],  # prepare's ids are any text: only an empty one is wrong
               "timestamp": [*BAD["timestamp"][:-2], "yesterday", "now", "today", "1/2/2021"]}
PREPARE_FAULTS = ("none", "drop column", "rename column", "repeat column", "repeat header", "extra field",
                  "bad value", "encoding", "garble", "truncate", "flip gzip byte", "misnamed")


def prepared(titles: Path, interactions: Path, out: Path):
    try:
        return prepare(None, None, out, window=3, core=2, interactions=interactions, titles=titles)
    except DataError as e:
        return e


def test_prepare_clean_csv(tmp_path):
    files = {name: text.encode() for name, text in PREPARE_CLEAN.items()}
    write_files(tmp_path / "in", files)
    ds = prepared(tmp_path / "in" / "titles.csv", tmp_path / "in" / "interactions.csv", tmp_path / "out")
    assert (len(ds.train), len(ds.valid), len(ds.test)) == (14, 2, 2)  # 6 users x 3 windows of 3, 8:1:1
    assert ds.items == {k + 1: t for k, t in enumerate(TITLES.values())}  # i0..i7 in sorted order
    assert load_dataset(str(tmp_path / "out")).items[3] == "1984"


@pytest.mark.parametrize("fault", PREPARE_FAULTS)
@FAST
@given(data=st.data())
def test_prepare_reads_a_corrupted_csv_as_the_clean_one_or_names_the_file(fault, data, tmp_path):
    files, expect, target = data.draw(corrupted(PREPARE_CLEAN, PREPARE_COLUMNS, fault, PREPARE_BAD))
    with tempfile.TemporaryDirectory(dir=tmp_path) as tmp:
        folder = write_files(Path(tmp) / "in", files)
        paths = {name: folder / (name + ".gz" if (folder / (name + ".gz")).exists() else name)
                 for name in PREPARE_CLEAN}
        clean_in = write_files(Path(tmp) / "clean", {n: t.encode() for n, t in PREPARE_CLEAN.items()})
        clean = prepared(clean_in / "titles.csv", clean_in / "interactions.csv", Path(tmp) / "clean-out")
        result = prepared(paths["titles.csv"], paths["interactions.csv"], Path(tmp) / "out")
        event(f"{fault}: {'refused' if isinstance(result, DataError) else 'read'}")
        if isinstance(result, DataError):
            assert expect in ("error", "either"), f"refused a harmless variant: {result}"
            assert target in str(result) and not (Path(tmp) / "out").exists()
        else:
            assert expect in ("clean", "either"), f"read a CSV with a fault in {target}"
            assert result.items == clean.items and rows_of(result) == rows_of(clean)


# --------------------------------------------------------------------------- llmrec check, and run files


def test_check_prints_every_problem_then_a_summary(tmp_path, capsys):
    assert main(["check", "toy"]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"{Path('data/toy').resolve()}: no problems") or ": no problems\n" in out
    for label in ("items          11,758", "windows        train 5,000, valid 4,793, test 4,794", "window length",
                  "users", "title length   mean", "domain         'toys'"):
        assert label in out
    folder = write_dataset(tmp_path / "d", gz=False)
    rows = table(split_text(WINDOWS["train"]))
    rows[2][1] = "1 99"  # an unknown item, line 3
    rows[4][2] = "soon"  # line 5
    (folder / "train.csv").write_text(untable(rows))
    (folder / "test.csv").write_text("")
    (folder / "valid.csv.gz").write_bytes(gzip.compress((folder / "valid.csv").read_bytes()))
    assert main(["check", str(folder)]) == 1
    out = capsys.readouterr().out.splitlines()
    assert out[:5] == [f"{folder}: 4 problems",
                       f"  {folder}: both valid.csv and valid.csv.gz: which one is the data? remove the other",
                       f"  {folder}/train.csv, line 3, field item_ids: item 99 has no title in items.json",
                       f"  {folder}/train.csv, line 5, field timestamp: a timestamp must be a finite number, got "
                       "'soon'",
                       f"  {folder}/test.csv: empty file: expected a header line user_id,item_ids,timestamp and rows"]
    assert out[5] == "summary (of what could be read):" and "  windows        train 4" in out  # the 4 good rows
    assert main(["check", str(folder), "--limit", "2"]) == 1
    assert capsys.readouterr().out.splitlines()[0] == f"{folder}: 4 problems (the first 2 below)"
    with pytest.raises(DataError, match=r"valid\.csv\.gz: which one.* \(and 3 more problems: `python -m llmrec "
                                        r"check .*` lists them\)"):
        load_dataset(str(folder))


def test_run_files_are_strict_json(tmp_path):
    from llmrec.core import rundir

    rundir.save_metrics(tmp_path, "test/beam/n3/k10", {"ranks": [0, math.inf, 4.0], "summary": {"hr@10": 2 / 3}})
    strict = json.loads((tmp_path / "metrics.json").read_text(), parse_constant=pytest.fail)
    assert strict["test/beam/n3/k10"]["ranks"] == [0, None, 4.0]  # a miss: null in the file
    assert rundir.load_metrics(tmp_path)["test/beam/n3/k10"]["ranks"] == [0, math.inf, 4.0]
    (tmp_path / "metrics.json").write_text('{"old": {"ranks": [Infinity, 1]}}')  # by older code: read, then strict
    rundir.save_metrics(tmp_path, "new", {"summary": {}})
    assert json.loads((tmp_path / "metrics.json").read_text(), parse_constant=pytest.fail)["old"]["ranks"] == [None, 1]
    with pytest.raises(ValueError, match=r"log\.jsonl: refusing to write NaN at \['loss'\]"):
        rundir.append_log(tmp_path, {"step": 3, "loss": float("nan")})
    with pytest.raises(ValueError, match=r"summary.*ndcg@10"):
        rundir.save_metrics(tmp_path, "bad", {"summary": {"ndcg@10": float("nan")}})
    assert "bad" not in rundir.load_metrics(tmp_path) and not (tmp_path / "log.jsonl").exists()
