"""The compiled convolution and pooling kernels against the NumPy code they replace
(``use_native(False)``), against PyTorch where it is installed, and by finite differences."""

import numpy as np
import pytest

import chainrule as cr
from chainrule import backend
from chainrule.nn import functional as F

needs_native = pytest.mark.skipif(not backend.native_available(),
                                  reason="the compiled kernels are not built")

CONV_CASES = [
    # (N, C, H, W, O, kernel, kwargs)
    (4, 16, 14, 14, 32, (3, 3), dict(padding=1)),  # deep: patch rows
    (3, 1, 28, 28, 16, (3, 3), dict(padding=1)),  # shallow: direct
    (2, 3, 13, 11, 10, (3, 3), dict(padding=1)),  # shallow, 4 + 2 output channels
    (2, 5, 11, 9, 7, (3, 3), dict(stride=2, padding=1)),  # shallow, strided: columns
    (2, 16, 9, 10, 8, (3, 2), dict(stride=(2, 1), padding=(1, 0), dilation=(1, 2))),
    (2, 3, 8, 8, 4, (2, 2), dict(dilation=2, padding=1)),
    (2, 20, 7, 7, 6, (1, 1), {}),
    (2, 8, 9, 9, 12, (5, 5), dict(padding=2, stride=(1, 2))),
    (1, 2, 6, 30, 5, (3, 3), dict(padding=(0, 1), stride=(2, 1))),
]


def _conv(x, w, b, g, kw, native):
    with backend.use_native(native):
        xt, wt, bt = (cr.tensor(a, requires_grad=True) for a in (x, w, b))
        y = F.conv2d(xt, wt, bt, **kw)
        y.backward(cr.tensor(g))
        return [a.numpy() for a in (y.detach(), xt.grad, wt.grad, bt.grad)]


