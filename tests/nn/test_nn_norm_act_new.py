"""BatchNorm1d/2d/3d, InstanceNorm, GroupNorm, F.normalize and the added activations: values,
gradients and running statistics against formulas written here and against PyTorch (train and
eval mode); state dicts in PyTorch's layout, written out as arrays."""

from __future__ import annotations

import numpy as np
import pytest

import chainrule as cr
import chainrule.nn as nn
import chainrule.nn.functional as F
from chainrule.autograd import gradcheck, gradgradcheck

rng = np.random.default_rng(3)


def t64(*shape, lo=-2.0, hi=2.0):
    return cr.tensor(rng.uniform(lo, hi, shape), dtype=cr.float64, requires_grad=True)


# ----------------------------------------------------------------------------- formulas


def test_batch_norm_training_matches_the_formula_and_updates_running_stats():
    x = rng.standard_normal((6, 3, 4))
    m = nn.BatchNorm1d(3, momentum=0.25).double()
    y = m(cr.tensor(x))
    mu, var = x.mean((0, 2)), x.var((0, 2))
    np.testing.assert_allclose(y.data, (x - mu[:, None]) / np.sqrt(var[:, None] + 1e-5),
                               atol=1e-12)
    np.testing.assert_allclose(m.running_mean.data, 0.25 * mu, atol=1e-12)
    np.testing.assert_allclose(m.running_var.data, 0.75 + 0.25 * x.var((0, 2), ddof=1),
                               atol=1e-12)
    assert int(m.num_batches_tracked.data) == 1
    m.eval()
    y = m(cr.tensor(x))
    np.testing.assert_allclose(
        y.data, (x - m.running_mean.data[:, None]) / np.sqrt(m.running_var.data[:, None] + 1e-5),
        atol=1e-12)
    assert int(m.num_batches_tracked.data) == 1


def test_batch_norm_momentum_none_is_a_cumulative_average():
    m = nn.BatchNorm1d(2, momentum=None).double()
    xs = [rng.standard_normal((5, 2)) for _ in range(3)]
    for x in xs:
        m(cr.tensor(x))
    np.testing.assert_allclose(m.running_mean.data, np.mean([x.mean(0) for x in xs], 0),
                               atol=1e-12)
    np.testing.assert_allclose(m.running_var.data, np.mean([x.var(0, ddof=1) for x in xs], 0),
                               atol=1e-12)


def test_batch_norm_without_running_stats_uses_batch_stats_in_eval():
    m = nn.BatchNorm2d(2, affine=False, track_running_stats=False).double().eval()
    assert m.running_mean is None and not list(m.parameters())
    assert list(m.state_dict()) == []
    x = rng.standard_normal((3, 2, 2, 2))
    y = m(cr.tensor(x))
    mu, var = x.mean((0, 2, 3), keepdims=True), x.var((0, 2, 3), keepdims=True)
    np.testing.assert_allclose(y.data, (x - mu) / np.sqrt(var + 1e-5), atol=1e-12)


def test_norm_modules_name_bad_input():
    with pytest.raises(ValueError, match="BatchNorm2d.*expected \\(N, C, H, W\\)"):
        nn.BatchNorm2d(3)(cr.zeros(2, 3, 4))
    with pytest.raises(ValueError, match="C = num_features = 3"):
        nn.BatchNorm1d(3)(cr.zeros(2, 4))
    with pytest.raises(ValueError, match="more than 1 value per channel"):
        nn.BatchNorm1d(3)(cr.zeros(1, 3))
    with pytest.raises(ValueError, match="divisible by num_groups"):
        nn.GroupNorm(3, 4)
    with pytest.raises(ValueError, match="group_norm.*divisible"):
        F.group_norm(cr.zeros(2, 4, 3), 3)


@pytest.mark.parametrize("fn", [
    lambda x, w, b: F.group_norm(x, 2, w, b),
    lambda x, w, b: F.instance_norm(x, weight=w, bias=b),
    lambda x, w, b: F.batch_norm(x, None, None, w, b, training=True),
    lambda x, w, b: F.normalize(x, dim=1) * w[:, None] + b[:, None],
    lambda x, w, b: F.normalize(x, p=1.5, dim=-1),
    lambda x, w, b: F.local_response_norm(x, 3, 0.5, 0.7, 1.5) * w[:, None],
], ids=["group", "instance", "batch", "normalize", "normalize-p", "local-response"])
def test_channel_norms_gradcheck_and_gradgradcheck(fn):
    xs = [t64(2, 4, 3), t64(4, lo=0.5), t64(4)]
    assert gradcheck(fn, xs)
    assert gradgradcheck(fn, xs)


