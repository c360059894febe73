import math

import numpy as np
import pytest
import torch

from llmrec import runs  # noqa: F401
from llmrec.core import rundir
from llmrec.core.profiles import train_config
from llmrec.seqrec import complete as seqrec_complete
from llmrec.llm.config import LOSSES, TrainConfig
from llmrec.llm.objectives import LossComputer, collate, length_grouped_batches
from llmrec.llm.recommender import LLMRecommender as Recommender
from llmrec.llm import train


@pytest.fixture()
def runs_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("LLMREC_RUNS", str(tmp_path))
    return tmp_path


def smoke(**kw):
    base = dict(validate=False, max_steps=20, n_train=160, batch_size=8, lr=3e-3, log_decomposition=True)
    base.update(kw)
    return train_config("smoke", **base)


def objective(log, loss):
    return [r["loss"] for r in log if "loss" in r]


def fixed_batch_objective(run, cfg: dict, adapter: bool, tau=None) -> float:
    """The run's own loss on a fixed batch of training windows, before (fresh LoRA) or after training."""
    c = TrainConfig.from_dict(cfg)
    if tau is not None:
        c.tau = tau
        c.loss = "msl" if c.loss == "msl-ats" else c.loss
    rec = Recommender(c)
    torch.manual_seed(0)
    model = rec.load_model(run / "adapter" if adapter else None)
    model.eval()
    batch = collate(rec.encoder.encode_frame(rec.ds.train.head(32)), rec.trie, rec.tok.pad_token_id)
    with torch.no_grad():
        return LossComputer(c)(model, batch)[0].item()


@pytest.mark.parametrize("loss", ["lml", "lml-tau", "l2-only", "msl", "msl-ats", "msl-alpha"])
def test_every_loss_trains_and_lowers_its_objective(loss, runs_dir):
    kw = {"tau": 2.0} if loss in ("lml-tau", "msl") else {}
    cfg = smoke(loss=loss, **kw)
    run = train(cfg, progress=False)
    log = rundir.read_log(run)
    vals = objective(log, loss)
    assert len(vals) == 20 and all(math.isfinite(v) for v in vals)
    tau = log[-2]["tau"] if loss == "msl-ats" else None  # judge ATS at its final temperature
    before = fixed_batch_objective(run, cfg, adapter=False, tau=tau)
    after = fixed_batch_objective(run, cfg, adapter=True, tau=tau)
    assert after < before
    done = rundir.read_json(run / "done.json")
    assert done["steps"] == 20 and done["seconds_per_step"] > 0
    assert (run / "adapter" / "adapter_config.json").exists()


def test_sdpo_starts_from_lml_and_lowers_its_objective(runs_dir):
    from llmrec.llm.recommender import adapter_dir as _adapter_dir
    from llmrec.llm.training import _sdpo_batch

    ref = train(smoke(loss="lml", max_steps=5, lora_dropout=0.0), progress=False)  # no dropout: policy == ref
    # a run-cache name (what experiments.profile_runs.llm_run stores, so that the key is the same in any clone) finds
    # the run
    assert _adapter_dir(ref.name) == ref / "adapter"
    with pytest.raises(FileNotFoundError, match="no LoRA adapter"):
        _adapter_dir("toy-smollm2-135m-lml-000000000000")
    cfg = smoke(loss="sdpo", sdpo_ref=str(ref), max_steps=20, sdpo_negatives=3, lora_dropout=0.0)
    run = train(cfg, progress=False)
    vals = objective(rundir.read_log(run), "sdpo")
    assert len(vals) == 20 and vals[0] == pytest.approx(math.log(1 + 3), abs=1e-5)  # policy == reference
    # the S-DPO objective on a fixed batch of windows with their own sampled negatives: before vs after
    c = TrainConfig.from_dict(cfg)
    rec = Recommender(c)
    batch = _sdpo_batch(rec.encoder.encode_frame(rec.ds.train.head(32)), rec, c, 0, list(range(32)))
    got = []
    for adapter in (_adapter_dir(ref), run / "adapter"):
        model = rec.load_model(adapter)
        model.load_adapter(str(_adapter_dir(ref)), adapter_name="ref")
        model.set_adapter("default")
        model.eval()
        with torch.no_grad():
            got.append(LossComputer(c)(model, batch)[0].item())
    assert got[0] == pytest.approx(math.log(4), abs=1e-5) and got[1] < got[0] - 0.05


