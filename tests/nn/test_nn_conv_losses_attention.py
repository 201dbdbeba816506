"""Convolution, pooling, losses, MultiheadAttention, init and nn.utils against PyTorch (float64
values and gradients) or closed forms."""

from __future__ import annotations

import math

import numpy as np
import pytest

import chainrule as cr
import chainrule.nn.functional as F
from chainrule import nn

torch = pytest.importorskip("torch")
TF = torch.nn.functional
rng = np.random.default_rng(7)


def _both(fc, ft, *arrays, rtol=1e-9, atol=1e-11):
    """fc on chainrule float64 leaves and ft on torch ones: equal values and input gradients
    (where PyTorch's gradient is a number: it gives nan for d(t log t)/dt at t = 0)."""
    c = [cr.tensor(a, dtype=cr.float64, requires_grad=True) for a in arrays]
    t = [torch.tensor(a, dtype=torch.float64, requires_grad=True) for a in arrays]
    yc, yt = fc(*c), ft(*t)
    np.testing.assert_allclose(yc._data, yt.detach().numpy(), rtol=rtol, atol=atol)
    u = rng.standard_normal(tuple(yt.shape))
    (yc * cr.tensor(u, dtype=cr.float64)).sum().backward()
    (yt * torch.tensor(u)).sum().backward()
    for a, b in zip(c, t):
        if b.grad is not None:
            ok = ~np.isnan(b.grad.numpy())
            np.testing.assert_allclose(a.grad._data[ok], b.grad.numpy()[ok], rtol=rtol, atol=atol)


@pytest.mark.parametrize("kw,wshape", [
    ({"padding": 1}, (4, 4, 3, 3)),
    ({"stride": 2, "padding": (1, 0)}, (3, 4, 3, 2)),
    ({"dilation": 2, "padding": 2, "groups": 2}, (6, 2, 3, 3)),
    ({"padding": "same"}, (3, 4, 2, 3)),
    ({}, (5, 4, 1, 1)),
    ({"stride": 3, "groups": 4}, (4, 1, 2, 2)),
    # deep kernels (Cg kh kw >= 64) take the one-GEMM column layout
    ({"padding": 1}, (8, 72, 3, 3)),
    ({"stride": 2, "padding": 1, "groups": 2}, (6, 36, 3, 2)),
    ({"dilation": 2, "padding": 3}, (3, 72, 3, 3)),
    ({}, (5, 72, 1, 1)),
])
def test_conv2d_matches_torch(kw, wshape):
    C = wshape[1] * kw.get("groups", 1)
    x, w, b = rng.standard_normal((2, C, 9, 8)), rng.standard_normal(wshape), rng.standard_normal(
        wshape[0])
    _both(lambda x, w, b: F.conv2d(x, w, b, **kw), lambda x, w, b: TF.conv2d(x, w, b, **kw),
          x, w, b)


def test_conv1d_matches_torch():
    x, w = rng.standard_normal((2, 3, 11)), rng.standard_normal((4, 3, 3))
    _both(lambda x, w: F.conv1d(x, w, stride=2, padding=1),
          lambda x, w: TF.conv1d(x, w, stride=2, padding=1), x, w)


@pytest.mark.parametrize("kw", [{"kernel_size": 2}, {"kernel_size": 3, "stride": 2, "padding": 1},
                                {"kernel_size": 3, "stride": 2, "ceil_mode": True},
                                {"kernel_size": (2, 3), "stride": 1, "padding": 1}])
@pytest.mark.parametrize("cip", [True, False])
def test_pooling_matches_torch(kw, cip):
    x = rng.standard_normal((2, 3, 9, 8))
    _both(lambda x: F.max_pool2d(x, **kw), lambda x: TF.max_pool2d(x, **kw), x)
    _both(lambda x: F.avg_pool2d(x, count_include_pad=cip, **kw),
          lambda x: TF.avg_pool2d(x, count_include_pad=cip, **kw), x)


def test_max_pool_dilation_and_return_indices_match_torch():
    x = rng.standard_normal((2, 3, 9, 8))
    _both(lambda x: F.max_pool2d(x, 2, 1, 1, dilation=2), lambda x: TF.max_pool2d(x, 2, 1, 1,
                                                                                  dilation=2), x)
    _, ic = F.max_pool2d(cr.tensor(x), 3, 2, 1, return_indices=True)
    _, it = TF.max_pool2d(torch.tensor(x), 3, 2, 1, return_indices=True)
    np.testing.assert_array_equal(ic._data, it.numpy())


@pytest.mark.parametrize("size", [1, (3, 5), (4, 4), (2, None)])
def test_adaptive_avg_pool2d_matches_torch(size):
    _both(lambda x: F.adaptive_avg_pool2d(x, size), lambda x: TF.adaptive_avg_pool2d(x, size),
          rng.standard_normal((2, 3, 8, 7)))


