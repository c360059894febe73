"""Training throughput (issue 25, item 3): an optimiser step's batches in fewer, larger forwards give the step's
gradient; batches grouped by length per step; fused attention (SDPA) gives eager attention's loss; compiled
blocks train as the plain ones."""

import math

import numpy as np
import pytest
import torch

from llmrec.core import rundir
from llmrec.core.profiles import train_config
from llmrec.llm import train
from llmrec.llm import training
from llmrec.llm.config import TrainConfig
from llmrec.llm.model import load_llm, trainable
from llmrec.llm.objectives import LossComputer, collate, length_grouped_batches
from llmrec.llm.recommender import LLMRecommender


@pytest.fixture()
def runs_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("LLMREC_RUNS", str(tmp_path))
    monkeypatch.setenv("LLMREC_FROZEN", str(tmp_path / "frozen"))
    return tmp_path


def smoke(**kw):
    base = dict(validate=False, n_train=64, lr=3e-3, lora_dropout=0.0)  # no dropout: no random draws to differ
    return train_config("smoke", **{**base, **kw})


def step_gradients(cfg: dict, monkeypatch, loss_fn=None) -> tuple[list[list[torch.Tensor]], list[dict]]:
    """Train ``cfg`` (with ``loss_fn``); the gradient at every optimiser step (LoRA parameters, in order) and the
    log."""
    grads, real = [], torch.optim.AdamW.step

    def record(opt, *a, **k):
        grads.append([p.grad.detach().clone() for g in opt.param_groups for p in g["params"]])
        return real(opt, *a, **k)

    monkeypatch.setattr(torch.optim.AdamW, "step", record)
    run = train(cfg, progress=False, loss_fn=loss_fn)
    monkeypatch.setattr(torch.optim.AdamW, "step", real)
    assert loss_fn is None or run.name.startswith(f"synthetic-tiny-custom_{loss_fn.__name__}-")
    return grads, [r for r in rundir.read_log(run) if "loss" in r]


@pytest.mark.parametrize("loss", ["lml", "msl", "msl-ats", "sdpo"])
def test_a_step_in_fewer_forwards_has_the_gradient_of_accumulation(loss, runs_dir, monkeypatch):
    """4 batches of 4 windows accumulated per step (4 forwards) against the memory-sized micro-batch that holds
    the whole step (one forward) and one of 3 batches (a forward of 3, then of 1): the same gradient at every
    optimiser step, the same logged loss (and ATS temperature) for every logical batch."""
    extra = {}
    if loss == "sdpo":
        ref = train(smoke(loss="lml", max_steps=1, n_train=32), progress=False)
        extra = dict(sdpo_ref=str(ref), sdpo_negatives=2)
    cfg = smoke(loss=loss, batch_size=4, grad_accum=4, max_steps=2, n_train=32, log_grad_norms=0, **extra)
    # a memory budget that holds the whole step: "auto" measures one batch and fits 4 in it
    whole = training.auto_micro_batch(TrainConfig.from_dict(cfg), free=1e15)
    assert whole == 16
    base_grads, base_log = step_gradients(cfg, monkeypatch)
    assert len(base_grads) == 2 and len(base_log) == 8
    for micro in (whole, 12):
        grads, log = step_gradients({**cfg, "micro_batch": micro}, monkeypatch)
        assert len(grads) == 2
        for a, b in zip(base_grads, grads):
            for x, y in zip(a, b):  # float rounding: summed in another order
                assert torch.allclose(x, y, rtol=1e-4, atol=1e-5 * float(x.abs().max()))
        assert [r["step"] for r in log] == list(range(1, 9))
        for key in ("loss", "tau", "margin"):
            if key in base_log[0]:
                assert np.allclose([r[key] for r in log], [r[key] for r in base_log], rtol=1e-5, atol=1e-5)
    assert any(g.abs().sum() > 0 for g in base_grads[-1])


def test_micro_batch_is_checked_and_in_the_key_only_when_it_changes_the_forwards():
    assert "micro_batch" not in TrainConfig(batch_size=8, grad_accum=4).to_dict()
    assert "micro_batch" not in TrainConfig(batch_size=8, grad_accum=4, micro_batch=8).to_dict()  # = one batch
    assert TrainConfig(batch_size=8, grad_accum=4, micro_batch=16).to_dict()["micro_batch"] == 16
    for bad in (12, 40, 0, "big"):
        with pytest.raises(ValueError, match=r"micro_batch must be 'auto', None or a multiple of batch_size \(8\) "
                                             r"up to batch_size \* grad_accum \(32\)"):
            TrainConfig(batch_size=8, grad_accum=4, micro_batch=bad)
    # "auto" on the CPU: one batch per forward (no probe), so the run is today's run
    assert training.auto_micro_batch(TrainConfig(device="cpu", micro_batch="auto")) is None
    assert "compile" not in TrainConfig().to_dict() and TrainConfig(compile=True).to_dict()["compile"] is True


def test_forwards_that_fit_a_memory_budget():
    assert training.forwards_that_fit(1e9, 100e9, accum=8) == 8  # the whole step fits
    assert training.forwards_that_fit(10e9, 40e9, accum=8) == 3  # 0.8 * 40 = 32 GB: 3 batches of 10 GB
    assert training.forwards_that_fit(10e9, 5e9, accum=8) == 1  # never fewer than one
    assert training.forwards_that_fit(10e9, 40e9, accum=8, fraction=1.0) == 4