ACTS = {
    "elu": (lambda x: F.elu(x, 0.7), lambda x: np.where(x > 0, x, 0.7 * np.expm1(x))),
    "selu": (F.selu, lambda x: 1.0507009873554805 * np.where(
        x > 0, x, 1.6732632423543772 * np.expm1(x))),
    "celu": (lambda x: F.celu(x, 1.5), lambda x: np.where(x > 0, x, 1.5 * np.expm1(x / 1.5))),
    "glu": (F.glu, lambda x: x[..., :2] / (1 + np.exp(-x[..., 2:]))),
    "hardtanh": (lambda x: F.hardtanh(x, -0.5, 1.0), lambda x: np.clip(x, -0.5, 1.0)),
    "relu6": (lambda x: F.relu6(x * 4), lambda x: np.clip(4 * x, 0, 6)),
    "hardsigmoid": (lambda x: F.hardsigmoid(x * 4), lambda x: np.clip(4 * x / 6 + 0.5, 0, 1)),
    "hardswish": (lambda x: F.hardswish(x * 4),
                  lambda x: 4 * x * np.clip(4 * x + 3, 0, 6) / 6),
    "mish": (F.mish, lambda x: x * np.tanh(np.log1p(np.exp(x)))),
    "logsigmoid": (F.logsigmoid, lambda x: -np.log1p(np.exp(-x))),
    "softsign": (F.softsign, lambda x: x / (1 + np.abs(x))),
    "tanhshrink": (F.tanhshrink, lambda x: x - np.tanh(x)),
    "hardshrink": (F.hardshrink, lambda x: np.where(np.abs(x) > 0.5, x, 0)),
    "softshrink": (F.softshrink, lambda x: np.where(x > 0.5, x - 0.5,
                                                    np.where(x < -0.5, x + 0.5, 0))),
    "threshold": (lambda x: F.threshold(x, 0.3, -2.0), lambda x: np.where(x > 0.3, x, -2.0)),
}


@pytest.mark.parametrize("name", sorted(ACTS))
def test_activation_values_and_gradients(name):
    fn, ref = ACTS[name]
    a = rng.uniform(-2, 2, (3, 4))
    kinks = [0.0, 0.5, -0.5, 0.3, 0.75, -0.75, 1.0, 1.5, -0.125]
    for k in kinks:  # keep away from the kinks for finite differences
        a[np.abs(a - k) < 0.03] = k + 0.05
    x = cr.tensor(a, dtype=cr.float64, requires_grad=True)
    np.testing.assert_allclose(fn(x).data, ref(a), atol=1e-12)
    assert gradcheck(fn, [x])
    assert gradgradcheck(fn, [x])


def test_prelu_per_channel_and_single():
    x, w = t64(2, 3, 2), t64(3, lo=0.1, hi=0.5)
    y = F.prelu(x, w)
    np.testing.assert_allclose(y.data, np.where(x.data > 0, x.data, w.data[:, None] * x.data))
    assert gradcheck(F.prelu, [x, w])
    m = nn.PReLU()
    assert m.weight.shape == (1,) and float(m.weight.data[0]) == 0.25
    with pytest.raises(ValueError, match="prelu: weight of 2 values"):
        F.prelu(x, t64(2))


def test_activation_modules_accept_inplace():
    x = cr.tensor([-1.0, 0.5, 7.0])
    for m in (nn.ELU(inplace=True), nn.SELU(True), nn.CELU(inplace=True), nn.ReLU6(True),
              nn.Hardtanh(inplace=True), nn.Hardswish(True), nn.Hardsigmoid(True),
              nn.Mish(True), nn.Threshold(0.1, 20, inplace=True)):
        assert m(x).shape == (3,)
    np.testing.assert_allclose(nn.ReLU6()(x).data, [0, 0.5, 6])


# ----------------------------------------------------------------------------- PyTorch

torch = pytest.importorskip("torch")


def _pair(ours, theirs, x):
    xc = cr.tensor(x, requires_grad=True)
    xt = torch.tensor(x, requires_grad=True)
    yc, yt = ours(xc), theirs(xt)
    np.testing.assert_allclose(yc.data, yt.detach().numpy(), rtol=1e-4, atol=1e-5)
    u = rng.standard_normal(yc.shape).astype(x.dtype)
    (yc * cr.tensor(u)).sum().backward()
    (yt * torch.tensor(u)).sum().backward()
    np.testing.assert_allclose(xc.grad.data, xt.grad.numpy(), rtol=1e-4, atol=1e-5)


def _copy(ours, theirs):
    sd = {k: v.detach().numpy().copy() for k, v in theirs.state_dict().items()}
    ours.load_state_dict({k: cr.tensor(v) for k, v in sd.items()})


