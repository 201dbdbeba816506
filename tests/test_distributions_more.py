"""Gamma, Beta and MultivariateNormal: log_prob, entropy, mean, variance, kl_divergence and
their gradients against torch.distributions; rsample's implicit gradient against PyTorch's and
the CDF it is derived from; sample moments."""

from __future__ import annotations

import numpy as np
import pytest

import chainrule as cr
import chainrule.distributions as D
from chainrule.distributions._special import _gamma_p, standard_gamma_grad

rng = np.random.default_rng(3)


def test_implicit_gamma_gradient_keeps_the_cdf_fixed():
    """z(alpha) with P(alpha, z(alpha)) = u: moving alpha by h and z by h dz/dalpha leaves the
    CDF unchanged to first order (the drift is far below the change of alpha alone)."""
    a = np.array([0.3, 1.0, 2.5, 7.0, 40.0])
    z = np.array([0.05, 1.3, 2.0, 8.5, 37.0])
    h = 1e-4
    dz = standard_gamma_grad(a, z)
    drift = _gamma_p(a + h, z + h * dz) - _gamma_p(a, z)
    alone = _gamma_p(a + h, z) - _gamma_p(a, z)
    assert (np.abs(drift) < 1e-3 * np.abs(alone)).all(), (drift, alone)


def test_gamma_rsample_moments_and_rate_gradient():
    cr.manual_seed(0)
    a, b = cr.tensor([0.7, 3.0]), cr.tensor([2.0, 0.5], requires_grad=True)
    z = D.Gamma(a, b).rsample((40000,))
    np.testing.assert_allclose(z.mean(0).detach().numpy(), [0.35, 6.0], rtol=0.03)
    z.sum().backward()
    np.testing.assert_allclose(b.grad.numpy(), -(z / b).sum(0).detach().numpy(), rtol=1e-5)


def test_beta_sample_moments():
    cr.manual_seed(1)
    d = D.Beta(cr.tensor([0.5, 2.0]), cr.tensor([1.5, 5.0]))
    x = d.sample((40000,)).numpy()
    np.testing.assert_allclose(x.mean(0), d.mean.numpy(), rtol=0.03)
    np.testing.assert_allclose(x.var(0), d.variance.numpy(), rtol=0.05)
    assert x.min() > 0 and x.max() < 1


def test_bad_parameters_are_named():
    with pytest.raises(ValueError, match="Gamma: rate must be positive"):
        D.Gamma(cr.tensor([1.0]), cr.tensor([-1.0]))
    with pytest.raises(ValueError, match="MultivariateNormal: pass exactly one of"):
        D.MultivariateNormal(cr.zeros(2))
    with pytest.raises(ValueError, match="MultivariateNormal: covariance_matrix is not positive"):
        D.MultivariateNormal(cr.zeros(2), covariance_matrix=cr.tensor([[1.0, 2.0], [2.0, 1.0]]))
    with pytest.raises(ValueError, match=r"MultivariateNormal: the scale of shape \(3, 3\)"):
        D.MultivariateNormal(cr.zeros(2), scale_tril=cr.eye(3))


torch = pytest.importorskip("torch")
TD = torch.distributions


def _params(*shapes, lo=0.4, hi=3.0):
    return [rng.uniform(lo, hi, s) for s in shapes]


def _check(make_ours, make_theirs, params, value, tol=1e-9):
    """log_prob, entropy, mean, variance and the gradients of log_prob + entropy in every
    parameter, against torch."""
    ours = [cr.tensor(p, requires_grad=True) for p in params]
    theirs = [torch.tensor(p, requires_grad=True) for p in params]
    dc, dt = make_ours(*ours), make_theirs(*theirs)
    for name in ("mean", "variance"):
        np.testing.assert_allclose(getattr(dc, name).detach().numpy(),
                                   getattr(dt, name).detach().numpy(), rtol=tol)
    lc, lt = dc.log_prob(cr.tensor(value)), dt.log_prob(torch.tensor(value))
    ec, et = dc.entropy(), dt.entropy()
    np.testing.assert_allclose(lc.detach().numpy(), lt.detach().numpy(), rtol=tol, atol=tol)
    np.testing.assert_allclose(ec.detach().numpy(), et.detach().numpy(), rtol=tol, atol=tol)
    (lc.sum() + ec.sum()).backward()
    (lt.sum() + et.sum()).backward()
    for a, b in zip(ours, theirs):
        np.testing.assert_allclose(a.grad.numpy(), b.grad.numpy(), rtol=1e-7, atol=1e-9)