def test_run_cache_and_resume_reproduce_the_uninterrupted_run(runs_dir, tmp_path):
    cfg = smoke(loss="msl-ats", epochs=2, max_steps=6, lora_dropout=0.1)
    whole = train(cfg, run_dir=tmp_path / "whole", progress=False)
    part = train(cfg, run_dir=tmp_path / "part", progress=False, stop_after_epoch=1)
    assert not rundir.is_done(part)
    part = train(cfg, run_dir=tmp_path / "part", progress=False)  # resumes at epoch 2
    a, b = rundir.read_log(whole), rundir.read_log(part)
    assert [r["loss"] for r in a if "loss" in r] == [r["loss"] for r in b if "loss" in r]
    assert [r["tau"] for r in a if "loss" in r] == [r["tau"] for r in b if "loss" in r]
    assert len([r for r in a if "loss" in r]) == 12
    from safetensors.torch import load_file

    wa = load_file(whole / "adapter" / "adapter_model.safetensors")
    wb = load_file(part / "adapter" / "adapter_model.safetensors")
    assert all(torch.equal(wa[k], wb[k]) for k in wa)
    # identical config -> the run cache returns the finished run without training
    cached = runs_dir / "cached"
    first = train(cfg, run_dir=cached, progress=False)
    mtime = (first / "done.json").stat().st_mtime
    assert train(cfg, run_dir=cached, progress=False) == first
    assert (first / "done.json").stat().st_mtime == mtime


@pytest.mark.parametrize("case", [
    dict(loss="msl-ats", grad_accum=2, lora_dropout=0.1),  # ATS state, dropout RNG, an accumulation cut in two
    dict(loss="lml", log_grad_norms=5, lora_layers=1),  # gradient norms on every 5th step, the frozen cache
], ids=["msl-ats-accum2", "lml-gradnorms-frozen"])
def test_resume_inside_an_epoch_reproduces_the_uninterrupted_run(case, runs_dir, frozen_dir, tmp_path, monkeypatch):
    """A quick run has one epoch: checkpoints every k steps let it resume mid-epoch, exactly."""
    from safetensors.torch import load_file

    cfg = smoke(epochs=2, n_train=72, max_steps=100, **case)  # 9 batches an epoch, 18 in all
    whole = train(cfg, run_dir=tmp_path / "whole", progress=False)  # no checkpoint inside an epoch
    part = tmp_path / "part"
    real, calls = LossComputer.parts, {"n": 0}

    def crash(self, *a, **k):  # an interruption in the 14th step of 18 (one forward each)
        calls["n"] += 1
        if calls["n"] == 14:
            raise KeyboardInterrupt
        return real(self, *a, **k)

    monkeypatch.setattr(LossComputer, "parts", crash)
    with pytest.raises(KeyboardInterrupt):
        train({**cfg, "checkpoint_every": 3}, run_dir=part, progress=False)
    monkeypatch.setattr(LossComputer, "parts", real)
    assert not rundir.is_done(part) and (part / "failed.json").exists()
    assert [c.name for c in (part / "checkpoints").iterdir()] == ["step-12"]  # epoch 2, 3 of its 9 batches done
    state = rundir.read_json(part / "checkpoints" / "step-12" / "state.json")
    assert (state["epoch"], state["batch"], state["step"]) == (1, 3, 12)
    if case.get("grad_accum") == 2:  # checkpointed between the two batches of an accumulation group
        ck = torch.load(part / "checkpoints" / "step-12" / "checkpoint.pt", weights_only=False)
        assert any(g is not None and g.abs().sum() > 0 for g in ck["grads"])
    assert max(r["step"] for r in rundir.read_log(part) if "step" in r) == 13  # logged after the checkpoint
    train({**cfg, "checkpoint_every": 3}, run_dir=part, progress=False)  # resumes at step 13
    assert rundir.is_done(part) and not (part / "failed.json").exists()
    # the interval is not part of the run's identity: same config.json, so the same run cache entry
    assert rundir.read_json(part / "config.json") == rundir.read_json(whole / "config.json")

    def records(run):  # every logged step and epoch end, but the wall-clock numbers
        return [{k: v for k, v in r.items() if k not in ("train_seconds", "peak_rss_mb")} for r in rundir.read_log(run)]

    assert records(part) == records(whole)
    assert [r["step"] for r in records(part) if "step" in r] == list(range(1, 19))  # each step once
    if case.get("log_grad_norms"):
        assert [r["step"] for r in records(part) if "grad_norm_l1" in r] == [1, 6, 11, 16]
    wa = load_file(whole / "adapter" / "adapter_model.safetensors")
    wb = load_file(part / "adapter" / "adapter_model.safetensors")
    assert wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)
    a, b = (rundir.read_json(r / "done.json") for r in (whole, part))
    assert a["steps"] == b["steps"] == 18 and [h["steps"] for h in b["history"]] == [9, 9]


