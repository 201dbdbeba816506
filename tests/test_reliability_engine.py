"""Gradients at the edges of a reduction's or a power's domain, against PyTorch (where
installed) and against written-out values."""

import warnings

import numpy as np
import pytest

import chainrule as cr

CASES = [((1,), None), ((3, 1), 1), ((3, 0), 1), ((0,), None), ((2, 3), 0), ((4, 1), 0)]


def _grad(f, x, *args, **kw):
    a = cr.tensor(x, requires_grad=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        getattr(a, f)(*args, **kw).sum().backward()
    return a.grad.numpy()


@pytest.mark.parametrize("f", ["var", "std"])
@pytest.mark.parametrize("shape,dim", CASES)
def test_var_std_grad_one_element_or_empty_is_nan(f, shape, dim):
    x = np.random.default_rng(0).random(shape).astype(np.float32)
    g = _grad(f, x, dim)
    n = x.size if dim is None else x.shape[dim]
    assert g.shape == x.shape
    if n <= 1:
        assert np.isnan(g).all()
    torch = pytest.importorskip("torch")
    t = torch.tensor(x, requires_grad=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        getattr(t, f)(dim).sum().backward()
    np.testing.assert_allclose(g, t.grad.numpy(), rtol=1e-5, atol=1e-6, equal_nan=True)


@pytest.mark.parametrize("correction", [0, 1, 2])
def test_var_correction_at_least_n(correction):
    x = np.array([[0.5], [2.0]], dtype=np.float32)
    g = _grad("var", x, 1, correction=correction)
    torch = pytest.importorskip("torch")
    t = torch.tensor(x, requires_grad=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        t.var(1, correction=correction).sum().backward()
    if correction >= 1:
        assert np.isnan(g).all() or np.allclose(g, t.grad.numpy(), equal_nan=True)
    else:
        np.testing.assert_allclose(g, t.grad.numpy(), equal_nan=True)


@pytest.mark.parametrize("b", [0, 0.0])
def test_pow_zero_gradient_at_zero_is_zero(b):
    a = cr.tensor([0.0, 1.0, -1.0, 3.0], requires_grad=True)
    (a ** b).sum().backward()
    np.testing.assert_array_equal(a.grad.numpy(), [0.0, 0.0, 0.0, 0.0])


def test_pow_tensor_exponent_zero_at_zero():
    a = cr.tensor([0.0, 1.0, 2.0, 0.0], requires_grad=True)
    e = cr.tensor([0.0, 0.0, 1.0, 2.0], requires_grad=True)
    (a ** e).sum().backward()
    np.testing.assert_allclose(a.grad.numpy(), [0.0, 0.0, 1.0, 0.0])
    np.testing.assert_allclose(e.grad.numpy(), [0.0, 0.0, 2 * np.log(2), 0.0], rtol=1e-6)
    torch = pytest.importorskip("torch")
    ta = torch.tensor([0.0, 1.0, 2.0, 0.0], requires_grad=True)
    te = torch.tensor([0.0, 0.0, 1.0, 2.0], requires_grad=True)
    (ta ** te).sum().backward()
    np.testing.assert_allclose(a.grad.numpy(), ta.grad.numpy(), rtol=1e-6)
    np.testing.assert_allclose(e.grad.numpy(), te.grad.numpy(), rtol=1e-6)


@pytest.mark.parametrize("op", ["sum", "mean", "amax", "prod", "logsumexp"])
def test_reductions_over_size_one_dim_against_torch(op):
    torch = pytest.importorskip("torch")
    x = np.random.default_rng(1).standard_normal((3, 1)).astype(np.float32)
    a = cr.tensor(x, requires_grad=True)
    getattr(cr, op)(a, 1).sum().backward()
    t = torch.tensor(x, requires_grad=True)
    getattr(torch, op)(t, 1).sum().backward()
    np.testing.assert_allclose(a.grad.numpy(), t.grad.numpy(), rtol=1e-5, atol=1e-6)
