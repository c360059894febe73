"""The family registry (llmrec.core.families): a new family is one registry entry and its own code.

A small family, defined here and nowhere else in the library ("bag": the mean of the history's item embeddings,
scored against the item table), is registered through the registry alone; the command line, the profiles and
``runs`` take it from there: it trains, evaluates and is published as a results record.
"""

from dataclasses import dataclass

import pytest
import torch
import torch.nn as nn

from llmrec import runs
from llmrec.cli import build_parser, main
from llmrec.core import families, results
from llmrec.core.config import RunConfig
from llmrec.core.profiles import train_config
from llmrec.data import load_dataset
from llmrec.itemseq import ItemScorer, ItemSeqRecommender, fit


@dataclass
class BagConfig(RunConfig):
    family: str = "bag"
    dataset: str = "synthetic"
    model: str = "bag"
    loss: str = "ce"
    hidden: int = 16
    epochs: int = 2
    patience: int | None = None
    batch_size: int = 64
    lr: float = 1e-2
    weight_decay: float = 0.0
    maxlen: int = 5
    negatives: int = 10
    alpha: float = 1.0
    seed: int = 0
    device: str = "cpu"
    max_train_windows: int | None = None
    max_valid_windows: int | None = None

    LABEL = "bag config"
    CHOICES = {"loss": ("ce", "sampled-softmax")}
    POSITIVE = ("hidden", "epochs", "batch_size", "maxlen", "negatives")


class Bag(ItemScorer):
    """The state at each position: the mean of the item embeddings so far (padding left out)."""

    def __init__(self, n_items: int, hidden: int):
        super().__init__()
        self.n_items = n_items
        self.item_emb = nn.Embedding(n_items + 1, hidden, padding_idx=0)

    def forward(self, seq):
        e = self.item_emb(seq)
        counts = (seq != 0).cumsum(1).clamp_min(1)[..., None]
        return e.cumsum(1) / counts


class BagRecommender(ItemSeqRecommender):
    family = "bag"

    @classmethod
    def build(cls, cfg):
        return cls(cfg, Bag(max(load_dataset(cfg["dataset"]).items), cfg["hidden"]))


def train_bag(config, run_dir=None, progress=True):
    return fit(BagConfig.complete(config), BagRecommender.build, run_dir, progress)


@pytest.fixture(autouse=True)
def runs_root(tmp_path, monkeypatch):
    monkeypatch.setenv("LLMREC_RUNS", str(tmp_path / "runs"))
    return tmp_path / "runs"


@pytest.fixture
def bag():
    here = __name__
    fam = families.register(families.Family(
        name="bag", summary="mean of the history's item embeddings (a test family)",
        config=f"{here}:BagConfig", train=f"{here}:train_bag", recommender=f"{here}:BagRecommender",
        models=("bag",), common=("dataset", "loss", "model", "epochs", "lr", "seed", "device", "negatives"),
        options=(families.Option("--hidden", "hidden", dict(type="positive int", help="embedding width")),),
        profiles={"smoke": dict(epochs=2, hidden=8)}))
    yield fam
    families.unregister("bag")


def test_a_family_registered_alone_trains_evaluates_and_is_published(bag, runs_root, tmp_path, capsys):
    # the command line offers it, with its own option and the choices of its configuration class
    train = build_parser()._subparsers._group_actions[0].choices["train"]
    assert "bag" in train._option_string_actions["--family"].choices
    assert "--hidden" in train._option_string_actions
    # the profiles size it
    cfg = train_config("smoke", "bag", lr=0.02)
    assert cfg["hidden"] == 8 and cfg["lr"] == 0.02 and cfg["family"] == "bag" and cfg["dataset"] == "synthetic"
    # train and evaluate through the command line (--model selects the family too)
    assert main(["train", "--model", "bag", "--profile", "smoke", "--hidden", "12", "--quiet"]) == 0
    run = capsys.readouterr().out.splitlines()[0]
    assert runs.config_of(run)["hidden"] == 12 and runs.family_of(runs.config_of(run)) == "bag"
    ev = runs.evaluate(run, "test")  # the family's default mode: every item ranked, every window
    assert ev["mode"] == "full" and ev["n_users"] == len(load_dataset("synthetic").test)
    assert isinstance(runs.load(run), BagRecommender)
    # another family's option is refused, naming it
    assert main(["train", "--family", "bag", "--profile", "smoke", "--tau", "2", "--quiet"]) == 2
    assert "--tau applies to llm runs" in capsys.readouterr().err
    # published as a results record, and read back
    rec = results.run_record(run, name="bag", what="a registered family", profile="smoke")
    path = results.write_record(tmp_path / "bag.json", rec)
    back = results.read_record(path)
    assert back.family == "bag" and back.training.best_epoch >= 1
    assert back.evaluations["test/full/nall"].summary["ndcg@10"].mean == pytest.approx(ev["summary"]["ndcg@10"])


def test_unknown_families_are_refused_by_name():
    with pytest.raises(ValueError, match="unknown family 'nope'.*llm"):
        families.get("nope")
    with pytest.raises(ValueError, match="unknown family"):
        train_config("smoke", "nope")
    assert families.for_model("sasrec") == "seqrec" and families.for_model("smollm2-135m") == "llm"


def test_the_built_in_families_resolve():
    for fam in families.REGISTRY.values():
        cfg_cls = fam.load("config")
        assert issubclass(cfg_cls, RunConfig) and cfg_cls().family == fam.name
        assert callable(fam.load("train")) and hasattr(fam.load("recommender"), "from_run")
        for opt in fam.options:
            assert opt.key in {f for f in cfg_cls.__dataclass_fields__}, (fam.name, opt.flag)
