"""A loss function of your own (llmrec.core.custom_loss): written here from the papers' equations, not from the
library's losses, it trains to the built-in loss's weights; its source is part of the run's key (an edited
function is another run, the same one finds its run again); a function without readable source is refused
with what to do."""

import functools
import math
import sys

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from llmrec import lite, runs
from llmrec.core import rundir
from llmrec.core.custom_loss import SOURCE_FILE, CustomLoss, LossSourceError
from llmrec.core.profiles import train_config
from llmrec.itemseq import loop
from llmrec.llm.config import TrainConfig
from llmrec.seqrec.config import SeqRecConfig


@pytest.fixture(autouse=True)
def runs_root(tmp_path, monkeypatch):
    monkeypatch.setenv("LLMREC_RUNS", str(tmp_path / "runs"))
    return tmp_path / "runs"


# ----------------------------------------------------------------------------- user losses, from the equations

def eq9_msl(logits, valid, targets):
    """MSL (eq. 9) at tau = 2: -tau log of the softmax of f / tau over the valid tokens, the mean over the
    positions with more than one valid token."""
    tau = 2.0
    f = (logits / tau).masked_fill(~valid, -math.inf)
    nll = -tau * (f.gather(1, targets[:, None])[:, 0] - torch.logsumexp(f, -1))
    return nll[valid.sum(-1) > 1].mean()


def eq1_lml(logits, valid, targets):
    """LML (eq. 1): -log of the softmax over the whole vocabulary, the mean over positions."""
    return (torch.logsumexp(logits, -1) - logits.gather(1, targets[:, None])[:, 0]).mean()


def full_ce(scores, targets):
    """CE over every item: logsumexp of the scores minus the target's score, the mean over positions."""
    return (torch.logsumexp(scores, -1) - scores.gather(1, targets[:, None])[:, 0]).mean()


def smoothed_ce(scores, targets):
    """full_ce with 10% of the target's mass spread uniformly: the same signature, another body."""
    logp = scores - torch.logsumexp(scores, -1, keepdim=True)
    return -(0.9 * logp.gather(1, targets[:, None])[:, 0] + 0.1 * logp.mean(-1)).mean()


def losses(run):
    return [r["loss"] for r in rundir.read_log(run) if "loss" in r]


def same_adapter(a, b) -> bool:
    """Whether two LLM runs trained to the same LoRA weights (to float rounding)."""
    wa, wb = (load_file(run / "adapter" / "adapter_model.safetensors") for run in (a, b))
    return wa.keys() == wb.keys() and all(torch.allclose(wa[k], wb[k], atol=1e-6) for k in wa)


def llm_smoke(**kw):
    return train_config("smoke", "llm", validate=False, **kw)


def seq_smoke(**kw):
    return train_config("smoke", "seqrec", **{"epochs": 2, "patience": None, **kw})


# ----------------------------------------------------------------------------- (a) the same training as the built-in


@pytest.mark.parametrize("builtin, fn", [(dict(loss="msl", tau=2.0), eq9_msl),
                                         (dict(loss="lml", log_grad_norms=0), eq1_lml)])  # (norms: exercise 06)
def test_an_llm_loss_written_from_its_equation_trains_as_the_built_in_one(builtin, fn):
    cfg = llm_smoke(**builtin)
    ours = runs.train(cfg, progress=False)
    theirs = runs.train(cfg, progress=False, loss_fn=fn)
    assert theirs != ours and theirs.name.startswith(f"synthetic-tiny-custom_{fn.__name__}-")
    config = runs.config_of(theirs)
    assert config["loss"] == f"custom:{fn.__name__}" and len(config["loss_source"]) == 16
    assert "loss_source" not in runs.config_of(ours)
    assert f"def {fn.__name__}(logits, valid, targets):" in (theirs / SOURCE_FILE).read_text()
    a, b = rundir.read_log(ours), rundir.read_log(theirs)
    assert len(a) == len(b) == 4 + 1  # 4 steps and the epoch's end
    for ra, rb in zip(a[:-1], b[:-1]):  # the same loss, and the same L1 and L2 logged beside it
        for key in ("loss", "l1", "l2"):
            assert rb[key] == pytest.approx(ra[key], rel=1e-5), key
    assert same_adapter(ours, theirs)


