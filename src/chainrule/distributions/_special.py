"""The differentiable special functions and matrix ops the distributions need: lgamma and
digamma, the Cholesky factor and the lower-triangular solve, and the standard gamma sample with
its implicit reparameterization gradient. Each is an op with its rule beside it."""

from __future__ import annotations

import numpy as np

from ..autograd import Op
from ..backend import numpy_ns
from ..ops.special import Cholesky, Digamma, Lgamma, Solve, SolveTril, digamma, lgamma  # noqa: F401


def lgamma_array(x):
    x = np.asarray(x)
    return numpy_ns.lgamma(x)


def digamma_array(x):
    """psi(x) for x > 0 in float64 (see numpy_ns.digamma_code)."""
    return numpy_ns.digamma_code(numpy_ns, np.asarray(x, dtype=np.float64))


def trigamma_array(x):
    """psi'(x) for x > 0 in float64 (see numpy_ns.trigamma_code)."""
    return numpy_ns.trigamma_code(numpy_ns, np.asarray(x, dtype=np.float64))


def _gamma_p(a, x, iters=300):
    """The regularized lower incomplete gamma function P(a, x): its series for x < a + 1, one
    minus the continued fraction of Q (modified Lentz) otherwise (Numerical Recipes 6.2)."""
    a, x = np.broadcast_arrays(np.asarray(a, np.float64), np.asarray(x, np.float64))
    x = np.maximum(x, 1e-300)
    log_front = a * np.log(x) - x - lgamma_array(a)
    # series: e^-x x^a / Gamma(a + 1) sum_n x^n / ((a + 1) ... (a + n))
    term = 1.0 / a
    total = term.copy()
    ap = a.copy()
    for _ in range(iters):
        ap = ap + 1
        term = term * x / ap
        total = total + term
    series = total * np.exp(log_front)
    # continued fraction for Q
    tiny = 1e-300
    b = x + 1 - a
    c = np.full_like(x, 1 / tiny)
    d = 1 / np.where(b == 0, tiny, b)
    h = d.copy()
    for i in range(1, iters):
        an = -i * (i - a)
        b = b + 2
        d = an * d + b
        d = np.where(np.abs(d) < tiny, tiny, d)
        c = b + an / c
        c = np.where(np.abs(c) < tiny, tiny, c)
        d = 1 / d
        h = h * d * c
    cf = 1 - np.exp(log_front) * h
    return np.where(x < a + 1, series, cf)


def standard_gamma_grad(alpha, z):
    """dz/dalpha of a Gamma(alpha, 1) sample z held at its CDF value (implicit
    reparameterization, Figurnov et al. 2018): -(dP(alpha, z)/dalpha) / p(z; alpha), the
    alpha-derivative by central differences of P."""
    alpha, z = np.asarray(alpha, np.float64), np.asarray(z, np.float64)
    h = 1e-5 * np.maximum(alpha, 1.0)
    dP = (_gamma_p(alpha + h, z) - _gamma_p(alpha - h, z)) / (2 * h)
    logpdf = (alpha - 1) * np.log(np.maximum(z, 1e-300)) - z - lgamma_array(alpha)
    return -dP / np.exp(logpdf)


class StandardGamma(Op):
    """z ~ Gamma(alpha, 1), drawn from chainrule's global generator;  dalpha = g dz/dalpha
    from the implicit reparameterization (see standard_gamma_grad)."""

    def forward(self, alpha):
        from ..random import _rng

        z = _rng().standard_gamma(alpha).astype(alpha.dtype)
        z = np.maximum(z, np.finfo(alpha.dtype).tiny)
        self.save(alpha, z)
        return z

    def backward(self, g):
        alpha, z = self.saved
        return (g * standard_gamma_grad(alpha, z).astype(alpha.dtype),)