def test_one_hot_matches_torch():
    t = np.array([[0, 3], [2, 1]])
    np.testing.assert_array_equal(F.one_hot(cr.tensor(t), 5)._data,
                                  TF.one_hot(torch.tensor(t), 5).numpy())
    assert F.one_hot(cr.tensor(t)).shape == (2, 2, 4)


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("name,kw", [("mse_loss", {}), ("l1_loss", {}),
                                     ("smooth_l1_loss", {"beta": 0.7}),
                                     ("huber_loss", {"delta": 0.5})])
def test_pointwise_losses_match_torch(reduction, name, kw):
    x, y = rng.standard_normal((4, 3)), rng.standard_normal((4, 3))
    _both(lambda a, b: getattr(F, name)(a, b, reduction=reduction, **kw),
          lambda a, b: getattr(TF, name)(a, b, reduction=reduction, **kw), x, y)


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_binary_cross_entropy_losses_match_torch(reduction):
    p, y = rng.uniform(0.05, 0.95, (4, 3)), rng.uniform(0, 1, (4, 3))
    w = rng.uniform(0.5, 2, 3)
    _both(lambda a, b: F.binary_cross_entropy(a, b, weight=cr.tensor(w, dtype=cr.float64),
                                              reduction=reduction),
          lambda a, b: TF.binary_cross_entropy(a, b, weight=torch.tensor(w), reduction=reduction),
          p, y)
    x = rng.standard_normal((4, 3)) * 5
    pw = rng.uniform(0.5, 3, 3)
    _both(lambda a, b: F.binary_cross_entropy_with_logits(
        a, b, reduction=reduction, pos_weight=cr.tensor(pw, dtype=cr.float64)),
          lambda a, b: TF.binary_cross_entropy_with_logits(a, b, reduction=reduction,
                                                           pos_weight=torch.tensor(pw)), x, y)


@pytest.mark.parametrize("reduction", ["mean", "sum", "batchmean", "none"])
@pytest.mark.parametrize("log_target", [False, True])
def test_kl_div_matches_torch_including_zero_targets(reduction, log_target):
    x = np.log(rng.dirichlet(np.ones(4), 3))
    t = rng.dirichlet(np.ones(4), 3)
    t[0, 1] = 0.0
    if log_target:
        t = np.log(t + 0.1)
    _both(lambda a, b: F.kl_div(a, b, reduction=reduction, log_target=log_target),
          lambda a, b: TF.kl_div(a, b, reduction=reduction, log_target=log_target), x, t)


@pytest.mark.parametrize("kw", [{}, {"weight": True}, {"ignore_index": 1, "reduction": "sum"},
                                {"reduction": "none"}])
def test_nll_loss_matches_torch(kw):
    kw = dict(kw)
    x = np.log(rng.dirichlet(np.ones(4), 6)).reshape(3, 2, 4).transpose(0, 2, 1)  # (N, C, d)
    t = rng.integers(0, 4, (3, 2))
    t[0, 0] = 1
    kc, kt = dict(kw), dict(kw)
    if kw.pop("weight", False):
        w = rng.uniform(0.5, 2, 4)
        kc["weight"], kt["weight"] = cr.tensor(w, dtype=cr.float64), torch.tensor(w)
    _both(lambda a: F.nll_loss(a, cr.tensor(t), **kc), lambda a: TF.nll_loss(a, torch.tensor(t),
                                                                              **kt), x)


@pytest.mark.parametrize("batch_first", [False, True])
@pytest.mark.parametrize("need_weights", [True, False])
def test_multihead_attention_matches_torch_with_masks(batch_first, need_weights):
    m = nn.MultiheadAttention(8, 2, batch_first=batch_first).double()
    t = torch.nn.MultiheadAttention(8, 2, batch_first=batch_first).double()
    assert [n for n, _ in m.named_parameters()] == [n for n, _ in t.named_parameters()]
    t.load_state_dict({k: torch.tensor(v._data) for k, v in m.state_dict().items()})
    x = rng.standard_normal((3, 5, 8) if batch_first else (5, 3, 8))  # N = 3, L = 5
    am = rng.uniform(size=(5, 5)) > 0.7
    np.fill_diagonal(am, False)
    kpm = np.zeros((3, 5), bool)
    kpm[:, 4] = True
    cx = cr.tensor(x, dtype=cr.float64, requires_grad=True)
    tx = torch.tensor(x, requires_grad=True)
    oc, wc = m(cx, cx, cx, attn_mask=cr.tensor(am), key_padding_mask=cr.tensor(kpm),
               need_weights=need_weights)
    ot, wt = t(tx, tx, tx, attn_mask=torch.tensor(am), key_padding_mask=torch.tensor(kpm),
               need_weights=need_weights)
    np.testing.assert_allclose(oc._data, ot.detach().numpy(), rtol=1e-9, atol=1e-12)
    if need_weights:
        np.testing.assert_allclose(wc._data, wt.detach().numpy(), rtol=1e-9, atol=1e-12)
    oc.sum().backward()
    ot.sum().backward()
    np.testing.assert_allclose(cx.grad._data, tx.grad.numpy(), rtol=1e-8, atol=1e-12)
    np.testing.assert_allclose(m.in_proj_weight.grad._data, t.in_proj_weight.grad.numpy(),
                               rtol=1e-8, atol=1e-12)


