"""Transposed convolutions, 1-d and adaptive max pooling, channel dropout, interpolation,
pixel (un)shuffle and unfold/fold: gradcheck and gradgradcheck in float64, and values and
gradients against torch.nn / torch.nn.functional."""

from __future__ import annotations

import numpy as np
import pytest

import chainrule as cr
import chainrule.nn as nn
import chainrule.nn.functional as F
from chainrule.autograd import gradcheck, gradgradcheck

rng = np.random.default_rng(13)


def t64(*shape):
    return cr.tensor(rng.uniform(-1, 1, shape), dtype=cr.float64, requires_grad=True)


@pytest.mark.parametrize("name, fn, shapes", [
    ("convT2d", lambda x, w: F.conv_transpose2d(x, w, stride=2, padding=1, output_padding=1),
     [(1, 2, 3, 3), (2, 3, 2, 2)]),
    ("convT2d-groups", lambda x, w: F.conv_transpose2d(x, w, groups=2, dilation=2),
     [(1, 4, 2, 3), (4, 1, 2, 2)]),
    ("convT1d", lambda x, w: F.conv_transpose1d(x, w, stride=3), [(2, 2, 3), (2, 2, 2)]),
    ("interp-bilinear", lambda x: F.interpolate(x, size=(3, 5), mode="bilinear"),
     [(1, 2, 2, 3)]),
    ("interp-aligned", lambda x: F.interpolate(x, scale_factor=2, mode="bilinear",
                                               align_corners=True), [(1, 1, 2, 2)]),
    ("interp-nearest", lambda x: F.interpolate(x, scale_factor=2), [(1, 2, 2, 2)]),
    ("unfold", lambda x: F.unfold(x, 2, padding=1, stride=2), [(1, 2, 3, 4)]),
    ("fold", lambda x: F.fold(x, (3, 3), 2), [(1, 8, 4)]),
    ("pixel_shuffle", lambda x: F.pixel_shuffle(x, 2), [(1, 4, 2, 3)]),
    ("adaptive_max", lambda x: F.adaptive_max_pool2d(x, (2, 3)), [(1, 2, 3, 4)]),
    ("avg_pool1d", lambda x: F.avg_pool1d(x, 2), [(2, 2, 5)]),
])
def test_gradcheck_and_gradgradcheck(name, fn, shapes):
    xs = [t64(*s) for s in shapes]
    assert gradcheck(fn, xs)
    assert gradgradcheck(fn, xs)


def test_bad_arguments_are_named():
    with pytest.raises(ValueError, match="conv_transpose2d: output_padding"):
        F.conv_transpose2d(t64(1, 2, 3, 3), t64(2, 3, 2, 2), output_padding=1)
    with pytest.raises(ValueError, match="pixel_shuffle"):
        F.pixel_shuffle(t64(1, 3, 2, 2), 2)
    with pytest.raises(ValueError, match="fold: input of shape"):
        F.fold(t64(1, 8, 5), (3, 3), 2)
    with pytest.raises(ValueError, match="interpolate: pass exactly one"):
        F.interpolate(t64(1, 1, 2, 2))


def test_channel_dropout_zeroes_whole_channels():
    cr.manual_seed(0)
    y = F.dropout2d(cr.ones(4, 8, 3, 3), 0.5).numpy()
    per = y.reshape(4, 8, -1)
    assert ((per == 0).all(-1) | (per == 2).all(-1)).all()
    assert 0 < (per == 0).all(-1).sum() < 32
    m = nn.Dropout1d(0.3).eval()
    x = cr.ones(2, 3, 4)
    assert m(x) is x


torch = pytest.importorskip("torch")


def _copy(ours, theirs):
    sd = theirs.state_dict()
    assert list(sd) == list(ours.state_dict())
    ours.load_state_dict({k: cr.tensor(v.detach().numpy().copy()) for k, v in sd.items()})