def test_gamma_matches_torch():
    a, b = _params((2, 3), (3,))
    _check(D.Gamma, TD.Gamma, [a, b], rng.uniform(0.1, 4.0, (5, 2, 3)))


def test_beta_matches_torch():
    a, b = _params((2, 3), (2, 3))
    _check(D.Beta, TD.Beta, [a, b], rng.uniform(0.05, 0.95, (4, 2, 3)))


def _tril(*batch, k=3):
    return np.tril(rng.standard_normal(batch + (k, k))) + 2.5 * np.eye(k)


@pytest.mark.parametrize("form", ["covariance_matrix", "scale_tril"])
def test_multivariate_normal_matches_torch(form):
    L = _tril(2)
    mat = L @ np.swapaxes(L, -1, -2) if form == "covariance_matrix" else L
    loc = rng.standard_normal((2, 3))
    _check(lambda m, s: D.MultivariateNormal(m, **{form: s}),
           lambda m, s: TD.MultivariateNormal(m, **{form: s}), [loc, mat],
           rng.standard_normal((4, 2, 3)))


def test_multivariate_normal_rsample_and_covariance():
    L = _tril()
    loc = rng.standard_normal(3)
    cr.manual_seed(2)
    d = D.MultivariateNormal(cr.tensor(loc), scale_tril=cr.tensor(L))
    x = d.rsample((50000,)).numpy()
    np.testing.assert_allclose(x.mean(0), loc, atol=0.05)
    np.testing.assert_allclose(np.cov(x.T), L @ L.T, atol=0.15)
    np.testing.assert_allclose(d.covariance_matrix.numpy(), L @ L.T, rtol=1e-12)


@pytest.mark.parametrize("family", ["gamma", "beta", "mvn"])
def test_kl_divergence_matches_torch(family):
    if family == "mvn":
        p1 = [rng.standard_normal((2, 3)), _tril(2)]
        p2 = [rng.standard_normal((3,)), _tril()]

        def ours(m, s):
            return D.MultivariateNormal(m, scale_tril=s)

        def theirs(m, s):
            return TD.MultivariateNormal(m, scale_tril=s)
    else:
        p1, p2 = _params((4,), (4,)), _params((4,), (4,))
        ours, theirs = {"gamma": (D.Gamma, TD.Gamma), "beta": (D.Beta, TD.Beta)}[family]
    c1 = [cr.tensor(p, requires_grad=True) for p in p1]
    t1 = [torch.tensor(p, requires_grad=True) for p in p1]
    kc = D.kl_divergence(ours(*c1), ours(*[cr.tensor(p) for p in p2]))
    kt = TD.kl_divergence(theirs(*t1), theirs(*[torch.tensor(p) for p in p2]))
    np.testing.assert_allclose(kc.detach().numpy(), kt.detach().numpy(), rtol=1e-9)
    kc.sum().backward()
    kt.sum().backward()
    for a, b in zip(c1, t1):
        np.testing.assert_allclose(a.grad.numpy(), b.grad.numpy(), rtol=1e-7, atol=1e-9)


def test_gamma_rsample_gradient_matches_torch_implicit_gradient():
    cr.manual_seed(4)
    alpha = rng.uniform(0.2, 12.0, 50)
    a = cr.tensor(alpha, requires_grad=True)
    z = D.Gamma(a, 1.0).rsample()
    z.sum().backward()
    ref = torch._standard_gamma_grad(torch.tensor(alpha), torch.tensor(z.detach().numpy()))
    np.testing.assert_allclose(a.grad.numpy(), ref.numpy(), rtol=2e-3)
