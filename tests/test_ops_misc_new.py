"""The added ops (atan2, hypot, nonzero, meshgrid, unique, searchsorted, bucketize,
nan_to_num, masked_select, var_mean, std_mean, median, scatter, cdist, diff, ravel, isclose)
and the distance functions and losses of nn.functional, against NumPy and PyTorch: values and
gradients; gradcheck for the differentiable ones."""

from __future__ import annotations

import numpy as np
import pytest

import chainrule as cr
import chainrule.nn.functional as F
from chainrule.autograd import gradcheck, gradgradcheck

rng = np.random.default_rng(17)


def t64(*shape, lo=-2.0, hi=2.0):
    return cr.tensor(rng.uniform(lo, hi, shape), dtype=cr.float64, requires_grad=True)


def test_index_valued_ops_against_numpy():
    a = np.array([[0, 1.5, 0], [2, 0, -1]])
    x = cr.tensor(a)
    np.testing.assert_array_equal(cr.nonzero(x).numpy(), np.argwhere(a))
    rows, cols = x.nonzero(as_tuple=True)
    np.testing.assert_array_equal(rows.numpy(), np.nonzero(a)[0])
    assert int(cr.count_nonzero(x)) == 3
    np.testing.assert_array_equal(cr.count_nonzero(x, dim=0).numpy(), [1, 1, 1])
    v, inv, cnt = cr.unique(cr.tensor([3, 1, 3, 2, 1]), return_inverse=True, return_counts=True)
    np.testing.assert_array_equal(v.numpy(), [1, 2, 3])
    np.testing.assert_array_equal(inv.numpy(), [2, 0, 2, 1, 0])
    np.testing.assert_array_equal(cnt.numpy(), [2, 1, 2])
    s = cr.tensor([1.0, 3.0, 5.0, 7.0])
    q = cr.tensor([[3.0, 6.0], [0.0, 9.0]])
    np.testing.assert_array_equal(cr.searchsorted(s, q).numpy(), [[1, 3], [0, 4]])
    np.testing.assert_array_equal(cr.searchsorted(s, q, right=True).numpy(), [[2, 3], [0, 4]])
    np.testing.assert_array_equal(cr.bucketize(q, s).numpy(), [[1, 3], [0, 4]])
    assert cr.isclose(cr.tensor([1.0, 2.0]), cr.tensor([1.0 + 1e-9, 2.1])).numpy().tolist() == [
        True, False]


@pytest.mark.parametrize("name, fn, shapes", [
    ("atan2", lambda y, x: cr.atan2(y, x), [(3, 2), (3, 2)]),
    ("hypot", cr.hypot, [(3,), (3,)]),
    ("meshgrid", lambda a, b: sum(g * (i + 1) for i, g in enumerate(cr.meshgrid(a, b))),
     [(3,), (2,)]),
    ("meshgrid-xy", lambda a, b: cr.meshgrid(a, b, indexing="xy")[0] * 2, [(3,), (2,)]),
    ("nan_to_num", cr.nan_to_num, [(4,)]),
    ("masked_select", lambda x: cr.masked_select(x, cr.tensor([[True, False, True]])),
     [(2, 3)]),
    ("var_mean", lambda x: cr.var_mean(x, 1)[0] + cr.var_mean(x, 1)[1], [(2, 4)]),
    ("std_mean", lambda x: cr.std_mean(x, 0, correction=0)[0], [(3, 2)]),
    ("median", lambda x: x.median(), [(7,)]),
    ("median-dim", lambda x: cr.median(x, 1, keepdim=True).values, [(3, 4)]),
    ("scatter", lambda x, s: cr.scatter(x, 1, cr.tensor([[0, 2], [1, 0]]), s),
     [(2, 3), (2, 2)]),
    ("scatter-add", lambda x, s: x.scatter(0, cr.tensor([[1, 0, 1]]), s, reduce="add"),
     [(2, 3), (1, 3)]),
    ("cdist", lambda a, b: cr.cdist(a, b), [(3, 2), (4, 2)]),
    ("cdist-p1", lambda a, b: cr.cdist(a, b, p=1), [(2, 3, 2), (2, 2, 2)]),
    ("diff", lambda x: cr.diff(x, n=2, dim=0), [(4, 2)]),
    ("ravel", lambda x: x.t().ravel() * 3, [(2, 3)]),
])
def test_differentiable_ones_gradcheck(name, fn, shapes):
    lo = 0.2 if name == "atan2" else -2.0
    xs = [t64(*s, lo=lo) for s in shapes]
    assert gradcheck(fn, xs)
    if name not in ("median", "median-dim"):
        assert gradgradcheck(fn, xs)


def test_scatter_and_nan_to_num_values():
    x = cr.zeros(2, 3)
    y = cr.scatter(x, 1, cr.tensor([[2], [0]]), value=5.0)
    np.testing.assert_array_equal(y.numpy(), [[0, 0, 5], [5, 0, 0]])
    z = cr.nan_to_num(cr.tensor([np.nan, np.inf, -np.inf, 1.0]), posinf=9.0)
    np.testing.assert_array_equal(z.numpy(), [0, 9, np.finfo(np.float32).min, 1])


torch = pytest.importorskip("torch")
TF = torch.nn.functional


