import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from llmrec.core import losses as L


def problem(N=12, V=40, seed=0, dtype=torch.float32, singleton_rows=(3,), pad_rows=(5,)):
    """Random logits (N, V), a random valid mask containing the target, some |Z_valid| = 1 rows and padding."""
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(N, V, generator=g, dtype=torch.float32) * 3
    targets = torch.randint(0, V, (N,), generator=g)
    valid = torch.rand(N, V, generator=g) < 0.3
    valid[torch.arange(N), targets] = True
    for r in singleton_rows:
        valid[r] = False
        valid[r, targets[r]] = True
    for r in pad_rows:
        targets[r] = -1
    return logits.to(dtype).requires_grad_(), valid, targets


def by_loops(logits, valid, targets, tau=1.0):
    """Independent per-position formulas with Python loops and math (no masking tricks)."""
    l1 = l2 = lml = msl = 0.0
    n = n_msl = 0
    for f, m, y in zip(logits.detach().double().tolist(), valid.tolist(), targets.tolist()):
        if y < 0:
            continue
        all_sum = sum(math.exp(x) for x in f)
        val_sum = sum(math.exp(x) for x, ok in zip(f, m) if ok)
        l1 += -math.log(val_sum / all_sum)
        l2 += -math.log(math.exp(f[y]) / val_sum)
        lml += -math.log(math.exp(f[y]) / all_sum)
        n += 1
        if sum(m) > 1:
            val_tau = sum(math.exp(x / tau) for x, ok in zip(f, m) if ok)
            msl += -tau * math.log(math.exp(f[y] / tau) / val_tau)
            n_msl += 1
    return l1 / n, l2 / n, lml / n, msl / n_msl


def test_dense_losses_match_loop_formulas():
    logits, valid, targets = problem()
    l1, l2, lml, msl = by_loops(logits, valid, targets, tau=2.0)
    d1, d2 = L.lml_decomposition_dense(logits, valid, targets)
    assert d1.item() == pytest.approx(l1, rel=1e-5)
    assert d2.item() == pytest.approx(l2, rel=1e-5)
    assert L.lml_loss_dense(logits, targets).item() == pytest.approx(lml, rel=1e-5)
    assert L.msl_loss_dense(logits, valid, targets, tau=2.0).item() == pytest.approx(msl, rel=1e-5)


def test_lml_equals_l1_plus_l2_and_msl_below_lml():
    logits, valid, targets = problem(N=50, V=200, seed=3)
    l1, l2 = L.lml_decomposition_dense(logits, valid, targets, reduction="none")
    lml = L.lml_loss_dense(logits, targets, reduction="none")
    assert torch.allclose(lml, l1 + l2, atol=1e-5)
    msl = L.msl_loss_dense(logits, valid, targets, drop_singletons=False, reduction="none")
    assert torch.all(msl <= lml + 1e-6)
    assert torch.all(l1 >= -1e-6)


def test_lml_matches_torch_cross_entropy():
    logits, _, targets = problem(pad_rows=())
    ref = F.cross_entropy(logits, targets)
    assert torch.allclose(L.lml_loss_dense(logits, targets), ref, atol=1e-6)


@pytest.mark.parametrize("alpha", [None, 3.0, "auto"])
@pytest.mark.parametrize("tau", [1.0, 2.5])
def test_fast_equals_dense_values_and_gradients(alpha, tau):
    logits, valid, targets = problem(N=20, V=60, seed=1)
    dense = L.msl_loss_dense(logits, valid, targets, tau=tau, alpha=alpha)
    (g_dense,) = torch.autograd.grad(dense, logits)
    v = L.ValidLogits.from_dense(logits, valid, targets)
    fast = L.msl_loss(v, tau=tau, alpha=alpha)
    (g_fast,) = torch.autograd.grad(fast, logits)
    assert torch.allclose(dense, fast, atol=1e-6)
    assert torch.allclose(g_dense, g_fast, atol=1e-6)


