"""Property-based tests (hypothesis) of broadcasting, reductions and indexing: random shapes,
dims and indices; forward against NumPy, gradients against closed forms."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import chainrule as cr

SETTINGS = settings(max_examples=30, deadline=None, derandomize=True)


def _leaf(a):
    return cr.tensor(a, dtype=cr.float64, requires_grad=True)


def _sum_to(g, shape):
    """Sum a broadcast gradient back to ``shape`` element by element (an independent loop,
    not the engine's axis arithmetic): input element j receives every output element that
    broadcasting read from it."""
    out = np.zeros(shape)
    lead = g.ndim - len(shape)
    for idx in np.ndindex(*g.shape):
        src = tuple(0 if n == 1 else i for i, n in zip(idx[lead:], shape))
        out[src] += g[idx]
    return out


# ----------------------------------------------------------------------------- broadcasting

PARTIALS = {  # d/da and d/db of f(a, b), in NumPy, for the closed-form gradients
    "add": (lambda a, b: a + b, lambda a, b: 1 + 0 * (a + b), lambda a, b: 1 + 0 * (a + b)),
    "sub": (lambda a, b: a - b, lambda a, b: 1 + 0 * (a + b), lambda a, b: -1 + 0 * (a + b)),
    "mul": (lambda a, b: a * b, lambda a, b: b + 0 * a, lambda a, b: a + 0 * b),
    "div": (lambda a, b: a / b, lambda a, b: 1 / b + 0 * a, lambda a, b: -a / b**2),
    "maximum": (np.maximum, lambda a, b: (a > b) + 0.0, lambda a, b: (b > a) + 0.0),
}


@SETTINGS
@given(shapes=hnp.mutually_broadcastable_shapes(num_shapes=2, min_dims=0, max_dims=4,
                                                 max_side=3),
       op=st.sampled_from(sorted(PARTIALS)), seed=st.integers(0, 2**16))
def test_broadcast_gradient_has_input_shape_and_equals_summed_closed_form(shapes, op, seed):
    rng = np.random.default_rng(seed)
    sa, sb = shapes.input_shapes
    a = rng.uniform(0.5, 2.0, sa)
    b = rng.uniform(-2.0, -0.5, sb) if op != "maximum" else rng.uniform(0.5, 2.0, sb)
    f, da, db = PARTIALS[op]
    x, y = _leaf(a), _leaf(b)
    out = getattr(cr, op)(x, y)
    assert tuple(out.shape) == shapes.result_shape
    np.testing.assert_allclose(out.data, f(a, b), rtol=1e-12)
    w = rng.standard_normal(shapes.result_shape)
    out.backward(cr.tensor(w, dtype=cr.float64))
    assert tuple(x.grad.shape) == sa and tuple(y.grad.shape) == sb
    np.testing.assert_allclose(x.grad.data, _sum_to(w * da(a, b), sa), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(y.grad.data, _sum_to(w * db(a, b), sb), rtol=1e-10, atol=1e-12)


@SETTINGS
@given(shapes=hnp.mutually_broadcastable_shapes(num_shapes=3, min_dims=0, max_dims=3,
                                                 max_side=3), seed=st.integers(0, 2**16))
def test_where_gradient_is_routed_by_the_condition_and_summed_back(shapes, seed):
    rng = np.random.default_rng(seed)
    sc, sa, sb = shapes.input_shapes
    c = rng.random(sc) < 0.5
    a, b = rng.standard_normal(sa), rng.standard_normal(sb)
    x, y = _leaf(a), _leaf(b)
    out = cr.where(cr.tensor(c), x, y)
    np.testing.assert_array_equal(out.data, np.where(c, a, b))
    w = rng.standard_normal(shapes.result_shape)
    out.backward(cr.tensor(w, dtype=cr.float64))
    cb = np.broadcast_to(c, shapes.result_shape)
    np.testing.assert_allclose(x.grad.data, _sum_to(np.where(cb, w, 0.0), sa), atol=1e-12)
    np.testing.assert_allclose(y.grad.data, _sum_to(np.where(cb, 0.0, w), sb), atol=1e-12)


# ----------------------------------------------------------------------------- reductions


@st.composite
def reduction_cases(draw):
    shape = draw(hnp.array_shapes(min_dims=1, max_dims=4, min_side=1, max_side=4))
    nd = len(shape)
    dims = draw(st.lists(st.integers(-nd, nd - 1), min_size=1, max_size=nd,
                         unique_by=lambda d: d % nd))
    dim = dims[0] if len(dims) == 1 and draw(st.booleans()) else tuple(dims)
    return shape, dim, draw(st.booleans()), draw(st.integers(0, 2**16))


def _axes(dim, nd):
    return tuple(sorted(d % nd for d in ((dim,) if isinstance(dim, int) else dim)))


def _distinct(shape, seed):
    """Values spaced at least 0.1 apart, so max/min have no ties."""
    n = int(np.prod(shape))
    return np.random.default_rng(seed).permutation(n).reshape(shape) * 0.1 - 0.05 * n


@SETTINGS
@given(case=reduction_cases(), name=st.sampled_from(["sum", "mean", "var", "amax", "amin"]))
def test_reduction_matches_numpy_and_its_gradient_the_closed_form(case, name):
    shape, dim, keepdim, seed = case
    a = _distinct(shape, seed)
    axes = _axes(dim, len(shape))
    n = int(np.prod([shape[d] for d in axes]))
    x = _leaf(a)
    if name == "var":
        assume(n >= 2)
        y = x.var(dim, keepdim=keepdim)
        expected = a.var(axis=axes, ddof=1, keepdims=keepdim)
        closed = lambda w: 2 * (a - a.mean(axes, keepdims=True)) / (n - 1) * w  # noqa: E731
    elif name in ("amax", "amin"):
        y = getattr(x, name)(dim, keepdim=keepdim)
        expected = getattr(np, name[1:])(a, axis=axes, keepdims=keepdim)
        pick = a == getattr(np, name[1:])(a, axis=axes, keepdims=True)
        closed = lambda w: pick * w  # noqa: E731
    else:
        y = getattr(x, name)(dim, keepdim=keepdim)
        expected = getattr(np, name)(a, axis=axes, keepdims=keepdim)
        closed = (lambda w: w + 0 * a) if name == "sum" else (lambda w: w / n + 0 * a)
    assert tuple(y.shape) == expected.shape
    np.testing.assert_allclose(y.data, expected, rtol=1e-12, atol=1e-12)
    w = np.random.default_rng(seed + 1).standard_normal(expected.shape)
    y.backward(cr.tensor(w, dtype=cr.float64))
    np.testing.assert_allclose(x.grad.data, closed(np.expand_dims(w, axes) if not keepdim else w),
                               rtol=1e-10, atol=1e-12)


@SETTINGS
@given(shape=hnp.array_shapes(min_dims=1, max_dims=3, min_side=1, max_side=4),
       data=st.data(), mode=st.sampled_from(["max", "min"]))
def test_max_with_dim_matches_numpy_and_gradient_goes_to_the_index(shape, data, mode):
    dim = data.draw(st.integers(-len(shape), len(shape) - 1))
    keepdim = data.draw(st.booleans())
    a = _distinct(shape, data.draw(st.integers(0, 2**16)))
    x = _leaf(a)
    values, indices = getattr(x, mode)(dim, keepdim=keepdim)
    np.testing.assert_array_equal(values.data, getattr(np, mode)(a, axis=dim, keepdims=keepdim))
    idx = getattr(np, "arg" + mode)(a, axis=dim, keepdims=True)
    np.testing.assert_array_equal(indices.data, idx if keepdim else np.squeeze(idx, dim))
    values.sum().backward()
    expected = np.zeros(shape)
    np.put_along_axis(expected, idx, 1.0, axis=dim)
    np.testing.assert_array_equal(x.grad.data, expected)


# ----------------------------------------------------------------------------- indexing


@st.composite
def basic_index_cases(draw):
    shape = draw(hnp.array_shapes(min_dims=1, max_dims=4, min_side=1, max_side=5))
    index = draw(hnp.basic_indices(shape, allow_newaxis=True, allow_ellipsis=True))
    return shape, index


@st.composite
def advanced_index_cases(draw):
    shape = draw(hnp.array_shapes(min_dims=1, max_dims=3, min_side=1, max_side=5))
    kind = draw(st.sampled_from(["int", "int-and-slice", "bool"]))
    if kind == "bool":
        k = draw(st.integers(1, len(shape)))
        index = draw(hnp.arrays(np.bool_, shape[:k]))
    else:
        lead = kind == "int-and-slice" and len(shape) > 1  # a full slice, then arrays
        index = draw(hnp.integer_array_indices(
            shape[lead:], result_shape=hnp.array_shapes(min_dims=1, max_dims=2, max_side=4)))
        if lead:
            index = (slice(None), *index)
    return shape, index


def _check_index(shape, index, seed):
    rng = np.random.default_rng(seed)
    a = rng.standard_normal(shape)
    x = _leaf(a)
    y = x[index]
    expected = a[index]
    assert tuple(y.shape) == expected.shape
    np.testing.assert_array_equal(y.data, expected)
    w = rng.standard_normal(expected.shape)
    y.backward(cr.tensor(w, dtype=cr.float64))
    closed = np.zeros(shape)
    np.add.at(closed, index, w)  # repeated elements accumulate
    np.testing.assert_allclose(x.grad.data, closed, rtol=1e-12, atol=1e-12)


@SETTINGS
@given(case=basic_index_cases(), seed=st.integers(0, 2**16))
def test_basic_indexing_matches_numpy_and_gradient_scatters_back(case, seed):
    _check_index(*case, seed)


@SETTINGS
@given(case=advanced_index_cases(), seed=st.integers(0, 2**16))
def test_advanced_indexing_matches_numpy_and_repeated_indices_accumulate(case, seed):
    _check_index(*case, seed)


@pytest.mark.parametrize("index", [[0, 0, 0], [2, 0, 2, 2]])
def test_tensor_index_with_repeats_accumulates(index):
    a = np.arange(12.0).reshape(3, 4)
    x = _leaf(a)
    x[cr.tensor(index)].sum().backward()
    np.testing.assert_array_equal(x.grad.data.sum(1), np.bincount(index, minlength=3) * 4)
