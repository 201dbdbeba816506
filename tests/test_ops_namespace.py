"""The Tensor namespace (``chainrule.ops.tensor_ns``) against the NumPy one: each extension of the
array interface gives the NumPy namespace's values on tensors, and is differentiable (gradient
and second derivative against finite differences)."""

from __future__ import annotations

import math

import numpy as np
import pytest

import chainrule as cr
from chainrule.autograd import gradcheck, gradgradcheck
from chainrule.backend import numpy_ns
from chainrule.ops import tensor_ns

RNG = np.random.default_rng(7)


def f64(a, requires_grad=True):
    return cr.tensor(np.asarray(a, dtype=np.float64), requires_grad=requires_grad)


def test_erf_matches_the_exact_erf_and_its_derivative():
    a = np.linspace(-4, 4, 81)
    exact = np.array([math.erf(v) for v in a])
    x = f64(a)
    y = tensor_ns.erf(x)
    np.testing.assert_allclose(y.data, exact, rtol=2e-7, atol=2e-7)
    np.testing.assert_allclose(numpy_ns.erf(a.astype(np.float32)), exact, rtol=2e-7, atol=2e-7)
    assert tensor_ns.erf(f64([0.0])).item() == 0.0
    # the derivative is the approximation's: within 2e-6 of 2/sqrt(pi) exp(-x^2), except at 0
    # itself, where the gradient of |x| (0 there, as in PyTorch) leaves 0
    (g,) = cr.grad(y.sum(), [x])
    np.testing.assert_allclose(g.data[a != 0], 2 / math.sqrt(math.pi) * np.exp(-a[a != 0] ** 2),
                               atol=2e-6)


def test_erf_is_twice_differentiable():
    x = f64(RNG.uniform(-2, 2, (3, 4)))
    assert gradcheck(tensor_ns.erf, [x]) and gradgradcheck(tensor_ns.erf, [x])


@pytest.mark.parametrize("shape, window, axis", [((5,), (3,), None), ((4, 5), (2, 3), None),
                                                 ((4, 5), (2,), 0), ((3, 4, 5), (2, 2), (1, 2))])
def test_sliding_window_view_matches_numpy_and_differentiates(shape, window, axis):
    a = RNG.standard_normal(shape)
    x = f64(a)
    y = tensor_ns.sliding_window_view(x, window, axis=axis)
    np.testing.assert_array_equal(y.data, numpy_ns.sliding_window_view(a, window, axis=axis))
    # each element's gradient is the number of windows it falls in
    (g,) = cr.grad(y.sum(), [x])
    positions = np.arange(a.size).reshape(shape)
    counts = np.zeros(a.size)
    np.add.at(counts, np.lib.stride_tricks.sliding_window_view(positions, window, axis=axis)
              .reshape(-1), 1.0)
    np.testing.assert_array_equal(g.data.reshape(-1), counts)
    fn = lambda t: tensor_ns.sliding_window_view(t, window, axis=axis) ** 2  # noqa: E731
    assert gradcheck(fn, [x]) and gradgradcheck(fn, [x])


def test_is_basic_index_is_the_numpy_namespace_rule():
    for index in [1, (1, slice(None)), (Ellipsis, None, 2), np.array([0, 1]),
                  (slice(None), np.array([1]))]:
        assert tensor_ns.is_basic_index(index) == numpy_ns.is_basic_index(index)
    assert numpy_ns.is_basic_index((0, slice(1, 3), None, Ellipsis))
    assert not numpy_ns.is_basic_index((0, np.array([1, 1])))


@pytest.mark.parametrize("index", [np.array([0, 2, 0]), (1, slice(1, 3)),
                                   (np.array([1, 1]), np.array([0, 0]))])
def test_index_put_add_matches_the_numpy_namespace(index):
    out_shape = (3, 4)
    g_shape = np.zeros(out_shape)[index].shape
    g = RNG.standard_normal(g_shape)
    ref = numpy_ns.index_put_add(out_shape, index, g)
    y = tensor_ns.index_put_add(out_shape, index, f64(g))
    np.testing.assert_array_equal(y.data, ref)
    expect = np.zeros(out_shape)
    np.add.at(expect, index, g)
    np.testing.assert_array_equal(ref, expect)


def test_scatter_add_zeros_and_put_along_dim_match_the_numpy_namespace():
    idx = np.array([[0, 2], [1, 1], [3, 0]])
    where = (np.arange(3)[:, None], idx)
    src = RNG.standard_normal(idx.shape)
    ref = numpy_ns.scatter_add_zeros((3, 4), where, src)
    np.testing.assert_array_equal(tensor_ns.scatter_add_zeros((3, 4), where, f64(src)).data, ref)
    expect = np.zeros((3, 4))
    np.add.at(expect, where, src)
    np.testing.assert_array_equal(ref, expect)

    top = np.array([[2], [0], [3]])  # one index per row: put_along_dim places, never adds
    g = RNG.standard_normal((3, 1))
    ref = numpy_ns.put_along_dim((3, 4), top, g, 1)
    expect = np.zeros((3, 4))
    np.put_along_axis(expect, top, g, axis=1)
    np.testing.assert_array_equal(ref, expect)
    x = f64(g)
    y = tensor_ns.put_along_dim((3, 4), top, x, 1)
    np.testing.assert_array_equal(y.data, ref)
    assert gradcheck(lambda t: tensor_ns.put_along_dim((3, 4), top, t, 1) ** 2, [x])