@pytest.mark.parametrize("cls, shape, kw", [
    ("BatchNorm1d", (8, 3), {}), ("BatchNorm1d", (4, 3, 5), {"momentum": None}),
    ("BatchNorm2d", (4, 3, 5, 5), {}), ("BatchNorm3d", (2, 3, 2, 3, 2), {"affine": False}),
    ("BatchNorm2d", (4, 3, 2, 2), {"track_running_stats": False}),
    ("InstanceNorm1d", (2, 3, 6), {}),
    ("InstanceNorm2d", (2, 3, 4, 4), {"affine": True, "track_running_stats": True}),
    ("InstanceNorm2d", (3, 4, 4), {"affine": True}),
])
def test_norm_modules_against_torch_train_and_eval(cls, shape, kw):
    ours, theirs = getattr(nn, cls)(3, **kw), getattr(torch.nn, cls)(3, **kw)
    if theirs.weight is not None:
        with torch.no_grad():
            theirs.weight.uniform_(0.5, 1.5)
            theirs.bias.uniform_(-0.5, 0.5)
    _copy(ours, theirs)
    assert list(ours.state_dict()) == list(theirs.state_dict())
    for _ in range(3):
        x = rng.standard_normal(shape).astype(np.float32) * 2 + 1
        _pair(ours, theirs, x)
    for k, v in theirs.state_dict().items():
        np.testing.assert_allclose(ours.state_dict()[k].data, v.numpy(), rtol=1e-5, atol=1e-6)
    ours.eval(), theirs.eval()
    _pair(ours, theirs, rng.standard_normal(shape).astype(np.float32))
    if theirs.weight is not None:
        np.testing.assert_allclose(ours.weight.grad.data, theirs.weight.grad.numpy(),
                                   rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(ours.bias.grad.data, theirs.bias.grad.numpy(),
                                   rtol=1e-4, atol=1e-5)


def test_group_norm_against_torch():
    ours, theirs = nn.GroupNorm(2, 4), torch.nn.GroupNorm(2, 4)
    with torch.no_grad():
        theirs.weight.uniform_(0.5, 1.5)
        theirs.bias.uniform_(-0.5, 0.5)
    _copy(ours, theirs)
    _pair(ours, theirs, rng.standard_normal((3, 4, 5, 2)).astype(np.float32))
    np.testing.assert_allclose(ours.weight.grad.data, theirs.weight.grad.numpy(), rtol=1e-4,
                               atol=1e-5)


def test_batch_norm_state_dict_in_torch_layout_loads():
    sd = {"weight": np.array([1.0, 2.0], np.float32), "bias": np.array([0.5, -0.5], np.float32),
          "running_mean": np.array([0.1, 0.2], np.float32),
          "running_var": np.array([1.5, 0.5], np.float32),
          "num_batches_tracked": np.array(7, np.int64)}
    m = nn.BatchNorm1d(2)
    m.load_state_dict({k: cr.tensor(v) for k, v in sd.items()})
    m.eval()
    x = np.array([[1.0, 2.0], [3.0, -1.0]], np.float32)
    y = m(cr.tensor(x)).data
    ref = (x - sd["running_mean"]) / np.sqrt(sd["running_var"] + 1e-5) * sd["weight"] + sd["bias"]
    np.testing.assert_allclose(y, ref, rtol=1e-6)
    assert int(m.num_batches_tracked.data) == 7


@pytest.mark.parametrize("name, kw", [
    ("ELU", {"alpha": 0.5}), ("SELU", {}), ("CELU", {"alpha": 2.0}), ("GLU", {"dim": 1}),
    ("Hardtanh", {"min_val": -0.5}), ("ReLU6", {}), ("Hardsigmoid", {}), ("Hardswish", {}),
    ("Mish", {}), ("LogSigmoid", {}), ("Softsign", {}), ("Tanhshrink", {}),
    ("Hardshrink", {}), ("Softshrink", {}), ("Threshold", {"threshold": 0.2, "value": -1.0}),
    ("PReLU", {"num_parameters": 4}),
])
def test_activation_modules_against_torch(name, kw):
    x = (rng.standard_normal((3, 4, 2)) * 4).astype(np.float32)
    _pair(getattr(nn, name)(**kw), getattr(torch.nn, name)(**kw), x)


def test_normalize_against_torch():
    x = rng.standard_normal((3, 5)).astype(np.float32)
    _pair(lambda t: F.normalize(t, dim=0), lambda t: torch.nn.functional.normalize(t, dim=0), x)
    _pair(lambda t: F.normalize(t, p=1), lambda t: torch.nn.functional.normalize(t, p=1), x)


@pytest.mark.parametrize("size", [1, 2, 3])
def test_local_response_norm_against_torch(size):
    x = rng.standard_normal((2, 5, 3, 2)).astype(np.float32)
    _pair(nn.LocalResponseNorm(size, 0.3, 0.6, 2.0),
          torch.nn.LocalResponseNorm(size, 0.3, 0.6, 2.0), x)
