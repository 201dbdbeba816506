"""Special functions and matrix ops as differentiable ops: lgamma, digamma (psi), the
Cholesky factor and the lower-triangular solve (the distributions' building blocks). Each
calls its array namespace (``xp.lgamma``, ``xp.cholesky``, ...), so it runs on any device, and
each rule is written with the namespace, so it is differentiable again."""

from __future__ import annotations

from ..autograd import Op


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


class Solve(Op):
    """X = a^-1 b (batched);  db = a^-T g, da = -db X^T."""

    def forward(self, a, b):
        X = self.xp.solve(a, b)
        self.save(a, X)
        return X

    def backward(self, g):
        a, X = self.saved
        xp = self.xp
        gb = xp.solve(xp.swapaxes(a, -1, -2), g)
        ga = -(gb @ xp.swapaxes(X, -1, -2)) if self.needs[0] else None
        return ga, gb
