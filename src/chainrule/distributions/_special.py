"""The differentiable special functions and matrix ops the distributions need: lgamma and
digamma, the Cholesky factor and the lower-triangular solve, and the standard gamma sample with
its implicit reparameterization gradient. Each is an op with its rule beside it."""

from __future__ import annotations

import numpy as np

from ..autograd import Op
from ..backend import numpy_ns


def lgamma_array(x):
    x = np.asarray(x)
    return numpy_ns.lgamma(x)


def digamma_array(x):
    """psi(x) for x > 0 in float64 (see numpy_ns.digamma_code)."""
    return numpy_ns.digamma_code(numpy_ns, np.asarray(x, dtype=np.float64))


def trigamma_array(x):
    """psi'(x) for x > 0 in float64 (see numpy_ns.trigamma_code)."""
    return numpy_ns.trigamma_code(numpy_ns, np.asarray(x, dtype=np.float64))


class Lgamma(Op):
    """y = log Gamma(x) (x > 0);  dx = g psi(x), the digamma function (an op itself, so the
    rule is differentiable)."""

    def forward(self, x):
        self.save(x)
        return self.xp.lgamma(x)

    def backward(self, g):
        (x,) = self.saved
        return (g * self.xp.digamma(x),)


class Digamma(Op):
    """y = psi(x) = d log Gamma(x) / dx (x > 0);  dx = g psi'(x), the trigamma function."""

    def forward(self, x):
        self.save(x)
        return self.xp.digamma(x)

    def backward(self, g):
        (x,) = self.saved
        return (g * self.xp.trigamma(x),)


def lgamma(x):
    return Lgamma.apply(x)


def digamma(x):
    return Digamma.apply(x)


class Cholesky(Op):
    """L = cholesky(A), A = L L^T (batched, A symmetric positive definite);
    dA = L^-T Phi(L^T dL) L^-1 symmetrized, with Phi the lower triangle with its diagonal
    halved (Murray 2016, "Differentiation of the Cholesky decomposition")."""

    def forward(self, A):
        L = self.xp.cholesky(A)
        self.save(L)
        return L

    def backward(self, g):
        (L,) = self.saved
        xp = self.xp
        P = xp.swapaxes(L, -1, -2) @ g
        P = xp.tril(P) - 0.5 * xp.eye(L.shape[-1], dtype=L.dtype) * P
        Linv = xp.inv(L)
        S = xp.swapaxes(Linv, -1, -2) @ P @ Linv
        return (0.5 * (S + xp.swapaxes(S, -1, -2)),)


class SolveTril(Op):
    """X = L^-1 B for lower-triangular L (batched, broadcast);  dB = L^-T G,
    dL = -tril(dB X^T)."""

    def forward(self, L, B):
        X = self.xp.solve(L, B)
        self.save(L, X)
        return X

    def backward(self, g):
        L, X = self.saved
        xp = self.xp
        gB = xp.solve(xp.swapaxes(L, -1, -2), g)
        gL = -xp.tril(gB @ xp.swapaxes(X, -1, -2)) if self.needs[0] else None
        return gL, gB


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
