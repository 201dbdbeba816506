"""3-d convolution, transposed convolution and pooling: gradcheck and gradgradcheck in float64,
and values, indices and gradients against torch.nn.functional and torch.nn."""

from __future__ import annotations

import numpy as np
import pytest

import chainrule as cr
import chainrule.nn as nn
import chainrule.nn.functional as F
from chainrule.autograd import gradcheck, gradgradcheck

rng = np.random.default_rng(31)


def t64(*shape):
    return cr.tensor(rng.uniform(-1, 1, shape), dtype=cr.float64, requires_grad=True)


@pytest.mark.parametrize("name, fn, shapes", [
    ("conv3d", lambda x, w, b: F.conv3d(x, w, b, stride=(2, 1, 1), padding=1),
     [(1, 2, 3, 3, 2), (3, 2, 2, 2, 2), (3,)]),
    ("conv3d-groups-dilation", lambda x, w: F.conv3d(x, w, groups=2, dilation=(2, 1, 1)),
     [(1, 4, 3, 2, 2), (2, 2, 2, 1, 2)]),
    ("convT3d", lambda x, w: F.conv_transpose3d(x, w, stride=2, padding=1, output_padding=1),
     [(1, 2, 2, 2, 2), (2, 1, 2, 2, 2)]),
    ("max_pool3d", lambda x: F.max_pool3d(x, 2, stride=1, padding=1), [(1, 2, 3, 3, 2)]),
    ("avg_pool3d", lambda x: F.avg_pool3d(x, (2, 2, 1), padding=(1, 0, 0),
                                          count_include_pad=False, ceil_mode=True),
     [(1, 2, 3, 3, 2)]),
])
def test_gradcheck_and_gradgradcheck(name, fn, shapes):
    xs = [t64(*s) for s in shapes]
    assert gradcheck(fn, xs)
    assert gradgradcheck(fn, xs)


def test_bad_arguments_are_named():
    with pytest.raises(ValueError, match=r"conv3d: input of shape \(1, 3, 2, 2, 2\) with "):
        F.conv3d(t64(1, 3, 2, 2, 2), t64(2, 2, 1, 1, 1))
    with pytest.raises(ValueError, match="conv3d: weight must be 5-d"):
        F.conv3d(t64(1, 2, 2, 2, 2), t64(2, 2, 1, 1))
    with pytest.raises(ValueError, match="max_pool3d: input of shape"):
        F.max_pool3d(t64(2, 3, 3), 2)
    with pytest.raises(ValueError, match="avg_pool3d: padding"):
        F.avg_pool3d(t64(1, 2, 4, 4, 4), 2, padding=2)
    with pytest.raises(ValueError, match="Conv3d.*expected \\(N, 2, D, H, W\\)"):
        nn.Conv3d(2, 3, 1)(cr.zeros(1, 3, 2, 2, 2))


torch = pytest.importorskip("torch")
TF = torch.nn.functional


def _both(fn_ours, fn_torch, *arrays, tol=1e-5):
    """Values and input gradients (for a random output covector) of both libraries."""
    ours = [cr.tensor(a, requires_grad=True) for a in arrays]
    theirs = [torch.tensor(a, requires_grad=True) for a in arrays]
    yc, yt = fn_ours(*ours), fn_torch(*theirs)
    np.testing.assert_allclose(yc.detach().numpy(), yt.detach().numpy(), rtol=tol, atol=tol)
    u = rng.standard_normal(tuple(yc.shape)).astype(arrays[0].dtype)
    (yc * cr.tensor(u)).sum().backward()
    (yt * torch.tensor(u)).sum().backward()
    for a, b in zip(ours, theirs):
        np.testing.assert_allclose(a.grad.numpy(), b.grad.numpy(), rtol=tol, atol=tol)


def f32(*shape):
    return rng.standard_normal(shape).astype(np.float32)