def test_fast_decomposition_equals_dense():
    logits, valid, targets = problem(N=20, V=60, seed=2)
    v = L.ValidLogits.from_dense(logits, valid, targets)
    for a, b in zip(L.lml_decomposition(v), L.lml_decomposition_dense(logits, valid, targets)):
        assert torch.allclose(a, b, atol=1e-6)
    assert torch.allclose(L.lml_loss(v), L.lml_loss_dense(logits, targets), atol=1e-6)


def test_projection_equals_full_logits_in_fp32_and_close_in_bf16():
    g = torch.Generator().manual_seed(0)
    N, d, V = 16, 32, 500
    W = torch.randn(V, d, generator=g)
    for dtype, tol in [(torch.float32, 1e-5), (torch.bfloat16, 3e-2)]:
        h = torch.randn(N, d, generator=g).to(dtype).requires_grad_()
        targets = torch.randint(0, V, (N,), generator=g)
        valid = torch.rand(N, V, generator=g) < 0.05
        valid[torch.arange(N), targets] = True
        full = (h @ W.to(dtype).T)
        dense = L.msl_loss_dense(full, valid, targets, tau=1.7)
        (gd,) = torch.autograd.grad(dense, h)
        ref = L.ValidLogits.from_dense(full.detach(), valid, targets)
        cols = torch.argsort((~valid).to(torch.int8), dim=-1, stable=True)[:, : ref.mask.shape[1]]
        v = L.project_valid(h, W, torch.where(ref.mask, cols, 0), ref.mask, ref.target_index, full=True)
        fast = L.msl_loss(v, tau=1.7)
        (gf,) = torch.autograd.grad(fast, h)
        assert torch.allclose(dense.float(), fast.float(), atol=tol, rtol=tol)
        assert torch.allclose(gd.float(), gf.float(), atol=tol, rtol=tol)
        assert torch.allclose(v.lse_all, torch.logsumexp(full.float(), -1), atol=tol, rtol=tol)


def test_fast_tempered_lml_equals_dense_with_gradients():
    """Training's tempered LML (the whole vocabulary's logsumexp at tau, from the projection) against eq. (1)
    tempered on dense logits; without the logsumexp at that tau the fast form refuses."""
    g = torch.Generator().manual_seed(3)
    N, d, V = 12, 16, 300
    W = torch.randn(V, d, generator=g)
    h = torch.randn(N, d, generator=g, requires_grad=True)
    targets = torch.randint(0, V, (N,), generator=g)
    targets[-2:] = -100  # padding positions
    valid = torch.rand(N, V, generator=g) < 0.05
    valid[torch.arange(N), targets.clamp_min(0)] = True
    ref = L.ValidLogits.from_dense((h @ W.T).detach(), valid, targets)
    cols = torch.argsort((~valid).to(torch.int8), dim=-1, stable=True)[:, : ref.mask.shape[1]]
    for tau in (1.0, 0.5, 3.0):
        dense = L.lml_loss_dense(h @ W.T, targets, tau=tau)
        (gd,) = torch.autograd.grad(dense, h)
        v = L.project_valid(h, W, torch.where(ref.mask, cols, 0), ref.mask, ref.target_index, full=True,
                            full_tau=tau)
        fast = L.lml_loss(v, tau=tau)
        (gf,) = torch.autograd.grad(fast, h)
        assert torch.allclose(dense, fast, atol=1e-5), tau
        assert torch.allclose(gd, gf, atol=1e-5), tau
    v = L.project_valid(h, W, torch.where(ref.mask, cols, 0), ref.mask, ref.target_index, full=True)
    with pytest.raises(ValueError, match="tau=3.0"):
        L.lml_loss(v, tau=3.0)


def test_tau_one_and_alpha_one_recover_msl():
    logits, valid, targets = problem(seed=4)
    base = L.msl_loss_dense(logits, valid, targets)
    assert torch.allclose(L.msl_loss_dense(logits, valid, targets, tau=1.0, alpha=1.0), base, atol=1e-6)
    v = L.ValidLogits.from_dense(logits, valid, targets)
    assert torch.allclose(L.msl_loss(v, tau=1.0, alpha=1.0), base, atol=1e-6)
    lml_tau = L.lml_loss_dense(logits, targets, tau=1.0)
    assert torch.allclose(lml_tau, L.lml_loss_dense(logits, targets), atol=1e-7)