def test_multihead_attention_cross_attention_matches_torch():
    m = nn.MultiheadAttention(6, 3, batch_first=True).double()
    t = torch.nn.MultiheadAttention(6, 3, batch_first=True).double()
    t.load_state_dict({k: torch.tensor(v._data) for k, v in m.state_dict().items()})
    q, kv = rng.standard_normal((2, 4, 6)), rng.standard_normal((2, 7, 6))
    _both(lambda q, kv: m(q, kv, kv)[0], lambda q, kv: t(q, kv, kv)[0], q, kv, rtol=1e-8)


def test_conv_layers_match_torch_given_the_same_weights():
    cr.manual_seed(0)
    m = nn.Sequential(nn.Conv2d(2, 4, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                      nn.Conv2d(4, 4, 3, stride=2, groups=2), nn.AdaptiveAvgPool2d(1),
                      nn.Flatten(), nn.Linear(4, 3)).double()
    t = torch.nn.Sequential(torch.nn.Conv2d(2, 4, 3, padding=1), torch.nn.ReLU(),
                            torch.nn.MaxPool2d(2), torch.nn.Conv2d(4, 4, 3, stride=2, groups=2),
                            torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(),
                            torch.nn.Linear(4, 3)).double()
    t.load_state_dict({k: torch.tensor(v._data) for k, v in m.state_dict().items()})
    _both(m, t, rng.standard_normal((3, 2, 12, 12)), rtol=1e-8)


# ----------------------------------------------------------------------------- init, utils


@pytest.mark.parametrize("name,std,kw", [
    ("xavier_uniform_", math.sqrt(2 / (300 + 200)), {}),
    ("xavier_normal_", math.sqrt(2 / (300 + 200)), {}),
    ("kaiming_uniform_", math.sqrt(2) / math.sqrt(300), {"nonlinearity": "relu"}),
    ("kaiming_normal_", math.sqrt(2) / math.sqrt(200), {"mode": "fan_out",
                                                         "nonlinearity": "relu"}),
    ("normal_", 0.02, {"std": 0.02}),
    ("trunc_normal_", 0.8796, {}),  # N(0, 1) truncated to [-2, 2]: std sqrt(1 - 4 phi(2)/...)
])
def test_init_functions_have_the_closed_form_std_and_match_torchs_samples(name, std, kw):
    cr.manual_seed(0)
    w = cr.empty(200, 300)
    getattr(nn.init, name)(w, **kw)
    tw = torch.empty(200, 300)
    getattr(torch.nn.init, name)(tw, **kw)
    assert abs(w._data.std() / std - 1) < 0.02
    assert abs(w._data.std() / tw.std().item() - 1) < 0.03
    if name == "trunc_normal_":
        assert w._data.min() >= -2 and w._data.max() <= 2


def test_conv_and_attention_default_inits_match_torchs_distributions():
    cr.manual_seed(0)
    torch.manual_seed(0)
    pairs = [(nn.Conv2d(16, 64, 3).weight, torch.nn.Conv2d(16, 64, 3).weight),
             (nn.Conv2d(16, 64, 3).bias, torch.nn.Conv2d(16, 64, 3).bias),
             (nn.MultiheadAttention(64, 4).in_proj_weight,
              torch.nn.MultiheadAttention(64, 4).in_proj_weight)]
    for c, t in pairs:
        t = t.detach().numpy()
        assert abs(c._data.std() / t.std() - 1) < 0.1
        assert abs(np.abs(c._data).max() / np.abs(t).max() - 1) < 0.05


def test_init_is_reproducible_under_manual_seed():
    cr.manual_seed(5)
    a = nn.Linear(4, 3).weight._data.copy()
    cr.manual_seed(5)
    np.testing.assert_array_equal(nn.Linear(4, 3).weight._data, a)


def test_clip_grad_norm_returns_the_total_norm_and_scales_like_torch():
    grads = [rng.standard_normal((3, 4)), rng.standard_normal(5)]
    for norm_type in (2.0, 1.0, math.inf):
        ps = [nn.Parameter(cr.zeros(*g.shape, dtype=cr.float64)) for g in grads]
        ts = [torch.zeros(g.shape, dtype=torch.float64, requires_grad=True) for g in grads]
        for p, t, g in zip(ps, ts, grads):
            p.grad, t.grad = cr.tensor(g, dtype=cr.float64), torch.tensor(g)
        total = nn.utils.clip_grad_norm_(ps, 0.5, norm_type)
        ttotal = torch.nn.utils.clip_grad_norm_(ts, 0.5, norm_type)
        assert math.isclose(float(total), float(ttotal), rel_tol=1e-12)
        for p, t in zip(ps, ts):
            np.testing.assert_allclose(p.grad._data, t.grad.numpy(), rtol=1e-12)