@pytest.mark.parametrize("kw", [
    dict(),
    dict(stride=2, padding=1),
    dict(stride=(1, 2, 3), padding=(2, 0, 1), dilation=(2, 1, 2)),
    dict(groups=2, padding="same", dilation=(1, 2, 1)),
    dict(padding="same"),
    dict(padding="valid", stride=(3, 1, 1)),
])
def test_conv3d_matches_torch(kw):
    g = kw.get("groups", 1)
    x, w, b = f32(2, 4, 6, 7, 5), f32(6, 4 // g, 3, 2, 3), f32(6)
    _both(lambda x, w, b: F.conv3d(x, w, b, **kw), lambda x, w, b: TF.conv3d(x, w, b, **kw),
          x, w, b, tol=2e-4)


@pytest.mark.parametrize("kw", [
    dict(),
    dict(stride=2, padding=1, output_padding=1),
    dict(stride=(1, 2, 3), padding=(0, 1, 1), output_padding=(0, 1, 2), dilation=(2, 1, 1)),
    dict(groups=2, stride=2),
])
def test_conv_transpose3d_matches_torch(kw):
    g = kw.get("groups", 1)
    x, w, b = f32(2, 4, 3, 4, 3), f32(4, 6 // g, 2, 3, 2), f32(6)
    _both(lambda x, w, b: F.conv_transpose3d(x, w, b, **kw),
          lambda x, w, b: TF.conv_transpose3d(x, w, b, **kw), x, w, b, tol=2e-4)


@pytest.mark.parametrize("kw", [
    dict(kernel_size=2),
    dict(kernel_size=3, stride=2, padding=1),
    dict(kernel_size=(2, 3, 2), stride=(1, 2, 2), dilation=(2, 1, 1), ceil_mode=True),
    dict(kernel_size=3, stride=2, ceil_mode=True, padding=(1, 0, 1)),
])
def test_max_pool3d_matches_torch_with_indices(kw):
    x = f32(2, 3, 7, 6, 5)
    _both(lambda x: F.max_pool3d(x, **kw), lambda x: TF.max_pool3d(x, **kw), x)
    _, ic = F.max_pool3d(cr.tensor(x), return_indices=True, **kw)
    _, it = TF.max_pool3d(torch.tensor(x), return_indices=True, **kw)
    np.testing.assert_array_equal(ic.numpy(), it.numpy())


def test_max_pool3d_ties_route_to_the_first_maximum_as_torch():
    x = np.zeros((1, 1, 4, 4, 4), np.float32)
    x[0, 0, 1, 0, 1] = x[0, 0, 0, 1, 0] = 1.0  # the (d, h, w)-first is (0, 1, 0)
    x[0, 0, 2:, 2:, 2:] = 0.0  # an all-zero window
    _both(lambda x: F.max_pool3d(x, 2), lambda x: TF.max_pool3d(x, 2), x)
    _, ic = F.max_pool3d(cr.tensor(x), 2, return_indices=True)
    _, it = TF.max_pool3d(torch.tensor(x), 2, return_indices=True)
    np.testing.assert_array_equal(ic.numpy(), it.numpy())


@pytest.mark.parametrize("kw", [
    dict(kernel_size=2),
    dict(kernel_size=3, stride=2, padding=1),
    dict(kernel_size=3, stride=2, padding=1, count_include_pad=False),
    dict(kernel_size=(3, 2, 3), stride=2, padding=(1, 1, 0), ceil_mode=True),
    dict(kernel_size=(3, 2, 3), stride=2, padding=(1, 1, 0), ceil_mode=True,
         count_include_pad=False),
    dict(kernel_size=2, divisor_override=3),
])
def test_avg_pool3d_matches_torch(kw):
    x = f32(2, 3, 7, 6, 5)
    _both(lambda x: F.avg_pool3d(x, **kw), lambda x: TF.avg_pool3d(x, **kw), x)


def test_unbatched_inputs_match_torch():
    x, w = f32(2, 4, 4, 4), f32(3, 2, 2, 2, 2)
    _both(lambda x, w: F.conv3d(x, w, padding=1), lambda x, w: TF.conv3d(x, w, padding=1),
          x, w, tol=1e-4)
    _both(lambda x: F.max_pool3d(x, 2), lambda x: TF.max_pool3d(x, 2), x)
    _both(lambda x: F.avg_pool3d(x, 2), lambda x: TF.avg_pool3d(x, 2), x)


def _copy(ours, theirs):
    sd = theirs.state_dict()
    assert list(sd) == list(ours.state_dict())
    for k, v in ours.state_dict().items():
        assert tuple(v.shape) == tuple(sd[k].shape), k
    ours.load_state_dict({k: cr.tensor(v.detach().numpy().copy()) for k, v in sd.items()})


@pytest.mark.parametrize("ours, theirs", [
    (lambda m: m.Conv3d(4, 6, (3, 2, 2), stride=(1, 2, 1), padding=1, groups=2),
     lambda m: m.Conv3d(4, 6, (3, 2, 2), stride=(1, 2, 1), padding=1, groups=2)),
    (lambda m: m.ConvTranspose3d(4, 2, 3, stride=2, padding=1, bias=False),
     lambda m: m.ConvTranspose3d(4, 2, 3, stride=2, padding=1, bias=False)),
])
def test_modules_load_torch_state_and_match(ours, theirs):
    mc, mt = ours(nn), theirs(torch.nn)
    _copy(mc, mt)
    x = f32(2, 4, 5, 6, 5)
    xc, xt = cr.tensor(x, requires_grad=True), torch.tensor(x, requires_grad=True)
    yc, yt = mc(xc), mt(xt)
    np.testing.assert_allclose(yc.detach().numpy(), yt.detach().numpy(), rtol=2e-4, atol=2e-4)
    yc.sum().backward()
    yt.sum().backward()
    np.testing.assert_allclose(xc.grad.numpy(), xt.grad.numpy(), rtol=2e-4, atol=2e-4)
    np.testing.assert_allclose(mc.weight.grad.numpy(), mt.weight.grad.numpy(), rtol=2e-4,
                               atol=2e-4)
    assert repr(mc).split("(", 1)[0] == type(mt).__name__


def test_pool_modules_match_torch():
    x = f32(2, 3, 6, 5, 4)
    for ours, theirs in ((nn.MaxPool3d(3, 2, 1, ceil_mode=True),
                          torch.nn.MaxPool3d(3, 2, 1, ceil_mode=True)),
                         (nn.AvgPool3d(2, 1, count_include_pad=False),
                          torch.nn.AvgPool3d(2, 1, count_include_pad=False))):
        _both(ours, theirs, x)
