"""The one configuration style (llmrec.core.config.RunConfig) of every family, and the run keys it must keep."""

import json
from dataclasses import dataclass
from pathlib import Path

import pytest

from llmrec.core.config import RunConfig
from llmrec.core.rundir import config_key
from llmrec.lite.config import LiteConfig
from llmrec.llm.config import TrainConfig
from llmrec.seqrec.config import SeqRecConfig

ROOT = Path(__file__).resolve().parents[1]
CLASSES = {"llm": TrainConfig, "seqrec": SeqRecConfig, "lite": LiteConfig}


def committed_configs():
    for path in sorted((ROOT / "results").rglob("*.json")):
        try:
            d = json.loads(path.read_text())
        except ValueError:
            continue
        cfg = d if path.name == "config.json" else (d.get("config") if isinstance(d, dict) else None)
        if isinstance(cfg, dict) and cfg.get("family") in CLASSES:  # popularity has no options
            yield path, cfg


def test_every_committed_configuration_keeps_its_key():
    """A committed run's config.json read into its family's class and written back is the same dict, so the
    run cache's key (a hash of it) is unchanged: the committed runs stay the runs these options name."""
    seen = {f: 0 for f in CLASSES}
    for path, cfg in committed_configs():
        back = CLASSES[cfg["family"]].from_dict(cfg).to_dict()
        assert back == cfg, path
        assert config_key(back) == config_key(cfg)
        seen[cfg["family"]] += 1
    assert all(seen.values()), seen  # every family has committed runs to check


@dataclass
class Toy(RunConfig):
    family: str = "toy-family"
    size: int = 3
    cap: int | None = None
    flavour: str = "plain"
    newer: float = 0.5
    workers: int = 1

    LABEL = "toy config"
    CHOICES = {"flavour": ("plain", "spicy")}
    POSITIVE = ("size", "cap")
    KEY_IF_CHANGED = ("newer",)
    RUN_OPTIONS = ("workers",)


def test_the_style_checks_and_stores_as_documented():
    assert Toy().to_dict() == {"family": "toy-family", "profile": "custom", "size": 3, "cap": None,
                               "flavour": "plain"}  # newer at its default and the run option stay out
    assert Toy(newer=0.7, workers=4).to_dict()["newer"] == 0.7 and "workers" not in Toy(workers=4).to_dict()
    with pytest.raises(ValueError, match="unknown toy config option"):
        Toy.from_dict({"sise": 3})
    with pytest.raises(ValueError, match=r"unknown flavour 'sweet': flavour must be one of \('plain', 'spicy'\)"):
        Toy(flavour="sweet")
    with pytest.raises(ValueError, match="size must be a positive integer, got 0"):
        Toy(size=0)
    with pytest.raises(ValueError, match="size must be a positive integer, got True"):
        Toy(size=True)
    with pytest.raises(ValueError, match="cap must be a positive integer or None, got -1"):
        Toy(cap=-1)
    assert Toy.complete({"size": 5, "newer": 0.5}) == {**Toy().to_dict(), "size": 5}


@pytest.mark.parametrize("family", sorted(CLASSES))
def test_every_family_uses_the_one_style(family):
    cls = CLASSES[family]
    assert issubclass(cls, RunConfig) and cls().family == family
    assert json.loads(json.dumps(cls().to_dict())) == cls().to_dict()  # plain JSON types