def test_a_sasrec_loss_written_from_ce_trains_as_the_built_in_ce():
    cfg = seq_smoke(loss="ce")
    ours, theirs = runs.train(cfg, progress=False), runs.train(cfg, progress=False, loss_fn=full_ce)
    assert runs.config_of(theirs)["loss"] == "custom:full_ce"
    assert losses(theirs) == pytest.approx(losses(ours), rel=1e-6)
    # the same model: its scores (not its weights: the attention's key bias has no gradient, so Adam turns
    # the float noise of two formulations into steps of full size there, and the scores ignore it)
    hists = [h[-5:] for h in runs.load(ours).ds.test["history"].head(32)]
    np.testing.assert_allclose(runs.load(theirs).score(hists), runs.load(ours).score(hists), atol=1e-4)
    done = rundir.read_json(theirs / "done.json")
    assert done["score_matrix_mb"] == rundir.read_json(ours / "done.json")["score_matrix_mb"]  # every item scored


def test_lite_takes_a_loss_of_its_own_too():
    cfg = train_config("smoke", "lite", encoder="none", head="dot", epochs=1, patience=None)
    ours, theirs = lite.train(cfg, progress=False), lite.train(cfg, progress=False, loss_fn=full_ce)
    assert runs.config_of(theirs)["loss"] == "custom:full_ce" and "-w" in theirs.name  # the weights: still keyed
    assert losses(theirs) == pytest.approx(losses(ours), rel=1e-6)


# ----------------------------------------------------------------------------- (b) the run's key holds the source


