"""Conv1d/2d/3d(padding_mode='reflect'|'replicate'|'circular') and ``scalar % tensor``
against PyTorch (forward and gradients) where it is installed, else closed forms."""

import numpy as np
import pytest

import chainrule

MODES = ("zeros", "reflect", "replicate", "circular")


def _conv_case(nd, mode, padding, stride, dilation, groups=1):
    rng = np.random.default_rng(hash((nd, mode, str(padding), stride, dilation)) % 2**32)
    spatial = (7, 6, 5)[:nd] if nd > 1 else (9,)
    x = rng.standard_normal((2, 4) + spatial)
    cls = {1: "Conv1d", 2: "Conv2d", 3: "Conv3d"}[nd]
    ours = getattr(chainrule.nn, cls)(4, 6, 3, stride=stride, padding=padding,
                                      dilation=dilation, groups=groups, padding_mode=mode,
                                      dtype=chainrule.float64)
    w = rng.standard_normal(tuple(ours.weight.shape))
    b = rng.standard_normal(6)
    with chainrule.no_grad():
        ours.weight.copy_(chainrule.tensor(w))
        ours.bias.copy_(chainrule.tensor(b))
    return x, w, b, cls, ours


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("nd,padding,stride,dilation", [
    (2, 1, 1, 1), (2, (2, 1), 2, 1), (2, "same", 1, 2), (2, "valid", 1, 1), (2, 2, 1, (1, 2)),
    (1, 2, 1, 1), (1, "same", 1, 1), (3, 1, (1, 2, 1), 1),
])
def test_conv_padding_mode_matches_pytorch(mode, nd, padding, stride, dilation):
    torch = pytest.importorskip("torch")
    x, w, b, cls, ours = _conv_case(nd, mode, padding, stride, dilation, groups=2)
    theirs = getattr(torch.nn, cls)(4, 6, 3, stride=stride, padding=padding, dilation=dilation,
                                    groups=2, padding_mode=mode, dtype=torch.float64)
    with torch.no_grad():
        theirs.weight.copy_(torch.tensor(w))
        theirs.bias.copy_(torch.tensor(b))
    xc = chainrule.tensor(x, requires_grad=True)
    xt = torch.tensor(x, requires_grad=True)
    yc, yt = ours(xc), theirs(xt)
    assert tuple(yc.shape) == tuple(yt.shape)
    np.testing.assert_allclose(yc.detach().numpy(), yt.detach().numpy(), rtol=1e-10, atol=1e-10)
    g = np.random.default_rng(7).standard_normal(tuple(yt.shape))
    (yc * chainrule.tensor(g)).sum().backward()
    (yt * torch.tensor(g)).sum().backward()
    np.testing.assert_allclose(xc.grad.numpy(), xt.grad.numpy(), rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(ours.weight.grad.numpy(), theirs.weight.grad.numpy(),
                               rtol=1e-10, atol=1e-10)
    assert repr(ours) == repr(theirs)


@pytest.mark.parametrize("mode", ("reflect", "replicate", "circular"))
def test_conv_padding_mode_is_conv_of_the_padded_input(mode):
    """Without PyTorch: the module equals F.conv2d of F.pad(x, mode) with no padding, and is
    unbatched-safe (a (C, H, W) input)."""
    x, w, b, _, ours = _conv_case(2, mode, (1, 2), 1, 1)
    F = chainrule.nn.functional
    want = F.conv2d(F.pad(chainrule.tensor(x), (2, 2, 1, 1), mode=mode), chainrule.tensor(w),
                    chainrule.tensor(b))
    np.testing.assert_allclose(ours(chainrule.tensor(x)).detach().numpy(), want.numpy(),
                               rtol=1e-12)
    np.testing.assert_allclose(ours(chainrule.tensor(x[0])).detach().numpy(), want.numpy()[0],
                               rtol=1e-12)
    if mode == "circular":  # wraps around: row -1 is the last row
        padded = F.pad(chainrule.tensor(x), (2, 2, 1, 1), mode=mode).numpy()
        np.testing.assert_array_equal(padded[:, :, 0, 2:-2], x[:, :, -1])


def test_padding_mode_must_be_known():
    with pytest.raises(ValueError, match="Conv2d: padding_mode must be .* got 'mirror'"):
        chainrule.nn.Conv2d(2, 2, 3, padding_mode="mirror")


A = np.array([-2.5, 1.3, 3.7, -0.6, 5.0, 7.0, -7.0])


@pytest.mark.parametrize("scalar", [7, 7.5, -3, 0.25])
def test_rmod_value_and_remainder_gradient(scalar):
    x = chainrule.tensor(A, requires_grad=True)
    y = scalar % x
    want = np.remainder(scalar, A)
    np.testing.assert_allclose(y.detach().numpy(), want, rtol=1e-12, atol=1e-12)
    y.sum().backward()  # d/db (a mod b) = -floor(a / b)
    np.testing.assert_allclose(x.grad.numpy(), -np.floor(scalar / A), rtol=0, atol=0)


def test_rmod_matches_pytorch():
    torch = pytest.importorskip("torch")
    for scalar in (7, 7.5, -3):
        np.testing.assert_allclose((scalar % chainrule.tensor(A)).numpy(),
                                   (scalar % torch.tensor(A)).numpy(), rtol=1e-12, atol=1e-12)
        # torch's scalar % tensor has no gradient; its tensor % tensor rule for the divisor
        t = torch.tensor(A, requires_grad=True)
        torch.remainder(torch.full_like(t, scalar), t).sum().backward()
        x = chainrule.tensor(A, requires_grad=True)
        (scalar % x).sum().backward()
        np.testing.assert_allclose(x.grad.numpy(), t.grad.numpy(), rtol=0, atol=0)
    ints = np.array([2, 3, -4, 5])
    assert (7 % chainrule.tensor(ints)).tolist() == (7 % torch.tensor(ints)).tolist()
    assert (7 % chainrule.tensor(ints)).dtype == chainrule.int64
