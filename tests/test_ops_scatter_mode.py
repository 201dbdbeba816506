"""scatter_reduce (sum, prod, mean, amax, amin; include_self), scatter(reduce=...), mode and
unique(dim=...): values, indices and gradients against PyTorch, and gradchecks in float64."""

from __future__ import annotations

import numpy as np
import pytest

import chainrule as cr
from chainrule.autograd import gradcheck, gradgradcheck

rng = np.random.default_rng(21)
REDUCES = ["sum", "prod", "mean", "amax", "amin"]


def _inputs():
    x = rng.standard_normal((4, 5))
    src = rng.standard_normal((6, 5))
    idx = rng.integers(0, 4, (6, 5))
    return x, src, idx


@pytest.mark.parametrize("include_self", [True, False])
@pytest.mark.parametrize("reduce", REDUCES)
def test_scatter_reduce_gradcheck(reduce, include_self):
    x, src, idx = _inputs()
    xs = [cr.tensor(x, requires_grad=True), cr.tensor(src, requires_grad=True)]

    def fn(a, s):
        return a.scatter_reduce(0, cr.tensor(idx), s, reduce, include_self=include_self)

    assert gradcheck(fn, xs)
    if reduce != "prod":  # prod's rule reads the products from the arrays (first order)
        assert gradgradcheck(fn, xs)


def test_mode_picks_the_smallest_most_frequent_value_and_its_last_index():
    v, i = cr.mode(cr.tensor([[1.0, 2, 2, 3, 3, 1], [5, 5, 4, 4, 0, 0]]), 1)
    np.testing.assert_array_equal(v.numpy(), [1.0, 0.0])
    np.testing.assert_array_equal(i.numpy(), [5, 5])
    x = cr.tensor([1.0, 2.0, 2.0, 3.0], requires_grad=True)
    x.mode(0).values.backward()
    np.testing.assert_array_equal(x.grad.numpy(), [0, 0, 1, 0])


def test_unique_dim_gives_sorted_distinct_slices():
    x = cr.tensor([[1.0, 2.0], [1.0, 2.0], [0.0, 5.0], [1.0, 2.0]])
    vals, inv, counts = cr.unique(x, dim=0, return_inverse=True, return_counts=True)
    np.testing.assert_array_equal(vals.numpy(), [[0.0, 5.0], [1.0, 2.0]])
    np.testing.assert_array_equal(inv.numpy(), [1, 1, 0, 1])
    np.testing.assert_array_equal(counts.numpy(), [1, 3])


def test_bad_arguments_are_named():
    x, src, idx = _inputs()
    with pytest.raises(ValueError, match="scatter_reduce: reduce must be one of"):
        cr.tensor(x).scatter_reduce(0, cr.tensor(idx), cr.tensor(src), "max")
    with pytest.raises(ValueError, match=r"scatter_reduce: src shape \(2, 5\) must have"):
        cr.tensor(x).scatter_reduce(0, cr.tensor(idx), cr.tensor(src[:2]), "sum")
    with pytest.raises(ValueError, match="scatter: reduce must be None, 'add' or 'multiply'"):
        cr.tensor(x).scatter(0, cr.tensor(idx), cr.tensor(src), reduce="mean")


torch = pytest.importorskip("torch")