def test_an_edited_function_is_another_run_and_the_same_one_finds_its_run(monkeypatch, runs_root):
    cfg = seq_smoke(loss="ce", epochs=1)
    first = runs.train(cfg, progress=False, loss_fn=full_ce)
    second = runs.train(cfg, progress=False, loss_fn=smoothed_ce)  # the same signature, another body
    assert second != first and losses(second) != losses(first)  # trained, not reused
    assert runs.config_of(second)["loss_source"] != runs.config_of(first)["loss_source"]

    def same_body(scores, targets):  # full_ce's body under another name: another run (the name is in its key)
        return (torch.logsumexp(scores, -1) - scores.gather(1, targets[:, None])[:, 0]).mean()

    assert runs.train(cfg, progress=False, loss_fn=same_body) not in (first, second)

    def indented():  # the same text, indented in here
        def full_ce(scores, targets):
            """CE over every item: logsumexp of the scores minus the target's score, the mean over positions."""
            return (torch.logsumexp(scores, -1) - scores.gather(1, targets[:, None])[:, 0]).mean()
        return full_ce

    copy = indented()
    assert copy is not full_ce
    with monkeypatch.context() as m:  # the same function again, or its copy: the same run, found, not trained again
        m.setattr(loop, "_fit", lambda *a: pytest.fail("a finished run was trained again"))
        assert runs.train(cfg, progress=False, loss_fn=copy) == first
        assert runs.train(runs.config_of(first), progress=False, loss_fn=full_ce) == first
    assert runs.evaluate(first, "test", progress=False)["summary"]["ndcg@10"] >= 0  # loads from its config
    # a run interrupted after its first epoch is found again by the same function and resumed there
    real, calls = loop.evaluate, []

    def validation(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    with monkeypatch.context() as m:
        m.setattr(loop, "evaluate", validation)
        with pytest.raises(KeyboardInterrupt):
            runs.train({**cfg, "epochs": 2}, progress=False, loss_fn=full_ce)
    [cut] = [p for p in runs_root.iterdir() if (p / "failed.json").exists()]
    before = rundir.read_log(cut)
    assert len(before) == 1 and rundir.latest_checkpoint(cut).name == "epoch-1"
    assert runs.train({**cfg, "epochs": 2}, progress=False, loss_fn=copy) == cut
    assert rundir.read_log(cut)[0] == before[0] and len(losses(cut)) == 2  # epoch 1 kept, not trained again
    assert not (cut / "failed.json").exists() and losses(cut)[0] == losses(first)[0]
    with pytest.raises(ValueError, match="pass that function as loss_fn="):
        runs.train(runs.config_of(first), progress=False)


TAU = 2.0


def scaled(scores, targets):
    return full_ce(scores / TAU, targets)


def test_what_a_function_reads_is_in_its_fingerprint(monkeypatch):
    base = CustomLoss(scaled).fingerprint()
    assert CustomLoss(scaled).fingerprint() == base
    with monkeypatch.context() as m:
        m.setattr(sys.modules[__name__], "TAU", 3.0)  # a constant it reads
        assert CustomLoss(scaled).fingerprint() != base
    with monkeypatch.context() as m:
        m.setattr(sys.modules[__name__], "full_ce", smoothed_ce)  # a helper of the same module that it calls
        assert CustomLoss(scaled).fingerprint() != base
    assert CustomLoss(scaled).fingerprint() == base

    def make(tau):
        def closed(scores, targets):
            return full_ce(scores / tau, targets)
        return closed

    assert CustomLoss(make(2.0)).fingerprint() == CustomLoss(make(2.0)).fingerprint()
    assert CustomLoss(make(2.0)).fingerprint() != CustomLoss(make(3.0)).fingerprint()  # a closure's value
    weights = torch.ones(3)

    def weighted(scores, targets):
        return (weights[targets] * scores.sum(-1)).mean()

    before = CustomLoss(weighted).fingerprint()
    weights[0] = 2.0
    assert CustomLoss(weighted).fingerprint() != before  # a tensor, by content

    def defaults(scores, targets, tau=TAU):
        return full_ce(scores / tau, targets)

    assert CustomLoss(defaults).fingerprint() != CustomLoss(defaults, version="1").fingerprint() == "version:1"


def test_a_function_in_a_notebook_cell_is_fingerprinted_by_its_cell():
    from IPython.core.interactiveshell import InteractiveShell

    shell = InteractiveShell.instance()
    prints = []
    for cell in ("import torch\nTAU = 2.0\ndef mine(logits, valid, targets):\n    return (logits / TAU).mean()",
                 "TAU = 3.0",
                 "def mine(logits, valid, targets):\n    return (logits / TAU).sum()",
                 "TAU = 2.0\ndef mine(logits, valid, targets):\n    return (logits / TAU).mean()"):
        assert shell.run_cell(cell).success
        prints.append(CustomLoss(shell.user_ns["mine"]).fingerprint())
    assert len(set(prints[:3])) == 3 and prints[3] == prints[0]


# ----------------------------------------------------------------------------- (c) bad input


class ScoreMean:
    def __call__(self, scores, targets):
        return scores.mean()


def typed_at_a_prompt(text: str):
    """A function defined from text that no file or notebook cell holds, as at a plain Python prompt."""
    namespace = {}
    exec(compile(text, "<stdin>", "exec"), namespace)
    return namespace["typed"]


@pytest.mark.parametrize("fn", [typed_at_a_prompt("typed = lambda scores, targets: scores.mean()"),
                                typed_at_a_prompt("def typed(scores, targets):\n    return scores.mean()"),
                                torch.logsumexp, functools.partial(full_ce), ScoreMean()])
def test_a_function_without_readable_source_is_refused_with_what_to_do(fn, runs_root):
    with pytest.raises(ValueError, match=r"define it with `def` in a file or a notebook cell, or .*version"):
        runs.train(seq_smoke(loss="ce", epochs=1), progress=False, loss_fn=fn)
    assert not runs_root.exists()  # refused before any run folder


def test_a_versioned_function_needs_no_source_and_a_lambda_needs_a_name(runs_root):
    fn = typed_at_a_prompt("import torch\ntyped = lambda scores, targets: (torch.logsumexp(scores, -1)"
                           " - scores.gather(1, targets[:, None])[:, 0]).mean()")
    with pytest.raises(ValueError, match=r"needs a name .* CustomLoss\(fn, name=\"\.\.\.\", version="):
        CustomLoss(fn)
    run = runs.train(seq_smoke(loss="ce", epochs=1), progress=False, loss_fn=CustomLoss(fn, "ce", version="1"))
    assert runs.config_of(run)["loss"] == "custom:ce" and runs.config_of(run)["loss_source"] == "version:1"
    assert "cannot be read" in (run / SOURCE_FILE).read_text()


def test_what_a_function_reads_must_be_something_a_fingerprint_follows():
    generator = torch.Generator()

    def noisy(scores, targets):
        return scores.mean() + torch.rand(1, generator=generator)[0]

    with pytest.raises(LossSourceError, match=r"it reads 'generator', a Generator, whose value"):
        CustomLoss(noisy).fingerprint()

    def attribute(scores, targets):  # scores.mean is an attribute, not the global `mean` below
        return scores.mean()

    assert CustomLoss(attribute).fingerprint()


mean = torch.Generator()  # a global named as an attribute the function above reads


def test_the_loss_must_be_one_number_with_a_gradient():
    scores, targets = torch.randn(4, 5, requires_grad=True), torch.tensor([0, 1, 2, 3])
    with pytest.raises(TypeError, match=r"returned a tensor of shape \(4,\); it must return .* one number"):
        CustomLoss(lambda s, t: s.sum(-1), name="rows")(scores, targets)
    with pytest.raises(ValueError, match="without a gradient"):
        CustomLoss(lambda s, t: s.detach().mean(), name="detached")(scores, targets)
    assert CustomLoss(full_ce)(scores, targets).requires_grad


def test_configurations_check_the_loss_and_its_fingerprint():
    for cls in (TrainConfig, SeqRecConfig):
        with pytest.raises(ValueError, match="needs loss_source"):
            cls(loss="custom:mine")
        with pytest.raises(ValueError, match="is the fingerprint of a custom loss, but the loss is"):
            cls(loss="ce" if cls is SeqRecConfig else "lml", loss_source="abc")
        with pytest.raises(ValueError, match="a custom loss is 'custom:<name>'"):
            cls(loss="custom:my loss", loss_source="abc")
        assert cls(loss="custom:mine", loss_source="abc").to_dict()["loss_source"] == "abc"
        assert "loss_source" not in cls().to_dict()  # the other runs keep their keys


# ----------------------------------------------------------------------------- the chapters' exercises
# The solutions the chapters' exercises propose (02: L2 written from eq. 4, then with its single-token positions
# left out; 05: MSL written from eq. 9, then with its single-token positions kept; 06: lambda L1 + L2 between MSL
# and LML; 07: SCE from its equation on the full scores), checked against the library's forms and trained on the
# smoke profile as the exercises' cells train them.

EXERCISE_02 = '''import torch

def my_l2(logits, valid, targets):
    lse_valid = torch.logsumexp(logits.masked_fill(~valid, float("-inf")), -1)
    nll = lse_valid - logits.gather(1, targets[:, None])[:, 0]
    return nll.mean()
'''  # a notebook cell, as the solution writes it; its second part edits the last line in a later cell


def exercise_05_msl_all(logits, valid, targets):
    tau = 2.0
    f = (logits / tau).masked_fill(~valid, -math.inf)
    nll = -tau * (f.gather(1, targets[:, None])[:, 0] - torch.logsumexp(f, -1))
    return nll.mean()


def exercise_06_l1_l2(logits, valid, targets):
    lam = 0.1
    lse_all = torch.logsumexp(logits, -1)
    lse_valid = torch.logsumexp(logits.masked_fill(~valid, -math.inf), -1)
    f_y = logits.gather(1, targets[:, None])[:, 0]
    return (lam * (lse_all - lse_valid) + (lse_valid - f_y)).mean()


def exercise_07_sce(scores, targets):
    K, alpha = 10, 10.0
    neg = torch.randint(0, scores.shape[1], (len(scores), K), device=scores.device)
    s_p = scores.gather(1, targets[:, None])[:, 0]
    s_k = scores.gather(1, neg)
    return (torch.logaddexp(s_p, math.log(alpha) + torch.logsumexp(s_k, -1)) - s_p).mean()


def dense_problem(n=12, vocab=20, seed=0):
    """Random logits, valid masks (some rows with a single valid token) and valid targets."""
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(n, vocab, generator=g, dtype=torch.float64).requires_grad_()
    valid = torch.rand(n, vocab, generator=g) < 0.3
    targets = torch.randint(0, vocab, (n,), generator=g)
    valid[torch.arange(n), targets] = True
    valid[:3] = False
    valid[torch.arange(3), targets[:3]] = True  # three positions whose only valid token is the target
    return logits, valid, targets


def test_exercise_02_is_l2_only_and_its_edit_in_a_later_cell_is_another_run_msl_at_tau_1():
    """my_l2 of a notebook cell is eq. (4) and trains to the l2-only run's weights; the same name with the
    single-token positions left out of its mean, typed into a later cell, is another run, which trains to the
    weights of MSL at tau = 1."""
    from IPython.core.interactiveshell import InteractiveShell

    from llmrec.core import losses as L
    from llmrec.experiments.profile_runs import llm_config

    shell = InteractiveShell.instance()
    logits, valid, targets = (t.detach() for t in dense_problem())
    l2 = float(L.lml_decomposition_dense(logits, valid, targets)[1])
    config = llm_config("smoke", "l2-only", "synthetic", "cpu", seed=0, max_steps=2)
    cells = {"l2-only": EXERCISE_02, "msl": EXERCISE_02.replace("nll.mean()", "nll[valid.sum(-1) > 1].mean()")}
    assert cells["msl"] != EXERCISE_02  # the one line edited
    trained = {}
    for builtin, cell in cells.items():
        assert shell.run_cell(cell).success
        my_l2 = shell.user_ns["my_l2"]
        value = float(my_l2(logits, valid, targets))
        kept = builtin == "l2-only"  # single-token positions: kept in the mean (drop_singletons=False), or left out
        assert value == pytest.approx(float(L.msl_loss_dense(logits, valid, targets, drop_singletons=not kept)),
                                      rel=1e-6)
        assert value == pytest.approx(l2, rel=1e-6) if kept else value > l2  # eq. (4); the same sum, fewer positions
        trained[builtin] = runs.train(config, progress=False, loss_fn=my_l2)
        assert runs.config_of(trained[builtin])["loss"] == "custom:my_l2"
        assert same_adapter(runs.train({**config, "loss": builtin}, progress=False), trained[builtin])
    first, edited = trained.values()
    assert edited != first and runs.config_of(edited)["loss_source"] != runs.config_of(first)["loss_source"]
    assert losses(edited) != losses(first)  # trained anew (its own log, its mean), not the old run reused


def test_exercise_05_single_token_positions_scale_the_loss_and_add_no_gradient():
    from llmrec.core import losses as L

    logits, valid, targets = dense_problem()
    kept, dropped = exercise_05_msl_all(logits, valid, targets), eq9_msl(logits, valid, targets)
    assert float(dropped) == pytest.approx(float(L.msl_loss_dense(logits, valid, targets, tau=2.0)), rel=1e-6)
    counted = int((valid.sum(-1) > 1).sum())
    assert float(kept) == pytest.approx(float(dropped) * counted / len(targets), rel=1e-12)  # the mean falls
    g_kept, = torch.autograd.grad(kept, logits)
    g_dropped, = torch.autograd.grad(dropped, logits)
    assert torch.all(g_kept[:3] == 0)  # no gradient of their own: one valid token has probability 1 whatever f is
    torch.testing.assert_close(g_kept, g_dropped * counted / len(targets))  # the same direction, a smaller step


def test_exercise_06_is_a_tenth_of_l1_plus_l2_and_trains_from_the_lml_configuration():
    from llmrec.core import losses as L
    from llmrec.experiments import profile_runs
    from llmrec.experiments.profile_runs import llm_config

    logits, valid, targets = dense_problem()
    l1, l2 = L.lml_decomposition_dense(logits, valid, targets)
    assert float(exercise_06_l1_l2(logits, valid, targets)) == pytest.approx(float(0.1 * l1 + l2), rel=1e-6)
    run = runs.train(llm_config("smoke", "lml", "synthetic", "cpu", seed=0, max_steps=2), progress=False,
                     loss_fn=exercise_06_l1_l2)
    ev = profile_runs.llm_eval(run, "smoke", "test", "likelihood", progress=False)
    assert math.isfinite(ev["summary"]["nll_valid"]) and runs.config_of(run)["loss"] == "custom:exercise_06_l1_l2"
    assert all("grad_norm_l1" in r for r in rundir.read_log(run) if "loss" in r)  # the LML run's Figure 3 log


def test_exercise_07_is_sce_on_the_negatives_it_draws_and_trains_sasrec():
    from llmrec.core import losses as L
    from llmrec.experiments import profile_runs

    scores, targets = torch.randn(30, 200, dtype=torch.float64), torch.randint(0, 200, (30,))
    torch.manual_seed(1)
    mine = exercise_07_sce(scores, targets)
    torch.manual_seed(1)
    neg = torch.randint(0, 200, (30, 10))  # the same draw
    assert float(mine) == pytest.approx(float(L.sce_loss(scores.gather(1, targets[:, None])[:, 0],
                                                         scores.gather(1, neg), alpha=10.0)), rel=1e-6)
    config = profile_runs.seqrec_config("smoke", "synthetic", model="sasrec", epochs=2, patience=None)
    run = runs.train(config, progress=False, loss_fn=exercise_07_sce)
    assert runs.evaluate(run, "test", "full", progress=False)["summary"]["ndcg@10"] > 0