def test_checkpoint_interval_is_checked_and_named(capsys, runs_dir):
    from llmrec.cli import main

    with pytest.raises(ValueError, match="checkpoint_every must be a positive integer or None"):
        TrainConfig.from_dict(smoke(checkpoint_every=0))
    assert main(["train", "--profile", "smoke", "--loss", "lml", "--checkpoint-every", "0"]) == 2
    assert "--checkpoint-every: must be > 0, got 0" in capsys.readouterr().err
    assert main(["train", "--profile", "smoke", "--model", "sasrec", "--checkpoint-every", "5"]) == 2
    assert "--checkpoint-every applies to llm runs; this is a seqrec run" in capsys.readouterr().err
    assert "checkpoint_every" not in TrainConfig(checkpoint_every=4).to_dict()  # not in config.json nor the key


def test_grad_norms_every_k_steps_leave_training_unchanged(runs_dir, tmp_path):
    """Figure 3's logging (two extra backward passes on every k-th step) changes what is logged, not the model."""
    from safetensors.torch import load_file

    cfg = smoke(loss="lml", max_steps=7, lora_dropout=0.1)
    assert cfg["log_grad_norms"] == 1  # the profile's LML runs log them (smoke: every step)
    every3 = train({**cfg, "log_grad_norms": 3}, run_dir=tmp_path / "k3", progress=False)
    never = train({**cfg, "log_grad_norms": 0}, run_dir=tmp_path / "k0", progress=False)
    logged = [r["step"] for r in rundir.read_log(every3) if "grad_norm_l1" in r]
    assert logged == [1, 4, 7]
    assert not any("grad_norm_l1" in r for r in rundir.read_log(never))
    assert [r["loss"] for r in rundir.read_log(every3) if "loss" in r] == \
        [r["loss"] for r in rundir.read_log(never) if "loss" in r]
    hist = rundir.read_json(every3 / "done.json")["history"][0]
    assert hist["grad_norm_seconds"] > 0 and rundir.read_json(never / "done.json")["history"][0]["grad_norm_seconds"] == 0
    a, b = (load_file(r / "adapter" / "adapter_model.safetensors") for r in (every3, never))
    assert all(torch.allclose(a[k], b[k], atol=1e-6) for k in a)
    assert "log_grad_norms" not in train_config("smoke", loss="msl")


def test_adapter_loads_with_plain_peft(runs_dir):
    from peft import PeftModel

    from llmrec.llm.model import load_llm

    run = train(smoke(loss="msl", max_steps=2), progress=False)
    base, _ = load_llm("tiny")
    model = PeftModel.from_pretrained(base, str(run / "adapter"))
    assert any("lora_A" in n for n, _ in model.named_parameters())


