"""Own data, end to end: two CSV files of a movie catalogue -> `llmrec prepare --domain movies` -> the movies prompt,
LLM and classic training and evaluation through the CLI, and the chapters with their one `dataset` parameter."""

import json
import shutil

import pandas as pd
import pytest

from llmrec.cli import main
from llmrec.core import rundir
from llmrec.data import load_dataset
from llmrec.llm.prompts import TEMPLATES

FIRST = ("The Last", "The Silent", "Return of the", "Night of the", "A Tale of")
SECOND = ("Harbor", "Comet", "Garden", "Wolf", "Detective", "River", "Crown", "Signal")


def write_movie_csvs(folder, n_users: int = 30, per_user: int = 12):
    """``ratings.csv`` (user_id, item_id, timestamp, rating) and ``movies.csv`` (item_id, title, genres), the way a
    MovieLens-style export looks (renamed columns); 40 films, each user watches 12 consecutive ones of a cycle."""
    folder.mkdir(parents=True, exist_ok=True)
    titles = [f"{a} {b} ({1980 + 3 * i + j})" for i, a in enumerate(FIRST) for j, b in enumerate(SECOND)]
    movies = pd.DataFrame({"item_id": [f"m{k}" for k in range(len(titles))], "title": titles, "genres": "Drama"})
    rows = []
    for u in range(n_users):
        start = (u * 7) % len(titles)
        for j in range(per_user):
            rows.append({"user_id": f"user{u:02d}", "item_id": f"m{(start + j) % len(titles)}",
                         "timestamp": 1_000_000 + 1000 * j + 10 * u, "rating": 4})
    pd.DataFrame(rows).to_csv(folder / "ratings.csv", index=False)
    movies.to_csv(folder / "movies.csv", index=False)
    return folder / "ratings.csv", folder / "movies.csv"


@pytest.fixture(scope="module")
def movies(tmp_path_factory):
    raw = tmp_path_factory.mktemp("raw")
    ratings, titles = write_movie_csvs(raw)
    out = raw / "movies"
    assert main(["prepare", "--interactions", str(ratings), "--titles", str(titles), "--out", str(out),
                 "--domain", "movies", "--window", "6", "--core", "5"]) == 0
    return out


@pytest.fixture()
def runs_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("LLMREC_RUNS", str(tmp_path / "runs"))
    monkeypatch.setenv("LLMREC_FROZEN", str(tmp_path / "frozen"))
    return tmp_path / "runs"


def test_prepare_reads_csv_files_and_writes_the_domain(movies, tmp_path, capsys):
    ds = load_dataset(str(movies))
    assert ds.domain == "movies" and json.loads((movies / "meta.json").read_text())["domain"] == "movies"
    assert len(ds.items) == 40 and ds.items[1] == "The Last Harbor (1980)"  # ids by sorted item id: m0 first
    assert (len(ds.train), len(ds.valid), len(ds.test)) == (168, 21, 21)  # 30 users x 7 windows of 6, 8:1:1
    assert ds.train.timestamp.max() <= ds.valid.timestamp.min() <= ds.test.timestamp.min()
    # errors name the file, the line and the field
    bad = tmp_path / "bad.csv"
    bad.write_text("user_id,item_id,timestamp\nu1,m1,yesterday-ish\n")
    assert main(["prepare", "--interactions", str(bad), "--titles", str(movies.parent / "movies.csv"),
                 "--out", str(tmp_path / "x")]) == 2
    assert ("bad.csv, line 2, field timestamp: neither a number nor an ISO date such as 2021-03-04 ('yesterday-ish')"
            in capsys.readouterr().err)
    assert main(["prepare", "--interactions", str(bad), "--meta", str(bad), "--out", str(tmp_path / "y")]) == 2
    assert "--interactions and --titles (CSV), one pair" in capsys.readouterr().err
    assert not (tmp_path / "x").exists() and not (tmp_path / "y").exists()