def _conv_data(N, C, H, W, O, k, kw, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((N, C, H, W)).astype(np.float32)
    w = rng.standard_normal((O, C) + k).astype(np.float32)
    b = rng.standard_normal(O).astype(np.float32)
    with backend.use_native(False):
        shape = F.conv2d(cr.tensor(x), cr.tensor(w), cr.tensor(b), **kw).shape
    g = rng.standard_normal(tuple(shape)).astype(np.float32)
    return x, w, b, g


@needs_native
@pytest.mark.parametrize("case", CONV_CASES)
def test_conv2d_kernels_give_the_numpy_values_and_gradients(case):
    x, w, b, g = _conv_data(*case)
    kw = case[-1]
    on = _conv(x, w, b, g, kw, True)
    off = _conv(x, w, b, g, kw, False)
    for name, a, r in zip(("y", "dx", "dw", "db"), on, off):
        np.testing.assert_allclose(a, r, rtol=2e-5, atol=2e-5 * np.abs(r).max(), err_msg=name)


@pytest.mark.parametrize("case", CONV_CASES)
def test_conv2d_values_and_gradients_match_torch(case):
    torch = pytest.importorskip("torch")
    x, w, b, g = _conv_data(*case, seed=1)
    kw = case[-1]
    ours = _conv(x, w, b, g, kw, True)
    xt, wt, bt = (torch.tensor(a, requires_grad=True) for a in (x, w, b))
    y = torch.nn.functional.conv2d(xt, wt, bt, **kw)
    y.backward(torch.tensor(g))
    for name, a, r in zip(("y", "dx", "dw", "db"), ours, (y.detach(), xt.grad, wt.grad, bt.grad)):
        r = r.numpy()
        np.testing.assert_allclose(a, r, rtol=1e-4, atol=1e-4 * np.abs(r).max(), err_msg=name)


@pytest.mark.parametrize("native", [True, False])
@pytest.mark.parametrize("case", [CONV_CASES[0], CONV_CASES[2], CONV_CASES[4]])
def test_conv2d_gradients_match_finite_differences(case, native):
    """Central differences in float64 of <g, conv(x, w)> at a few entries of x and w; the
    analytic gradient from the float32 path the switch selects."""
    x, w, b, g = _conv_data(*case, seed=2)
    kw = case[-1]
    _, gx, gw, _ = _conv(x, w, b, g, kw, native)

    def f(x64, w64):
        with backend.use_native(False):
            y = F.conv2d(cr.tensor(x64), cr.tensor(w64), cr.tensor(b.astype(np.float64)), **kw)
        return float((y.numpy() * g).sum())

    rng = np.random.default_rng(3)
    x64, w64 = x.astype(np.float64), w.astype(np.float64)
    for arr, grad, which in ((x64, gx, 0), (w64, gw, 1)):
        for _ in range(6):
            idx = tuple(int(rng.integers(s)) for s in arr.shape)
            h = 1e-4
            old = arr[idx]
            arr[idx] = old + h
            up = f(x64, w64)
            arr[idx] = old - h
            down = f(x64, w64)
            arr[idx] = old
            assert abs((up - down) / (2 * h) - grad[idx]) < 2e-3 * (1 + abs(grad[idx])), (
                which, idx)


def _pool(fn, x, g, native, **kw):
    with backend.use_native(native):
        xt = cr.tensor(x, requires_grad=True)
        y = fn(xt, **kw)
        y.backward(cr.tensor(g))
        return y.detach().numpy(), xt.grad.numpy()


POOLS = [(F.max_pool2d, dict(kernel_size=2)), (F.avg_pool2d, dict(kernel_size=2)),
         (F.avg_pool2d, dict(kernel_size=2, divisor_override=3))]


@needs_native
@pytest.mark.parametrize("shape", [(2, 3, 8, 8), (2, 3, 7, 9), (1, 2, 5, 4), (3, 1, 2, 2)])
@pytest.mark.parametrize("pool", POOLS, ids=["max", "avg", "avg_divisor"])
def test_2x2_pool_kernels_give_the_numpy_values_and_gradients_exactly(shape, pool):
    fn, kw = pool
    rng = np.random.default_rng(0)
    x = rng.standard_normal(shape).astype(np.float32)
    x[0, 0, 0, :2] = 1.0  # a tie: the first maximum takes the gradient
    x[-1, -1, :2, 0] = -2.0
    g = rng.standard_normal((shape[0], shape[1], shape[2] // 2, shape[3] // 2)).astype(np.float32)
    on = _pool(fn, x, g, True, **kw)
    off = _pool(fn, x, g, False, **kw)
    for a, r in zip(on, off):
        np.testing.assert_array_equal(a, r)
    torch = pytest.importorskip("torch")
    tfn = getattr(torch.nn.functional, fn.__name__)
    xt = torch.tensor(x, requires_grad=True)
    y = tfn(xt, **kw)
    y.backward(torch.tensor(g))
    np.testing.assert_allclose(on[0], y.detach().numpy(), rtol=1e-6)
    np.testing.assert_allclose(on[1], xt.grad.numpy(), rtol=1e-6)


@needs_native
def test_max_pool_backward_kernel_follows_the_numpy_first_max_rule_with_nan_and_inf():
    """After the compiled forward, the compiled backward routes each window's gradient where
    the NumPy code that recomputes the first maximum from x and y does."""
    from chainrule.backend import numpy_ns

    rng = np.random.default_rng(4)
    x = rng.standard_normal((2, 3, 8, 6)).astype(np.float32)
    x[0, 1, 2, 2] = np.nan
    x[1, 0, 5, 4] = np.inf
    x[1, 2, 0, 0] = -np.inf
    g = rng.standard_normal((2, 3, 4, 3)).astype(np.float32)
    on = _pool(F.max_pool2d, x, g, True, kernel_size=2)
    kernel = numpy_ns.max_pool2x2_backward
    numpy_ns.max_pool2x2_backward = lambda *a, **k: None
    try:
        numpy_code = _pool(F.max_pool2d, x, g, True, kernel_size=2)
    finally:
        numpy_ns.max_pool2x2_backward = kernel
    for a, r in zip(on, numpy_code):
        np.testing.assert_array_equal(a, r)


@needs_native
def test_conv_kernels_reject_buffers_too_small_and_bad_geometry():
    nat = backend._native
    x = np.zeros((2, 3, 5, 5), np.float32)
    geo = (2, 3, 5, 5, 3, 3, 1, 1, 1, 1, 1, 1, 5, 5, 7, 7)
    rows = np.zeros((2 * 25, 27), np.float32)
    nat.conv_rows(x, rows, geo, 0, 2, False)
    with pytest.raises(ValueError, match="rows"):
        nat.conv_rows(x, rows[:-1], geo, 0, 2, False)
    with pytest.raises(ValueError, match="sample range"):
        nat.conv_rows(x, rows, geo, 1, 3, False)
    with pytest.raises(ValueError, match="padded input"):
        nat.conv_rows(x, rows, geo[:14] + (6, 6), 0, 2, False)
    with pytest.raises(ValueError, match="16 ints"):
        nat.conv_rows(x, rows, geo[:15], 0, 2, False)
    y = np.zeros((2, 4, 5, 5), np.float32)
    with pytest.raises(ValueError, match="w holds"):
        nat.conv_direct(x, np.zeros(10, np.float32), None, y, geo, 4)
    with pytest.raises(ValueError, match="gx holds"):
        nat.pool2(0, x, x[:, :, :2, :2].copy(), x[:, :, :2, :2].copy(),
                  np.zeros(5, np.float32), 6, 5, 5, 2, 2, 0.0)
    with pytest.raises(ValueError, match="bad arguments"):
        nat.pool2(1, x, None, None, np.zeros(100, np.float32), 6, 5, 5, 3, 2, 4.0)


@needs_native
@pytest.mark.parametrize("bn", [False, True])
def test_a_deeper_cnn_trains_the_same_with_and_without_the_kernels(bn):
    """3x3 convolutions 3->8->8, average pooling, 8->16, global mean, linear (BatchNorm2d
    after each convolution): three SGD steps give the same losses and weights (SGD: Adam
    would blow the rounding noise of the gradient of a bias that BatchNorm cancels up to
    steps of the learning rate's size)."""
    from chainrule import nn, optim

    rng = np.random.default_rng(5)
    x = rng.standard_normal((4, 3, 16, 16)).astype(np.float32)
    y = rng.integers(0, 10, 4)

    class Mean(nn.Module):
        def forward(self, a):
            return a.mean(dim=(2, 3))

    def run(native):
        cr.manual_seed(0)
        layers = []
        for c_in, c_out, pool in ((3, 8, False), (8, 8, True), (8, 16, False)):
            layers.append(nn.Conv2d(c_in, c_out, 3, padding=1))
            if bn:
                layers.append(nn.BatchNorm2d(c_out))
            layers += [nn.ReLU()] + ([nn.AvgPool2d(2)] if pool else [])
        net = nn.Sequential(*layers, Mean(), nn.Linear(16, 10))
        opt = optim.SGD(net.parameters(), lr=0.1, momentum=0.9)
        losses = []
        with backend.use_native(native):
            for _ in range(3):
                opt.zero_grad()
                loss = F.cross_entropy(net(cr.tensor(x)), cr.tensor(y))
                loss.backward()
                opt.step()
                losses.append(loss.item())
        return losses, [p.detach().numpy() for p in net.parameters()]

    (l1, p1), (l0, p0) = run(True), run(False)
    np.testing.assert_allclose(l1, l0, rtol=1e-5)
    for a, r in zip(p1, p0):
        np.testing.assert_allclose(a, r, rtol=1e-4, atol=1e-5)