def test_median_meshgrid_and_cdist_against_torch():
    a = rng.standard_normal((4, 6))
    np.testing.assert_allclose(cr.median(cr.tensor(a)).numpy(), torch.median(torch.tensor(a)))
    v, i = cr.median(cr.tensor(a), 1)
    vt, it = torch.median(torch.tensor(a), 1)
    np.testing.assert_allclose(v.numpy(), vt.numpy())
    np.testing.assert_array_equal(i.numpy(), it.numpy())
    g = cr.meshgrid(cr.arange(3), cr.arange(2), indexing="xy")
    gt = torch.meshgrid(torch.arange(3), torch.arange(2), indexing="xy")
    for p, q in zip(g, gt):
        np.testing.assert_array_equal(p.numpy(), q.numpy())
    b = rng.standard_normal((5, 6))
    np.testing.assert_allclose(cr.cdist(cr.tensor(a), cr.tensor(b)).numpy(),
                               torch.cdist(torch.tensor(a), torch.tensor(b)).numpy(), atol=1e-10)


@pytest.mark.parametrize("name, args", [
    ("cosine_similarity", ((4, 5), (4, 5))),
    ("pairwise_distance", ((4, 5), (4, 5))),
    ("triplet_margin_loss", ((4, 5), (4, 5), (4, 5))),
    ("margin_ranking_loss", ((6,), (6,), "sign")),
    ("cosine_embedding_loss", ((4, 5), (4, 5), "sign4")),
    ("hinge_embedding_loss", ((6,), "sign")),
    ("soft_margin_loss", ((6,), "sign")),
    ("poisson_nll_loss", ((6,), "pos")),
    ("gaussian_nll_loss", ((4, 2), (4, 2), "var")),
])
def test_losses_and_distances_against_torch(name, args):
    ours, theirs = [], []
    for a in args:
        if a == "sign":
            v = np.sign(rng.standard_normal(6))
        elif a == "sign4":
            v = np.sign(rng.standard_normal(4))
        elif a == "pos":
            v = rng.uniform(0, 4, 6).round()
        elif a == "var":
            v = rng.uniform(0.5, 2, (4, 2))
        else:
            v = rng.standard_normal(a)
        grad = not isinstance(a, str) or a == "var"
        ours.append(cr.tensor(v, requires_grad=grad))
        theirs.append(torch.tensor(v, requires_grad=grad))
    kw = {"full": True} if name == "poisson_nll_loss" else {}
    yc, yt = getattr(F, name)(*ours, **kw), getattr(TF, name)(*theirs, **kw)
    np.testing.assert_allclose(yc.detach().numpy(), yt.detach().numpy(), rtol=1e-6, atol=1e-8)
    yc.sum().backward()
    yt.sum().backward()
    for p, q in zip(ours, theirs):
        if q.requires_grad:
            np.testing.assert_allclose(p.grad.numpy(), q.grad.numpy(), rtol=1e-6, atol=1e-8)


def test_cumprod_bernoulli_and_tensor_unfold():
    a = np.array([[2.0, 0.0, 3.0], [1.0, -1.0, 0.5]])
    xc, xt = cr.tensor(a, requires_grad=True), torch.tensor(a, requires_grad=True)
    (cr.cumprod(xc, 1) * cr.tensor(a)).sum().backward()
    (torch.cumprod(xt, 1) * torch.tensor(a)).sum().backward()
    np.testing.assert_allclose(xc.grad.numpy(), xt.grad.numpy())
    cr.manual_seed(0)
    b = cr.bernoulli(cr.full((20000,), 0.3)).numpy()
    assert set(np.unique(b)) <= {0.0, 1.0} and abs(b.mean() - 0.3) < 0.015
    x = rng.standard_normal((3, 7))
    xc, xt = cr.tensor(x, requires_grad=True), torch.tensor(x, requires_grad=True)
    yc, yt = xc.unfold(1, 3, 2), xt.unfold(1, 3, 2)
    np.testing.assert_array_equal(yc.detach().numpy(), yt.detach().numpy())
    yc.sum().backward()
    yt.sum().backward()
    np.testing.assert_array_equal(xc.grad.numpy(), xt.grad.numpy())


@pytest.mark.parametrize("call", [
    lambda L, x: L.vector_norm(x), lambda L, x: L.vector_norm(x, 3, dim=1),
    lambda L, x: L.vector_norm(x, float("inf"), dim=(0, 2), keepdim=True),
    lambda L, x: L.vector_norm(x, 0.5, dim=-1), lambda L, x: L.vector_norm(x, 1),
    lambda L, x: L.matrix_norm(x), lambda L, x: L.matrix_norm(x, 1),
    lambda L, x: L.matrix_norm(x, float("-inf"), keepdim=True),
    lambda L, x: L.norm(x), lambda L, x: L.norm(x, dim=(0, 1)),
    lambda L, x: L.norm(x[0], 1), lambda L, x: L.norm(x[0, 0], 4),
])
def test_linalg_norms_against_torch(call):
    import chainrule.linalg as L

    a = rng.standard_normal((2, 3, 4))
    xc, xt = cr.tensor(a, requires_grad=True), torch.tensor(a, requires_grad=True)
    yc, yt = call(L, xc), call(torch.linalg, xt)
    np.testing.assert_allclose(yc.detach().numpy(), yt.detach().numpy(), rtol=1e-10)
    yc.sum().backward()
    yt.sum().backward()
    np.testing.assert_allclose(xc.grad.numpy(), xt.grad.numpy(), rtol=1e-8, atol=1e-12)