@pytest.mark.parametrize("start", [0, 5])
def test_forward_spans_cover_the_epoch_and_never_cross_a_step(start):
    spans = training.forward_spans(14, start, accum=4, per_forward=3)
    assert [b for s, e in spans for b in range(s, e)] == list(range(start, 14))
    assert all(e - s <= 3 and s // 4 == (e - 1) // 4 for s, e in spans)
    assert spans[:3] == ([(0, 3), (3, 4), (4, 7)] if start == 0 else [(5, 8), (8, 11), (11, 12)])
    assert training.forward_spans(5, 0, accum=1, per_forward=1) == [(b, b + 1) for b in range(5)]


def test_length_grouped_steps_keep_their_batches_together():
    lengths = list(np.random.default_rng(0).integers(10, 100, size=203))
    plain = length_grouped_batches(lengths, 8, seed=1, epoch=0)
    assert length_grouped_batches(lengths, 8, seed=1, epoch=0, group=1) == plain  # today's order
    grouped = length_grouped_batches(lengths, 8, seed=1, epoch=0, group=4)
    assert sorted(i for b in grouped for i in b) == list(range(203))
    assert grouped != plain
    for s in range(0, len(grouped), 4):  # a step's windows come from one sorted mega-batch, in its order
        step = [lengths[i] for b in grouped[s:s + 4] for i in b]
        assert step == sorted(step, reverse=True)

    def padding(batches, group):  # padded positions of one forward per step, over real tokens
        steps = [sum(batches[s:s + group], []) for s in range(0, len(batches), group)]
        return sum(len(w) * max(lengths[i] for i in w) for w in steps) / sum(lengths) - 1

    assert padding(grouped, 4) < padding(plain, 4) / 2


def test_fused_and_eager_attention_give_the_same_loss_and_gradients():
    """Training runs PyTorch's fused attention (SDPA): on a padded batch in float32 it gives eager attention's
    loss and LoRA gradients."""
    cfg = TrainConfig.from_dict(smoke(loss="lml"))
    rec = LLMRecommender(cfg)
    assert rec.load_model().config._attn_implementation == "sdpa"
    exs = rec.encoder.encode_frame(rec.ds.train.head(6))
    assert len({len(e.input_ids) for e in exs}) > 1  # padding in the batch
    out = {}
    for attention in ("sdpa", "eager"):
        model, _ = load_llm("tiny", attention=attention)
        from llmrec.llm.model import add_lora

        torch.manual_seed(0)
        model = add_lora(model, cfg)
        with torch.no_grad():
            for n, p in model.named_parameters():
                if "lora_B" in n:
                    p.normal_(0, 0.5)
        model.eval()
        loss, _ = LossComputer(cfg)(model, collate(exs, rec.trie, rec.tok.pad_token_id))
        loss.backward()
        out[attention] = (loss.item(), [p.grad for p in trainable(model)])
    assert out["sdpa"][0] == pytest.approx(out["eager"][0], rel=1e-6)
    for a, b in zip(out["sdpa"][1], out["eager"][1]):
        assert torch.allclose(a, b, rtol=1e-4, atol=1e-6)


@pytest.mark.slow
def test_compiled_blocks_train_as_the_plain_ones(runs_dir, monkeypatch):
    """``compile=True``: the same losses, another run (torch.compile's dropout draws differ from eager's). The
    backend here is aot_eager (the same graph capture, no C++ compile: inductor takes minutes on 2 cores)."""
    monkeypatch.setattr(training, "COMPILE_BACKEND", "aot_eager")
    cfg = smoke(loss="msl", max_steps=2)
    plain, compiled = train(cfg, progress=False), train({**cfg, "compile": True}, progress=False)
    assert plain != compiled
    a, b = ([r["loss"] for r in rundir.read_log(run) if "loss" in r] for run in (plain, compiled))
    assert len(a) == 2 and all(math.isfinite(x) for x in a) and np.allclose(a, b, rtol=1e-5)


def test_the_command_line_sets_micro_batch_and_compile(capsys, runs_dir):
    from llmrec.cli import build_parser, main

    args = build_parser().parse_args(["train", "--micro-batch", "auto", "--compile"])
    assert (args.micro_batch, args.compile) == ("auto", True)
    assert build_parser().parse_args(["train", "--micro-batch", "16"]).micro_batch == 16
    assert main(["train", "--profile", "smoke", "--loss", "lml", "--micro-batch", "12", "--no-eval"]) == 2
    assert "micro_batch must be 'auto', None or a multiple of batch_size (8)" in capsys.readouterr().err


def eq9_msl(logits, valid, targets):
    """MSL (eq. 9) at tau = 2 written from its equation: the mean over the positions with more than one valid
    token of -tau log softmax(f / tau) over the valid tokens."""
    tau = 2.0
    f = (logits / tau).masked_fill(~valid, -math.inf)
    nll = -tau * (f.gather(1, targets[:, None])[:, 0] - torch.logsumexp(f, -1))
    return nll[valid.sum(-1) > 1].mean()


def test_a_loss_function_of_ones_own_in_fewer_forwards_has_the_gradient_of_accumulation(runs_dir, monkeypatch):
    """``loss_fn``: each logical batch of a shared forward gets the function on its own positions only, so the
    step's gradient and the logged losses are accumulation's."""
    cfg = smoke(loss="msl", tau=2.0, batch_size=4, grad_accum=4, max_steps=2, n_train=32, log_grad_norms=0)
    base, base_log = step_gradients(cfg, monkeypatch, eq9_msl)
    fused, fused_log = step_gradients({**cfg, "micro_batch": 16}, monkeypatch, eq9_msl)
    assert len(base) == len(fused) == 2 and len(base_log) == len(fused_log) == 8
    assert np.allclose([r["loss"] for r in fused_log], [r["loss"] for r in base_log], rtol=1e-5, atol=1e-6)
    for a, b in zip(base, fused):
        for x, y in zip(a, b):
            assert torch.allclose(x, y, rtol=1e-4, atol=1e-5 * float(x.abs().max()))
    assert any(g.abs().sum() > 0 for g in base[-1])