def test_collate_aligns_response_positions(tok):
    rec = Recommender(TrainConfig(dataset="synthetic", model="tiny", validate=False))
    exs = rec.encoder.encode_frame(rec.ds.train.head(3))
    batch = collate(exs, rec.trie, tok.pad_token_id)
    for b, e in enumerate(exs):
        sel = batch.b_idx == b
        assert batch.targets[sel].tolist() == e.input_ids[e.prompt_len:]
        assert batch.pos_idx[sel][0] == e.prompt_len - 1
        cols = batch.target_index[sel]
        assert torch.equal(batch.valid_tokens[sel].gather(1, cols[:, None])[:, 0], batch.targets[sel])
    assert batch.first.sum() == 3


def test_length_grouped_batches_cover_everything_once():
    lengths = list(np.random.default_rng(0).integers(10, 100, size=103))
    bs = length_grouped_batches(lengths, 8, seed=1, epoch=0)
    assert sorted(i for b in bs for i in b) == list(range(103))
    assert bs == length_grouped_batches(lengths, 8, seed=1, epoch=0)
    assert bs != length_grouped_batches(lengths, 8, seed=1, epoch=1)


def test_bad_options_are_named():
    with pytest.raises(ValueError, match="unknown loss 'nope'"):
        TrainConfig(loss="nope")
    with pytest.raises(ValueError, match="sdpo_ref"):
        TrainConfig(loss="sdpo")
    with pytest.raises(ValueError, match="unknown training option"):
        TrainConfig.from_dict({"lossy": 1})
    assert set(LOSSES) >= {"lml", "msl", "msl-ats", "sdpo"}


# ----------------------------------------------------------------------------- LoRA on the top blocks only


@pytest.fixture()
def frozen_dir(tmp_path, monkeypatch):
    d = tmp_path / "frozen"
    monkeypatch.setenv("LLMREC_FROZEN", str(d))
    return d


@pytest.mark.parametrize("loss", ["lml", "msl"])
def test_frozen_prefix_gives_the_full_forward_loss_and_gradients(loss, frozen_dir):
    """Cached lower-block states + the top block == the whole model, for the loss and every LoRA gradient."""
    from llmrec.llm.frozen import FrozenBlocks as FrozenPrefix
    from llmrec.llm.model import trainable

    cfg = TrainConfig.from_dict(smoke(loss=loss, tau=2.0, lora_layers=1, lora_dropout=0.0))
    rec = Recommender(cfg)
    torch.manual_seed(0)
    model = rec.load_model()
    names = [n for n, p in model.named_parameters() if p.requires_grad]
    assert names and all(".layers.1." in n for n in names)  # the tiny Llama has 2 blocks: LoRA on the top one
    with torch.no_grad():
        for n, p in model.named_parameters():
            if "lora_B" in n:
                p.normal_(0, 0.5)  # LoRA B starts at zero: make the adapter matter
    exs = rec.encoder.encode_frame(rec.ds.train.head(8))
    results = []
    for use_cache in (False, True):
        batch = collate(exs, rec.trie, rec.tok.pad_token_id)
        if use_cache:
            FrozenPrefix(model, cfg).attach(batch)
            assert batch.frozen is not None and batch.frozen_from == 1
        model.zero_grad()
        loss_value, _ = LossComputer(cfg)(model, batch)
        loss_value.backward()
        results.append((loss_value.item(), [p.grad.clone() for p in trainable(model)]))
    (l0, g0), (l1, g1) = results
    assert l1 == pytest.approx(l0, rel=1e-5)
    for a, b in zip(g0, g1):
        assert torch.allclose(a, b, rtol=1e-4, atol=1e-6)
    # the states came from disk the second time: same values
    batch = collate(exs, rec.trie, rec.tok.pad_token_id)
    n_files = len(list(frozen_dir.rglob("*.pt")))
    assert n_files == len({tuple(e.input_ids) for e in exs})
    again = FrozenPrefix(model, cfg).attach(batch)
    assert len(list(frozen_dir.rglob("*.pt"))) == n_files


