"""The loss modules of chainrule.nn: values and gradients against written-out float64 formulas
and against torch.nn's modules (where installed), the deprecated size_average/reduce mapping,
weights as buffers, and bad options."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

import chainrule as cr
from chainrule import nn

rng = np.random.default_rng(11)


def _t(a, grad=False):
    return cr.tensor(a, dtype=cr.float64, requires_grad=grad)


def _log_softmax(x, axis):
    m = x.max(axis=axis, keepdims=True)
    return x - m - np.log(np.exp(x - m).sum(axis=axis, keepdims=True))


# -- written-out references -------------------------------------------------------------------
def test_pointwise_losses_equal_their_formulas():
    x, y = rng.standard_normal((4, 3)), rng.standard_normal((4, 3))
    d = x - y
    a = np.abs(d)
    cases = [
        (nn.MSELoss(), np.mean(d**2)),
        (nn.MSELoss(reduction="sum"), np.sum(d**2)),
        (nn.L1Loss(reduction="none"), a),
        (nn.L1Loss(), np.mean(a)),
        (nn.SmoothL1Loss(beta=0.5), np.mean(np.where(a < 0.5, 0.5 * d**2 / 0.5, a - 0.25))),
        (nn.HuberLoss(delta=0.5), np.mean(np.where(a < 0.5, 0.5 * d**2, 0.5 * (a - 0.25)))),
        (nn.HuberLoss(reduction="sum"), np.sum(np.where(a < 1, 0.5 * d**2, a - 0.5))),
    ]
    for module, want in cases:
        got = module(_t(x), _t(y))
        np.testing.assert_allclose(got._data, want, rtol=1e-12, err_msg=repr(module))


def test_mse_loss_gradient_is_two_d_over_n():
    x, y = rng.standard_normal((5, 2)), rng.standard_normal((5, 2))
    xc = _t(x, grad=True)
    nn.MSELoss()(xc, _t(y)).backward()
    np.testing.assert_allclose(xc.grad._data, 2 * (x - y) / x.size, rtol=1e-12)


def test_cross_entropy_loss_with_weight_ignore_index_and_smoothing():
    N, C = 7, 4
    x = rng.standard_normal((N, C))
    t = rng.integers(0, C, N)
    t[2] = 1
    t[5] = -100
    w = rng.uniform(0.5, 2.0, C)
    eps = 0.2
    lp = _log_softmax(x, 1)
    keep = t != -100
    ti = np.where(keep, t, 0)
    nll = -lp[np.arange(N), ti] * w[ti] * keep
    smooth = -(lp * w).sum(1) / C * keep
    want = ((1 - eps) * nll.sum() + eps * smooth.sum()) / (w[ti] * keep).sum()
    xc = _t(x, grad=True)
    loss = nn.CrossEntropyLoss(weight=_t(w), label_smoothing=eps)(xc, cr.tensor(t))
    np.testing.assert_allclose(loss.item(), want, rtol=1e-12)
    # the gradient of the unsmoothed, unweighted mean is (softmax - onehot) / N_kept
    xc = _t(x, grad=True)
    nn.CrossEntropyLoss()(xc, cr.tensor(t)).backward()
    g = np.exp(lp)
    g[np.arange(N), ti] -= 1
    g = g * keep[:, None] / keep.sum()
    np.testing.assert_allclose(xc.grad._data, g, rtol=1e-10, atol=1e-14)


def test_nll_loss_with_weight_is_weighted_mean_of_picked_log_probs():
    lp = _log_softmax(rng.standard_normal((6, 3)), 1)
    t = np.array([0, 2, 1, 1, 0, 2])
    w = np.array([0.5, 2.0, 1.5])
    want = -(lp[np.arange(6), t] * w[t]).sum() / w[t].sum()
    got = nn.NLLLoss(weight=_t(w))(_t(lp), cr.tensor(t))
    np.testing.assert_allclose(got.item(), want, rtol=1e-12)
    got = nn.NLLLoss(reduction="none", ignore_index=2)(_t(lp), cr.tensor(t))
    np.testing.assert_allclose(got._data, np.where(t == 2, 0.0, -lp[np.arange(6), t]), rtol=1e-12)


def test_bce_losses_equal_their_formulas():
    p, y = rng.uniform(0.05, 0.95, (4, 3)), rng.uniform(0, 1, (4, 3))
    w = rng.uniform(0.5, 2, 3)
    want = np.mean(-w * (y * np.log(p) + (1 - y) * np.log(1 - p)))
    np.testing.assert_allclose(nn.BCELoss(weight=_t(w))(_t(p), _t(y)).item(), want, rtol=1e-12)
    x = rng.standard_normal((4, 3)) * 3
    pw = rng.uniform(0.5, 3, 3)
    s = 1 / (1 + np.exp(-x))
    want = -w * (pw * y * np.log(s) + (1 - y) * np.log(1 - s))
    got = nn.BCEWithLogitsLoss(weight=_t(w), pos_weight=_t(pw), reduction="none")(_t(x), _t(y))
    np.testing.assert_allclose(got._data, want, rtol=1e-10)


def test_kl_div_loss_batchmean_and_log_target():
    x = np.log(rng.dirichlet(np.ones(5), 3))
    q = rng.dirichlet(np.ones(5), 3)
    pointwise = q * (np.log(q) - x)
    got = nn.KLDivLoss(reduction="batchmean")(_t(x), _t(q))
    np.testing.assert_allclose(got.item(), pointwise.sum() / 3, rtol=1e-12)
    got = nn.KLDivLoss(reduction="sum", log_target=True)(_t(x), _t(np.log(q)))
    np.testing.assert_allclose(got.item(), pointwise.sum(), rtol=1e-12)
    np.testing.assert_allclose(nn.KLDivLoss()(_t(x), _t(q)).item(), pointwise.mean(),
                               rtol=1e-12)


# -- options, buffers, errors -----------------------------------------------------------------
@pytest.mark.parametrize("size_average,reduce,expected", [
    (None, None, "mean"), (True, None, "mean"), (None, True, "mean"), (True, True, "mean"),
    (False, None, "sum"), (False, True, "sum"), (None, False, "none"), (True, False, "none"),
    (False, False, "none"),
])
def test_deprecated_size_average_and_reduce_map_as_pytorch(size_average, reduce, expected):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for cls in (nn.MSELoss, nn.L1Loss, nn.BCELoss, nn.KLDivLoss, nn.SmoothL1Loss):
            m = cls(size_average=size_average, reduce=reduce, reduction="sum")
            assert m.reduction == (expected if (size_average, reduce) != (None, None)
                                   else "sum"), cls
        m = nn.CrossEntropyLoss(None, size_average, -100, reduce)
        assert m.reduction == expected
        m = nn.NLLLoss(None, size_average, -100, reduce)
        assert m.reduction == expected
    deprecated = [w for w in caught if "size_average and reduce" in str(w.message)]
    assert len(deprecated) == (0 if (size_average, reduce) == (None, None) else 7)


def test_weights_are_buffers_in_state_dict_and_follow_to():
    w = cr.tensor([1.0, 2.0, 3.0])
    m = nn.CrossEntropyLoss(weight=w)
    assert m.weight is w
    assert [n for n, _ in m.named_buffers()] == ["weight"]
    assert list(m.state_dict()) == ["weight"]
    assert list(nn.CrossEntropyLoss().state_dict()) == []
    assert nn.CrossEntropyLoss().weight is None
    m.double()
    assert m.weight.dtype == cr.float64
    b = nn.BCEWithLogitsLoss(pos_weight=cr.tensor([2.0, 1.0]))
    assert list(b.state_dict()) == ["pos_weight"] and b.weight is None
    assert list(nn.NLLLoss(weight=w).state_dict()) == ["weight"]
    assert list(nn.BCELoss(weight=w).state_dict()) == ["weight"]
    assert list(nn.MSELoss().parameters()) == []


def test_defaults_are_pytorchs():
    ce = nn.CrossEntropyLoss()
    assert (ce.reduction, ce.ignore_index, ce.label_smoothing) == ("mean", -100, 0.0)
    assert nn.NLLLoss().ignore_index == -100
    assert nn.SmoothL1Loss().beta == 1.0 and nn.HuberLoss().delta == 1.0
    assert nn.KLDivLoss().log_target is False
    assert isinstance(nn.MSELoss(), nn.Module)


@pytest.mark.parametrize("make,exc,match", [
    (lambda: nn.MSELoss(reduction="avg"), ValueError, "MSELoss: reduction='avg'"),
    (lambda: nn.KLDivLoss(reduction="batch"), ValueError, "KLDivLoss.*'batchmean'"),
    (lambda: nn.CrossEntropyLoss(weight=[1.0, 2.0]), TypeError,
     "CrossEntropyLoss: weight must be a Tensor or None, got list"),
    (lambda: nn.BCEWithLogitsLoss(pos_weight=np.ones(2)), TypeError, "pos_weight"),
    (lambda: nn.CrossEntropyLoss(label_smoothing=1.5), ValueError, "label_smoothing"),
    (lambda: nn.HuberLoss(delta=0.0), ValueError, "HuberLoss: delta"),
    (lambda: nn.SmoothL1Loss(beta=-1.0), ValueError, "SmoothL1Loss: beta"),
])
def test_bad_options_raise_naming_the_module(make, exc, match):
    with pytest.raises(exc, match=match):
        make()


def test_loss_module_inside_a_training_step():
    model = nn.Linear(3, 1).double()
    x, y = rng.standard_normal((8, 3)), rng.standard_normal((8, 1))
    loss = nn.MSELoss()(model(_t(x)), _t(y))
    loss.backward()
    W, b = model.weight._data, model.bias._data
    r = x @ W.T + b - y
    np.testing.assert_allclose(model.weight.grad._data, 2 * r.T @ x / r.size, rtol=1e-10)


# -- against PyTorch --------------------------------------------------------------------------
def _pair(name, kwargs):
    """The module in chainrule and in torch, built with the same arguments (tensor-valued
    ones given as NumPy arrays)."""
    import torch

    kc = {k: (_t(v) if isinstance(v, np.ndarray) else v) for k, v in kwargs.items()}
    kt = {k: (torch.tensor(v) if isinstance(v, np.ndarray) else v) for k, v in kwargs.items()}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return getattr(nn, name)(**kc), getattr(torch.nn, name)(**kt)


def _check_torch(name, kwargs, x, target, int_target=False):
    torch = pytest.importorskip("torch")
    mc, mt = _pair(name, kwargs)
    xc, xt = _t(x, grad=True), torch.tensor(x, requires_grad=True)
    if int_target:
        tc, tt = cr.tensor(target), torch.tensor(target)
    else:
        tc, tt = _t(target), torch.tensor(target)
    yc, yt = mc(xc, tc), mt(xt, tt)
    np.testing.assert_allclose(yc._data, yt.detach().numpy(), rtol=1e-10, atol=1e-13,
                               err_msg=f"{name} {kwargs}")
    assert mc.reduction == mt.reduction
    u = rng.standard_normal(tuple(yt.shape))
    (yc * _t(u)).sum().backward()
    (yt * torch.tensor(u)).sum().backward()
    np.testing.assert_allclose(xc.grad._data, xt.grad.numpy(), rtol=1e-9, atol=1e-12,
                               err_msg=f"{name} {kwargs}")
    assert sorted(mc.state_dict()) == sorted(mt.state_dict())


X = rng.standard_normal((5, 4))
Y = rng.standard_normal((5, 4))


@pytest.mark.parametrize("name", ["MSELoss", "L1Loss", "SmoothL1Loss", "HuberLoss"])
@pytest.mark.parametrize("kwargs", [{}, {"reduction": "sum"}, {"reduction": "none"}])
def test_pointwise_modules_match_torch(name, kwargs):
    _check_torch(name, kwargs, X, Y)


@pytest.mark.parametrize("name,kwargs", [
    ("SmoothL1Loss", {"beta": 0.3}), ("SmoothL1Loss", {"beta": 0.0}),
    ("HuberLoss", {"delta": 2.5, "reduction": "sum"}),
    ("MSELoss", {"size_average": False}), ("L1Loss", {"reduce": False}),
    ("SmoothL1Loss", {"size_average": True, "reduce": True, "reduction": "none"}),
])
def test_pointwise_module_options_match_torch(name, kwargs):
    _check_torch(name, kwargs, X, Y)


@pytest.mark.parametrize("kwargs", [
    {}, {"weight": rng.uniform(0.5, 2, 4)}, {"ignore_index": 2, "reduction": "sum"},
    {"reduction": "none"}, {"label_smoothing": 0.1},
    {"label_smoothing": 0.3, "weight": rng.uniform(0.5, 2, 4), "ignore_index": 0},
    {"size_average": False}, {"reduce": False, "weight": rng.uniform(0.5, 2, 4)},
])
def test_cross_entropy_and_nll_modules_match_torch(kwargs):
    t = rng.integers(0, 4, 5)
    t[0] = 2
    _check_torch("CrossEntropyLoss", kwargs, X, t, int_target=True)
    kw = {k: v for k, v in kwargs.items() if k != "label_smoothing"}
    _check_torch("NLLLoss", kw, _log_softmax(X, 1), t, int_target=True)


def test_cross_entropy_module_matches_torch_on_spatial_and_soft_targets():
    x = rng.standard_normal((2, 3, 4, 2))
    t = rng.integers(0, 3, (2, 4, 2))
    _check_torch("CrossEntropyLoss", {"weight": rng.uniform(0.5, 2, 3)}, x, t, int_target=True)
    p = rng.dirichlet(np.ones(3), (2, 4, 2)).transpose(0, 3, 1, 2).copy()
    _check_torch("CrossEntropyLoss", {"label_smoothing": 0.2}, x, p)


@pytest.mark.parametrize("kwargs", [
    {}, {"weight": rng.uniform(0.5, 2, 4)}, {"reduction": "sum"}, {"reduction": "none"},
])
def test_bce_modules_match_torch(kwargs):
    p, y = rng.uniform(0.05, 0.95, (5, 4)), rng.uniform(0, 1, (5, 4))
    _check_torch("BCELoss", kwargs, p, y)
    _check_torch("BCEWithLogitsLoss", kwargs, X * 3, y)
    _check_torch("BCEWithLogitsLoss", dict(kwargs, pos_weight=rng.uniform(0.5, 3, 4)), X * 3, y)


@pytest.mark.parametrize("kwargs", [
    {"reduction": "batchmean"}, {"reduction": "sum"}, {"reduction": "none"},
    {"reduction": "batchmean", "log_target": True},
])
def test_kl_div_module_matches_torch(kwargs):
    x = _log_softmax(X, 1)
    q = rng.dirichlet(np.ones(4), 5)
    _check_torch("KLDivLoss", kwargs, x, np.log(q) if kwargs.get("log_target") else q)