def test_singletons_and_padding_are_finite_and_excluded():
    logits, valid, targets = problem()
    v = L.ValidLogits.from_dense(logits, valid, targets)
    per = L.msl_loss(v, reduction="none")
    assert torch.isfinite(per).all() and per[3] == 0 and per[5] == 0
    total = L.msl_loss(v, reduction="sum")
    assert torch.allclose(L.msl_loss(v), total / 10)  # 12 rows - 1 padding - 1 singleton
    assert torch.allclose(L.msl_loss(v, drop_singletons=False), total / 11)
    loss = L.msl_loss(v, tau=3.0)
    loss.backward()
    assert torch.isfinite(logits.grad).all()
    # a batch made only of singletons and padding gives 0, not nan
    only = L.ValidLogits(torch.zeros(2, 1), torch.ones(2, 1, dtype=torch.bool), torch.tensor([0, -1]))
    assert float(L.msl_loss(only)) == 0.0


def test_gradient_weight_is_one_minus_p_valid_by_autograd():
    """Eq. (7): d MSL_t / d f(y_t) = -(1 - P_valid(y_t)) at tau = 1, so w = -grad."""
    logits, valid, targets = problem(pad_rows=(), singleton_rows=())
    v = L.ValidLogits.from_dense(logits, valid, targets)
    per = L.msl_loss(v, reduction="sum")
    (g,) = torch.autograd.grad(per, logits)
    w_autograd = -g[torch.arange(len(targets)), targets]
    assert torch.allclose(L.gradient_weights(v), w_autograd, atol=1e-6)
    # LML: weight over the whole vocabulary
    (g2,) = torch.autograd.grad(L.lml_loss_dense(logits, targets, reduction="sum"), logits)
    assert torch.allclose(L.gradient_weights(v, over="all"), -g2[torch.arange(len(targets)), targets], atol=1e-6)
    assert torch.all(L.gradient_weights(v) <= L.gradient_weights(v, over="all") + 1e-6)  # masking shrinks w


# ---------------------------------------------------------------- ATS


def gaussian_problem(N=400, K=60, mu=0.0, sigma=2.0, delta=6.0, seed=0):
    g = torch.Generator().manual_seed(seed)
    logits = mu + sigma * torch.randn(N, K, generator=g)
    logits[:, 0] = mu + delta + 0.3 * torch.randn(N, generator=g)
    return L.ValidLogits(logits, torch.ones(N, K, dtype=torch.bool), torch.zeros(N, dtype=torch.long))


@pytest.mark.parametrize("root", ["+", "-"])
def test_ats_tau_solves_the_quadratic(root):
    v = gaussian_problem()
    tau, st = L.ats_temperature(v, eta=0.25, root=root, clamp=None)
    C = math.log(st["m"] * 0.25)
    assert C * tau ** 2 - st["delta"] * tau + st["sigma2"] / 2 == pytest.approx(0, abs=1e-6)


def p_valid(v, tau):
    return float(torch.exp(v.target_logit() / tau - torch.logsumexp(v.masked(tau), -1)).mean())


@pytest.mark.parametrize("kw", [dict(K=200, sigma=1.0, delta=5.0), dict(K=50, sigma=1.5, delta=4.0)])
def test_ats_gaussian_logits_give_p_valid_near_eta(kw):
    """On Gaussian valid logits the '+' root (authors' code) lands near eta and near the
    numerical root; the paper's printed '-' root is the small-tau solution where the
    Gaussian log-sum-exp approximation fails, and P_valid there stays far above eta."""
    v = gaussian_problem(**kw)
    tau, _ = L.ats_temperature(v, eta=0.25, root="+", clamp=None)
    assert p_valid(v, tau) == pytest.approx(0.25, abs=0.05)
    tau_num = L.solve_tau_numeric(v, eta=0.25)
    assert tau == pytest.approx(tau_num, rel=0.1)
    tau_minus, _ = L.ats_temperature(v, eta=0.25, root="-", clamp=None)
    assert tau_minus < tau and p_valid(v, tau_minus) > 0.5
    # the numerical root solves its equation exactly
    assert p_valid(v, tau_num) == pytest.approx(0.25, abs=1e-6)


