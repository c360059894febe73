"""A run's identity holds the fingerprints of the pretrained weights it starts from: a model name whose weights
changed is another run (a new folder), a folder trained on other weights is never continued, reused or
evaluated, a run made before identities held the weights is adopted only on request, and committed results
are still found (without any weights installed)."""

import shutil

import pytest
import torch

from llmrec import cli, lite, llm, runs
from llmrec.core import results, rundir
from llmrec.core.io import read_json, repo_root, write_json
from llmrec.core.profiles import train_config
from llmrec.llm import model as LM
from llmrec.llm.frozen import FrozenBlocks


@pytest.fixture(autouse=True)
def runs_root(tmp_path, monkeypatch):
    monkeypatch.setenv("LLMREC_RUNS", str(tmp_path / "runs"))
    monkeypatch.setenv("LLMREC_FROZEN", str(tmp_path / "frozen"))
    yield tmp_path / "runs"
    rundir.use_committed(None)


def save_tiny(folder, seed: int):
    """A local model folder (weights + tokenizer) of the tiny Llama built from ``seed``."""
    model, tok = LM.load_llm("tiny", seed=seed)
    model.save_pretrained(folder)
    tok.save_pretrained(folder)
    return folder


def llm_smoke(model: str, **kw):
    return train_config("smoke", model=model, validate=False, max_steps=2, n_train=16, batch_size=8, **kw)


def test_fingerprints_follow_the_weights_not_the_name_or_the_place(tmp_path):
    assert LM.weights_fingerprint("tiny", seed=0) == LM.weights_fingerprint("tiny", seed=0)
    assert LM.weights_fingerprint("tiny", seed=0) != LM.weights_fingerprint("tiny", seed=1)
    a = LM.weights_fingerprint(str(save_tiny(tmp_path / "m", seed=0)))
    shutil.copytree(tmp_path / "m", tmp_path / "copy")
    assert LM.weights_fingerprint(str(tmp_path / "copy")) == a  # the content, wherever it lies
    save_tiny(tmp_path / "m", seed=1)  # other weights under the same path: read again (size or mtime changed)
    assert LM.weights_fingerprint(str(tmp_path / "m")) != a
    (tmp_path / "empty").mkdir()
    with pytest.raises(LM.ModelError, match="no weight files"):
        LM.folder_fingerprint(tmp_path / "empty")
    # the frozen lower blocks' cache follows the weights too
    dirs = {FrozenBlocks(LM.load_llm("tiny", seed=s)[0], llm.TrainConfig(model="tiny", lora_layers=1, seed=s)).dir
            for s in (0, 1)}
    assert len(dirs) == 2


def test_a_model_whose_weights_changed_under_the_same_name_is_another_run(tmp_path, monkeypatch):
    folder = str(save_tiny(tmp_path / "model", seed=0))
    cfg = llm_smoke(folder)
    first = llm.train(cfg, progress=False)
    weights = read_json(first / "identity.json")["weights"]
    assert weights == {"model": LM.weights_fingerprint(folder)} and first.name.endswith(
        "-w" + rundir.config_key(weights)[:8])

    save_tiny(tmp_path / "model", seed=1)  # the same name, other weights
    second = llm.train(cfg, progress=False)
    assert second != first and read_json(second / "identity.json")["weights"] != weights
    with pytest.raises(ValueError, match="trained on other weights"):
        llm.train(cfg, run_dir=first, progress=False)  # never continued on other weights
    with pytest.raises(ValueError, match="trained on other weights"):
        runs.load(first)  # nor evaluated

    save_tiny(tmp_path / "model", seed=0)  # the first weights back: the first run is found, not trained again
    monkeypatch.setattr(llm.training, "_fit", lambda *a, **k: pytest.fail("trained again"))
    assert llm.train(cfg, progress=False) == first
    assert runs.load(first).model is not None


def test_a_run_made_before_identities_held_weights_is_adopted_only_on_request(runs_root, monkeypatch, capsys):
    cfg = llm_smoke("tiny")
    run = llm.train(cfg, progress=False)
    identity = read_json(run / "identity.json")
    old = {k: v for k, v in identity.items() if k != "weights"}
    legacy = rundir.run_dir_for(llm.TrainConfig.from_dict(cfg).to_dict(), old)
    assert legacy.name == run.name.rsplit("-w", 1)[0]  # the key older code gave it
    run.rename(legacy)
    write_json(legacy / "identity.json", old)

    with pytest.raises(ValueError, match=f"llmrec adopt {legacy}"):
        llm.train(cfg, progress=False)
    with pytest.raises(ValueError, match="made before"):
        runs.load(legacy)
    assert cli.main(["adopt", str(legacy)]) == 0 and str(legacy) in capsys.readouterr().out
    assert read_json(legacy / "identity.json") == identity
    monkeypatch.setattr(llm.training, "_fit", lambda *a, **k: pytest.fail("trained again"))
    assert llm.train(cfg, progress=False) == legacy  # found under its old name: S-DPO's references stay valid
    # adopted on other weights, it is another run's folder: a new one is made beside it
    write_json(legacy / "identity.json", {**old, "weights": {"model": "0" * 16}})
    assert rundir.find_run(llm.TrainConfig.from_dict(cfg).to_dict(), identity) == run
    with pytest.raises(ValueError, match="records other weights"):
        runs.adopt(legacy)
    with pytest.raises(ValueError, match="nothing to adopt"):
        runs.adopt(runs.train(train_config("smoke", "seqrec", epochs=1), progress=False))


def test_committed_results_are_found_without_any_weights(tmp_path, monkeypatch):
    """Results mode reads the committed runs (made before identities held weights) and new ones (with a weights
    suffix) by configuration and data alone: no model is fingerprinted, loaded or converted."""
    committed = repo_root() / "results" / "laptop" / "llm"
    cfg = llm_smoke("tiny")
    run = llm.train(cfg, progress=False)
    shutil.copytree(run, tmp_path / "results" / run.name)
    monkeypatch.setattr(LM, "weights_fingerprint", lambda *a, **k: pytest.fail("weights fingerprinted"))
    rundir.use_committed(tmp_path / "results")
    assert llm.train(cfg, progress=False) == tmp_path / "results" / run.name
    if not committed.exists():
        pytest.skip("no committed laptop results")
    records = results.records(committed)
    assert records
    for name, record in records.items():
        results.unpack(record, tmp_path / "committed" / name)
    rundir.use_committed(tmp_path / "committed")
    for name, record in records.items():
        assert llm.train(record.config, progress=False) == tmp_path / "committed" / name


def test_lite_identity_holds_both_llms_weights(monkeypatch):
    cfg = lite.complete(train_config("smoke", "lite", epochs=1))
    assert cfg["encoder"] == "tiny" and cfg["rec_model"] == "tiny"
    w = lite.base_weights(cfg)
    assert w == {"rec_model": LM.weights_fingerprint("tiny", seed=cfg["seed"]),
                 "encoder": LM.weights_fingerprint("tiny")}
    assert lite.base_weights({**cfg, "encoder": "none"}) == {"rec_model": w["rec_model"]}
    run = lite.train(cfg, progress=False)
    assert read_json(run / "identity.json")["weights"] == w
    monkeypatch.setattr(lite.training, "encoder_fingerprint", lambda name: "another item LLM")
    other = lite.train(cfg, progress=False)  # another item LLM under the same name: another run
    assert other != run and read_json(other / "identity.json")["weights"]["encoder"] == "another item LLM"
    with pytest.raises(ValueError, match="trained on other weights"):
        runs.load(run)