def test_the_movies_prompt_and_a_domain_override(movies, runs_dir, capsys, tmp_path):
    from llmrec.llm import LLMRecommender, TrainConfig

    rec = LLMRecommender(TrainConfig(dataset=str(movies), model="tiny", validate=False))
    prompt = rec.tok.decode(rec.encoder.prompt_ids(list(rec.ds.test.history.iloc[0])))
    assert TEMPLATES["movies"][0] in prompt and "The user has watched the following movies before:" in prompt
    over = TrainConfig(dataset=str(movies), model="tiny", validate=False, domain="generic")
    assert LLMRecommender(over).encoder.domain == "generic" and over.to_dict()["domain"] == "generic"
    assert "domain" not in TrainConfig(dataset=str(movies)).to_dict()  # unset: runs made before it keep their key
    with pytest.raises(ValueError, match="unknown prompt domain 'cars'.*books, generic, movies, toys"):
        TrainConfig(domain="cars")
    assert main(["train", "--profile", "smoke", "--dataset", str(movies), "--domain", "cars"]) == 2
    assert "invalid choice: 'cars'" in capsys.readouterr().err
    odd = tmp_path / "odd"
    shutil.copytree(movies, odd)
    (odd / "meta.json").write_text(json.dumps({"domain": "cars"}))
    with pytest.raises(ValueError, match=r"unknown prompt domain 'cars' \(dataset .*odd: meta.json.*movies"):
        LLMRecommender(TrainConfig(dataset=str(odd), model="tiny", validate=False))


def test_llm_and_classic_runs_train_and_evaluate_on_it_through_the_cli(movies, runs_dir, capsys):
    assert main(["train", "--profile", "smoke", "--dataset", str(movies), "--loss", "msl-ats", "--quiet"]) == 0
    out = capsys.readouterr().out.splitlines()
    run = out[0]
    assert 0 <= json.loads("\n".join(out[1:]))["ndcg@10"] <= 1
    assert rundir.read_json(f"{run}/config.json")["dataset"] == str(movies)
    assert main(["evaluate", run, "--mode", "likelihood", "--users", "5"]) == 0
    assert json.loads(capsys.readouterr().out)["n_users"] == 5
    assert main(["train", "--profile", "smoke", "--model", "sasrec", "--loss", "sce", "--dataset", str(movies),
                 "--epochs", "2", "--quiet"]) == 0  # the smoke profile keeps a folder of your own
    out = capsys.readouterr().out.splitlines()
    assert rundir.read_json(f"{out[0]}/config.json")["dataset"] == str(movies)
    assert json.loads("\n".join(out[1:]))["ndcg@10"] >= 0
    # Lite-LLM4Rec: the item LLM encodes the films' titles (cached by this catalogue's content)
    assert main(["train", "--family", "lite", "--profile", "smoke", "--dataset", str(movies), "--quiet"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert rundir.read_json(f"{out[0]}/config.json")["dataset"] == str(movies)
    assert json.loads("\n".join(out[1:]))["ndcg@10"] >= 0


def test_chapters_take_the_one_dataset_parameter(movies, runs_dir, tmp_path, monkeypatch):
    from llmrec.chapters import run_batch

    monkeypatch.setenv("LLMREC_FIGURES", str(tmp_path / "figures"))
    status = run_batch(profile="smoke", dataset=str(movies), only=["01", "03"], out_dir=tmp_path / "executed")
    assert status == 0
    nb = json.loads((tmp_path / "executed" / "01_data_and_trie.ipynb").read_text())
    text = json.dumps([c.get("outputs") for c in nb["cells"]])
    assert "movies the user has watched" in text and "The Silent" in text
    assert {p.name for p in (tmp_path / "figures").iterdir()} >= {"01_trie_valid_sets.png", "03_gradient_weights.png"}
    # the LLM run chapter 03 trained is on the movies
    (run,) = [p for p in runs_dir.iterdir() if (p / "done.json").exists()]
    assert rundir.read_json(run / "config.json")["dataset"] == str(movies)