@pytest.mark.parametrize("include_self", [True, False])
@pytest.mark.parametrize("reduce", REDUCES)
@pytest.mark.parametrize("dim", [0, 1])
def test_scatter_reduce_matches_torch(reduce, include_self, dim):
    x, src, idx = _inputs()
    if dim == 1:
        x, src, idx = x.T.copy(), src.T.copy(), idx.T.copy()
    src[1 if dim == 0 else 2, 2 if dim == 0 else 1] = 0.0  # a zero factor for prod
    src.flat[7] = x.max() + 1  # ties for amax/amin: an input value sent twice
    x.flat[3] = 0.0
    xc, sc = cr.tensor(x, requires_grad=True), cr.tensor(src, requires_grad=True)
    xt, st = torch.tensor(x, requires_grad=True), torch.tensor(src, requires_grad=True)
    yc = xc.scatter_reduce(dim, cr.tensor(idx), sc, reduce, include_self=include_self)
    yt = xt.scatter_reduce(dim, torch.tensor(idx), st, reduce, include_self=include_self)
    np.testing.assert_allclose(yc.detach().numpy(), yt.detach().numpy(), rtol=1e-12)
    u = rng.standard_normal(tuple(yc.shape))
    (yc * cr.tensor(u)).sum().backward()
    (yt * torch.tensor(u)).sum().backward()
    np.testing.assert_allclose(xc.grad.numpy(), xt.grad.numpy(), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(sc.grad.numpy(), st.grad.numpy(), rtol=1e-10, atol=1e-12)


def test_scatter_reduce_ties_share_the_gradient_as_torch():
    x = np.array([1.0, 5.0, 2.0])
    src = np.array([5.0, 5.0, 3.0, 1.0])
    idx = np.array([1, 1, 2, 0])
    for reduce in ("amax", "amin"):
        xc, sc = cr.tensor(x, requires_grad=True), cr.tensor(src, requires_grad=True)
        xt, st = torch.tensor(x, requires_grad=True), torch.tensor(src, requires_grad=True)
        xc.scatter_reduce(0, cr.tensor(idx), sc, reduce).sum().backward()
        xt.scatter_reduce(0, torch.tensor(idx), st, reduce).sum().backward()
        np.testing.assert_allclose(xc.grad.numpy(), xt.grad.numpy())
        np.testing.assert_allclose(sc.grad.numpy(), st.grad.numpy())


@pytest.mark.parametrize("reduce", ["add", "multiply"])
def test_scatter_with_reduce_matches_torch(reduce):
    x, src, idx = _inputs()
    yc = cr.tensor(x).scatter(0, cr.tensor(idx), cr.tensor(src), reduce=reduce)
    yt = torch.tensor(x).scatter(0, torch.tensor(idx), torch.tensor(src), reduce=reduce)
    np.testing.assert_allclose(yc.numpy(), yt.numpy(), rtol=1e-12)
    yc = cr.tensor(x).scatter(1, cr.tensor(idx[:4, :3]), 2.5, reduce=reduce)
    yt = torch.tensor(x).scatter(1, torch.tensor(idx[:4, :3]), 2.5, reduce=reduce)
    np.testing.assert_allclose(yc.numpy(), yt.numpy(), rtol=1e-12)


@pytest.mark.parametrize("dim, keepdim", [(0, False), (1, True), (-1, False), (2, True)])
def test_mode_matches_torch(dim, keepdim):
    a = rng.integers(0, 3, (3, 7, 4)).astype(np.float64)
    xc, xt = cr.tensor(a, requires_grad=True), torch.tensor(a, requires_grad=True)
    vc, ic = cr.mode(xc, dim, keepdim)
    vt, it = torch.mode(xt, dim, keepdim)
    np.testing.assert_array_equal(vc.detach().numpy(), vt.detach().numpy())
    np.testing.assert_array_equal(ic.numpy(), it.numpy())
    u = rng.standard_normal(tuple(vc.shape))
    (vc * cr.tensor(u)).sum().backward()
    (vt * torch.tensor(u)).sum().backward()
    np.testing.assert_array_equal(xc.grad.numpy(), xt.grad.numpy())


@pytest.mark.parametrize("dim", [0, 1, 2, -1])
def test_unique_dim_matches_torch(dim):
    a = rng.integers(0, 2, (4, 3, 5))
    a[1] = a[3]
    a[:, 2] = a[:, 0]
    a[..., 4] = a[..., 1]
    oc = cr.unique(cr.tensor(a), dim=dim, return_inverse=True, return_counts=True)
    ot = torch.unique(torch.tensor(a), dim=dim, return_inverse=True, return_counts=True)
    for c, t in zip(oc, ot):
        np.testing.assert_array_equal(c.numpy(), t.numpy())
