"""Bicubic interpolation, grid_sample and affine_grid: gradcheck and gradgradcheck in float64,
and values and gradients (for input, grid and theta) against torch.nn.functional."""

from __future__ import annotations

import numpy as np
import pytest

import chainrule as cr
import chainrule.nn.functional as F
from chainrule.autograd import gradcheck, gradgradcheck

rng = np.random.default_rng(17)


def t64(*shape, lo=-1.0, hi=1.0):
    return cr.tensor(rng.uniform(lo, hi, shape), dtype=cr.float64, requires_grad=True)


@pytest.mark.parametrize("name, fn, shapes", [
    ("bicubic", lambda x: F.interpolate(x, size=(5, 3), mode="bicubic"), [(1, 2, 3, 4)]),
    ("bicubic-aligned", lambda x: F.interpolate(x, scale_factor=2, mode="bicubic",
                                                align_corners=True), [(1, 1, 2, 3)]),
    ("grid_sample-zeros", lambda x, g: F.grid_sample(x, g, align_corners=False),
     [(1, 2, 3, 4), (1, 2, 3, 2)]),
    ("grid_sample-border", lambda x, g: F.grid_sample(x, g, padding_mode="border",
                                                      align_corners=True),
     [(2, 1, 3, 3), (2, 2, 2, 2)]),
    ("grid_sample-reflection", lambda x, g: F.grid_sample(x, g, padding_mode="reflection"),
     [(1, 2, 4, 3), (1, 3, 1, 2)]),
    ("affine_grid", lambda t: F.affine_grid(t, (2, 1, 3, 4), align_corners=False), [(2, 2, 3)]),
])
def test_gradcheck_and_gradgradcheck(name, fn, shapes):
    xs = [t64(*s) for s in shapes]
    if name.startswith("grid_sample"):  # points away from pixel centres and the clamp
        xs[1] = t64(*shapes[1], lo=-0.8, hi=0.8)
    assert gradcheck(fn, xs)
    assert gradgradcheck(fn, xs)


def test_bad_arguments_are_named():
    with pytest.raises(ValueError, match="interpolate: mode 'bicubic' needs a 4-d input"):
        F.interpolate(t64(1, 2, 3), size=4, mode="bicubic")
    with pytest.raises(ValueError, match="grid_sample: padding_mode must be"):
        F.grid_sample(t64(1, 1, 2, 2), t64(1, 2, 2, 2), padding_mode="wrap")
    with pytest.raises(ValueError, match=r"grid_sample: input \(1, 1, 2, 2\) and grid"):
        F.grid_sample(t64(1, 1, 2, 2), t64(1, 2, 2, 3))
    with pytest.raises(ValueError, match="affine_grid: theta of shape"):
        F.affine_grid(t64(2, 2, 3), (2, 1, 3, 4, 5))


torch = pytest.importorskip("torch")
TF = torch.nn.functional


def _both(fn_ours, fn_torch, *arrays, tol=1e-5):
    ours = [cr.tensor(a, requires_grad=True) for a in arrays]
    theirs = [torch.tensor(a, requires_grad=True) for a in arrays]
    yc, yt = fn_ours(*ours), fn_torch(*theirs)
    np.testing.assert_allclose(yc.detach().numpy(), yt.detach().numpy(), rtol=tol, atol=tol)
    u = rng.standard_normal(tuple(yc.shape)).astype(arrays[0].dtype)
    (yc * cr.tensor(u)).sum().backward()
    (yt * torch.tensor(u)).sum().backward()
    for a, b in zip(ours, theirs):
        ga = np.zeros(a.shape, a.dtype) if a.grad is None else a.grad.numpy()
        np.testing.assert_allclose(ga, b.grad.numpy(), rtol=tol, atol=tol)


@pytest.mark.parametrize("align", [False, True])
@pytest.mark.parametrize("kw", [dict(size=(9, 11)), dict(size=(3, 2)), dict(scale_factor=1.7),
                                dict(scale_factor=(0.6, 2.5)),
                                dict(scale_factor=2.3, recompute_scale_factor=True)])
def test_bicubic_matches_torch(kw, align):
    x = rng.standard_normal((2, 3, 5, 6))
    _both(lambda x: F.interpolate(x, mode="bicubic", align_corners=align, **kw),
          lambda x: TF.interpolate(x, mode="bicubic", align_corners=align, **kw), x, tol=1e-10)


@pytest.mark.parametrize("align", [False, True])
@pytest.mark.parametrize("padding_mode", ["zeros", "border", "reflection"])
@pytest.mark.parametrize("mode", ["bilinear", "nearest"])
def test_grid_sample_matches_torch(mode, padding_mode, align):
    x = rng.standard_normal((2, 3, 5, 4))
    g = rng.uniform(-1.6, 1.6, (2, 6, 7, 2))  # many points outside, several reflections
    _both(lambda x, g: F.grid_sample(x, g, mode, padding_mode, align),
          lambda x, g: TF.grid_sample(x, g, mode, padding_mode, align), x, g, tol=1e-10)


def test_grid_sample_float32_and_identity_grid():
    x = rng.standard_normal((1, 2, 4, 5)).astype(np.float32)
    theta = np.array([[[1.0, 0, 0], [0, 1.0, 0]]], np.float32)
    grid = F.affine_grid(cr.tensor(theta), (1, 2, 4, 5), align_corners=False)
    y = F.grid_sample(cr.tensor(x), grid, align_corners=False)
    np.testing.assert_allclose(y.numpy(), x, atol=1e-6)
    g = rng.uniform(-1.2, 1.2, (1, 3, 3, 2)).astype(np.float32)
    _both(lambda x, g: F.grid_sample(x, g, align_corners=False),
          lambda x, g: TF.grid_sample(x, g, align_corners=False), x, g, tol=1e-5)


@pytest.mark.parametrize("align", [False, True])
@pytest.mark.parametrize("size", [(2, 3, 4, 5), (2, 1, 3, 4, 2), (2, 1, 1, 3)])
def test_affine_grid_matches_torch(size, align):
    nd = len(size) - 2
    theta = rng.standard_normal((2, nd, nd + 1))
    _both(lambda t: F.affine_grid(t, size, align_corners=align),
          lambda t: TF.affine_grid(t, size, align_corners=align), theta, tol=1e-12)


def test_spatial_transformer_step_matches_torch():
    """affine_grid then grid_sample, differentiated in both the image and theta."""
    x = rng.standard_normal((2, 3, 6, 6))
    theta = np.array([[[0.9, 0.2, 0.1], [-0.1, 1.1, 0.05]]] * 2) + rng.normal(0, .05, (2, 2, 3))
    _both(lambda x, t: F.grid_sample(x, F.affine_grid(t, (2, 3, 4, 5), False), "bilinear",
                                     "zeros", False),
          lambda x, t: TF.grid_sample(x, TF.affine_grid(t, (2, 3, 4, 5), False), "bilinear",
                                      "zeros", False), x, theta, tol=1e-10)