def test_ats_guards():
    # m * eta <= 1: C <= 0 still gives a finite positive tau
    for m in (2.0, 4.0):
        tau = L.ats_tau_from_stats(delta=3.0, sigma2=1.0, m=m, eta=0.25)
        assert math.isfinite(tau) and tau > 0
        assert math.log(m * 0.25) * tau ** 2 - 3.0 * tau + 0.5 == pytest.approx(0, abs=1e-9)
    # negative discriminant: clamped at 0 -> tau = delta / (2C)
    C = math.log(100 * 0.25)
    assert L.ats_tau_from_stats(delta=1.0, sigma2=10.0, m=100, eta=0.25) == pytest.approx(1.0 / (2 * C))
    # clamping, and the positions='code' variant needs first-token flags
    v = gaussian_problem()
    tau, _ = L.ats_temperature(v, clamp=(1.5, 5.0))
    assert 1.5 <= tau <= 5.0
    with pytest.raises(ValueError, match="first"):
        L.ats_temperature(v, positions="code")
    v.first = torch.zeros(len(v.target_index), dtype=torch.bool)
    v.first[::10] = True
    tau_code, st = L.ats_temperature(v, positions="code")
    assert st["n_positions"] == 40 and math.isfinite(tau_code)


def test_ats_controller_ema():
    v = gaussian_problem()
    c = L.ATSController(ema=0.05, clamp=None)
    t1 = c.step(v)
    t_hat, _ = L.ats_temperature(gaussian_problem(delta=2.0), clamp=None)
    t2 = c.step(gaussian_problem(delta=2.0))
    assert t2 == pytest.approx(0.95 * t1 + 0.05 * t_hat)


# ---------------------------------------------------------------- S-DPO and item losses


def test_sdpo_with_one_negative_is_dpo():
    g = torch.Generator().manual_seed(0)
    rp, rn = torch.randn(8, generator=g), torch.randn(8, 1, generator=g)
    dpo = -F.logsigmoid(0.5 * (rp - rn[:, 0])).mean()
    assert torch.allclose(L.sdpo_loss(rp, rn, beta=0.5), dpo, atol=1e-6)
    rn3 = torch.randn(8, 3, generator=g)
    by_hand = -torch.log(torch.sigmoid(-torch.log(torch.exp(rn3 - rp[:, None]).sum(1)))).mean()
    assert torch.allclose(L.sdpo_loss(rp, rn3, beta=1.0), by_hand, atol=1e-5)


def test_item_losses():
    g = torch.Generator().manual_seed(0)
    scores = torch.randn(6, 30, generator=g)
    target = torch.randint(0, 30, (6,), generator=g)
    s64 = scores.double()
    by_hand = (-(s64.gather(1, target[:, None])[:, 0].exp() / s64.exp().sum(1)).log()).mean()  # -log softmax_p
    assert float(L.ce_loss(scores, target)) == pytest.approx(float(by_hand), abs=1e-6)
    pos, neg = torch.randn(6, generator=g), torch.randn(6, 5, generator=g)
    assert torch.allclose(L.sce_loss(pos, neg, alpha=1.0), L.sampled_softmax_loss(pos, neg))
    assert torch.allclose(L.sampled_softmax_loss(pos, neg),
                          F.cross_entropy(torch.cat([pos[:, None], neg], 1), torch.zeros(6, dtype=torch.long)), atol=1e-6)
    # SCE: alpha multiplies the negative part of the denominator
    a = 10.0
    hand = -(pos - torch.log(torch.exp(pos) + a * torch.exp(neg).sum(1))).mean()
    assert torch.allclose(L.sce_loss(pos, neg, alpha=a), hand, atol=1e-5)
    # hand-computed BPR and BCE: s_p = 2, s_n = 0
    p, n = torch.tensor([2.0]), torch.tensor([[0.0]])
    assert float(L.bpr_loss(p, n)) == pytest.approx(math.log(1 + math.exp(-2)))
    assert float(L.bce_loss(p, n)) == pytest.approx(math.log(1 + math.exp(-2)) + math.log(2))
    with pytest.raises(ValueError, match="alpha"):
        L.sce_loss(pos, neg, alpha=0)