def test_lora_layers_runs_share_the_frozen_pass_and_load_with_plain_peft(runs_dir, frozen_dir):
    from peft import PeftModel

    from llmrec.llm.model import load_llm
    from llmrec.llm.frozen import FrozenBlocks as FrozenPrefix

    run = train(smoke(loss="msl", lora_layers=1, max_steps=4), progress=False)
    n_files = len(list(frozen_dir.rglob("*.pt")))
    assert 24 < n_files <= 32  # 4 steps x 8 windows (identical windows share a file)
    first = rundir.read_json(run / "done.json")["history"][0]
    assert first["frozen_seconds"] > 0
    run2 = train(smoke(loss="lml", lora_layers=1, max_steps=4), progress=False)
    assert len(list(frozen_dir.rglob("*.pt"))) == n_files  # the LML run read the MSL run's states
    base, _ = load_llm("tiny")
    peft_model = PeftModel.from_pretrained(base, str(run2 / "adapter"))
    lora = [n for n, _ in peft_model.named_parameters() if "lora_" in n]
    assert lora and all(".layers.1." in n for n in lora)
    # an adapter with LoRA below the frozen split is refused
    cfg = TrainConfig.from_dict(smoke(loss="msl"))
    everywhere = Recommender(cfg).load_model()
    cfg.lora_layers = 1
    with pytest.raises(ValueError, match="lower blocks"):
        FrozenPrefix(everywhere, cfg)


def test_frozen_states_feed_a_bfloat16_model(runs_dir, frozen_dir, tmp_path):
    """The cache stores float32 states; a bfloat16 model (the GPU setting) gets them in its own dtype."""
    cfg = smoke(loss="msl-ats", dtype="bfloat16", lora_layers=1, max_steps=2, validate=False)
    run = train(cfg, run_dir=tmp_path / "bf16", progress=False)
    losses = [r["loss"] for r in rundir.read_log(run) if "loss" in r]
    assert len(losses) == 2 and all(math.isfinite(x) for x in losses) and list(frozen_dir.rglob("*.pt"))


@pytest.mark.parametrize("option", [{"epochs": 0}, {"max_steps": -2}, {"n_train": 0}, {"batch_size": 0}])
def test_sizes_are_checked_and_named(option):
    name = next(iter(option))
    with pytest.raises(ValueError, match=f"{name} must be a positive integer"):
        TrainConfig.from_dict(smoke(**option))
    with pytest.raises(ValueError, match="epochs must be a positive integer"):
        seqrec_complete(train_config("smoke", "seqrec", epochs=0))



def test_a_run_cut_at_k_steps_is_the_first_k_steps_of_the_longer_run(runs_dir):
    """What learning curves rely on: the seeded batch order and a constant learning rate (and ATS's state)."""
    logs = {}
    for steps in (3, 6):
        run = train(smoke(loss="msl-ats", max_steps=steps), progress=False)
        logs[steps] = [(r["loss"], r["tau"]) for r in rundir.read_log(run) if "loss" in r]
    assert len(logs[6]) == 6 and logs[6][:3] == logs[3]


def test_best_epoch_by_validation_likelihood_is_the_adapter_kept(runs_dir):
    """valid_by="nll_valid": each epoch ends with the mean -log P_valid of the validation users; the kept adapter
    is the epoch with the lowest, and re-evaluating it gives that value."""
    from llmrec.core.io import read_json
    from llmrec.core.recommender import evaluate

    cfg = smoke(loss="msl", epochs=3, max_steps=4, lr=2e-2, validate=True, n_valid_users=8, valid_by="nll_valid")
    run = train(cfg, progress=False)
    done = read_json(run / "done.json")
    nll = [h["valid_nll_valid"] for h in done["history"]]
    assert len(nll) == 3 and all(h["valid_ndcg@5"] is None for h in done["history"])
    assert done["best_epoch"] == int(np.argmin(nll)) and done["best_valid_nll_valid"] == min(nll)
    rec = Recommender.from_run(run)
    again = evaluate(rec, rec.ds.split("valid"), "likelihood", 8)["nll_valid"]
    assert np.mean(again) == pytest.approx(min(nll), rel=1e-5)
    assert "valid_by" in read_json(run / "config.json")
    assert "valid_by" not in TrainConfig.from_dict(smoke()).to_dict()  # unset: the keys of earlier runs stay
    with pytest.raises(ValueError, match="valid_by"):
        TrainConfig.from_dict(smoke(valid_by="hr@10"))