def _pair(ours, theirs, x, tol=1e-5):
    xc, xt = cr.tensor(x, requires_grad=True), torch.tensor(x, requires_grad=True)
    yc, yt = ours(xc), theirs(xt)
    np.testing.assert_allclose(yc.detach().numpy(), yt.detach().numpy(), rtol=tol, atol=tol)
    u = rng.standard_normal(yc.shape).astype(x.dtype)
    (yc * cr.tensor(u)).sum().backward()
    (yt * torch.tensor(u)).sum().backward()
    np.testing.assert_allclose(xc.grad.numpy(), xt.grad.numpy(), rtol=tol, atol=tol)


@pytest.mark.parametrize("cls, args, kw, shape", [
    ("ConvTranspose2d", (4, 6, 3), {"stride": 2, "padding": 1, "output_padding": 1,
                                    "groups": 2}, (2, 4, 5, 5)),
    ("ConvTranspose2d", (3, 2, (2, 3)), {"dilation": 2, "bias": False}, (1, 3, 4, 3)),
    ("ConvTranspose1d", (3, 4, 3), {"stride": 2, "padding": 1}, (2, 3, 6)),
])
def test_conv_transpose_against_torch(cls, args, kw, shape):
    ours, theirs = getattr(nn, cls)(*args, **kw), getattr(torch.nn, cls)(*args, **kw)
    assert ours.weight.shape == tuple(theirs.weight.shape)
    _copy(ours, theirs)
    _pair(ours, theirs, rng.standard_normal(shape).astype(np.float32), 1e-4)
    np.testing.assert_allclose(ours.weight.grad.numpy(), theirs.weight.grad.numpy(),
                               rtol=1e-4, atol=1e-4)


def test_conv_transpose_output_size():
    ours, theirs = nn.ConvTranspose2d(2, 2, 3, stride=2), torch.nn.ConvTranspose2d(2, 2, 3,
                                                                                  stride=2)
    _copy(ours, theirs)
    x = rng.standard_normal((1, 2, 4, 4)).astype(np.float32)
    yc = ours(cr.tensor(x), output_size=(10, 10))
    yt = theirs(torch.tensor(x), output_size=(10, 10))
    np.testing.assert_allclose(yc.detach().numpy(), yt.detach().numpy(), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("make, shape", [
    (lambda L: L.MaxPool1d(3, 2, 1), (2, 3, 9)),
    (lambda L: L.AvgPool1d(3, 2, 1, count_include_pad=False), (2, 3, 9)),
    (lambda L: L.AdaptiveMaxPool2d((3, 2)), (2, 3, 7, 5)),
    (lambda L: L.AdaptiveMaxPool1d(4), (2, 3, 7)),
    (lambda L: L.AdaptiveAvgPool1d(3), (2, 3, 7)),
    (lambda L: L.Upsample(scale_factor=2, mode="nearest"), (1, 2, 3, 4)),
    (lambda L: L.Upsample(size=(5, 7), mode="bilinear"), (1, 2, 3, 4)),
    (lambda L: L.Upsample(scale_factor=1.7, mode="bilinear", align_corners=True), (1, 2, 3, 4)),
    (lambda L: L.Upsample(size=9, mode="linear"), (1, 2, 4)),
    (lambda L: L.UpsamplingBilinear2d(scale_factor=2), (1, 2, 3, 3)),
    (lambda L: L.PixelShuffle(3), (1, 18, 2, 2)),
    (lambda L: L.PixelUnshuffle(2), (1, 2, 4, 6)),
    (lambda L: L.Unfold((2, 3), dilation=(1, 2), padding=1, stride=(2, 1)), (2, 3, 5, 6)),
    (lambda L: L.Fold((4, 5), (2, 2), stride=1), (2, 12, 12)),
])
def test_resampling_layers_against_torch(make, shape):
    _pair(make(nn), make(torch.nn), rng.standard_normal(shape).astype(np.float32))
