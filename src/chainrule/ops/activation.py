"""Activations: sigmoid, relu, leaky_relu, silu, softplus, and gelu (whose op has a module of
its own, :mod:`chainrule.ops.gelu`).

The forwards are written for speed on arrays (``out=`` buffers, maxima rather than masked
wheres); each backward is written with ``self.xp`` and operators, so that it is differentiable
again under create_graph.
"""

from __future__ import annotations

from ..autograd import Op
from ..tensor import Tensor
from ._args import _float, _t
from ._methods import tensor_method
from .gelu import gelu


class Sigmoid(Op):
    """y = 1 / (1 + exp(-x));  dx = g y (1 - y)."""

    def forward(self, x):
        xp = self.xp
        # stable on both tails: exp of a non-positive number only; y = num / (1 + e) with
        # num = 1 where x >= 0 and e elsewhere, i.e. max(e, [x >= 0]) as e <= 1 (a maximum,
        # not a masked where, which is many times slower)
        e = xp.abs(x, out=xp.empty_like(x))  # out=: a 0-d input stays an array
        xp.negative(e, out=e)
        xp.exp(e, out=e)
        y = xp.maximum(e, x >= 0, out=xp.empty_like(x))
        e += 1
        xp.divide(y, e, out=y)
        self.save(y)
        return y

    def backward(self, g):
        y = self.saved[0]
        return (g * y * (1 - y),)


class Relu(Op):
    """y = max(x, 0);  dx = g [y > 0]."""

    def forward(self, x):
        y = self.xp.maximum(x, 0)
        self.save(y)
        return y

    def backward(self, g):
        y = self.saved[0]
        if isinstance(g, Tensor) or y.shape != g.shape:
            return (g * (y > 0),)
        # the mask written as 0/1 in g's dtype, then one same-dtype multiply in place: about
        # twice as fast as g times a boolean array (a casting loop); the same values
        m = self.xp.greater(y, 0, out=self.xp.empty(g.shape, dtype=g.dtype), casting="unsafe")
        m *= g
        return (m,)


class LeakyRelu(Op):
    """y = x if x > 0 else s x;  dx = g (1 if x > 0 else s)."""

    def forward(self, x, negative_slope=0.01):
        self.slope = negative_slope
        self.save(x)
        y = self.xp.multiply(x, negative_slope, out=self.xp.empty_like(x))
        # for 0 <= s <= 1, max(x, s x) picks x above 0 and s x below; s > 1: the min
        if 0 <= negative_slope <= 1:
            return self.xp.maximum(x, y, out=y)
        if negative_slope > 1:
            return self.xp.minimum(x, y, out=y)
        return self.xp.where(x > 0, x, y)

    def backward(self, g):
        x = self.saved[0]
        s = self.slope
        # g (s + (1 - s) [x > 0]): products, not a masked where
        return (g * ((x > 0).astype(g.dtype) * (1 - s) + s),)


class Softplus(Op):
    """y = log(1 + exp(beta x)) / beta (linear above threshold);  dx = g sigmoid(beta x)."""

    def forward(self, x, beta=1.0, threshold=20.0):
        xp = self.xp
        self.beta, self.threshold = beta, threshold
        bx = beta * x
        y = xp.where(bx > threshold, x, (xp.maximum(bx, 0) + xp.log1p(xp.exp(-xp.abs(bx)))) / beta)
        self.save(x)
        return y.astype(x.dtype, copy=False)

    def backward(self, g):
        xp = self.xp
        bx = self.saved[0] * self.beta
        s = 1 / (1 + xp.exp(-bx))
        return (xp.where(bx > self.threshold, g, g * s),)


class Silu(Op):
    """y = x sigmoid(x);  dx = g s (1 + x (1 - s)), s = sigmoid(x)."""

    def forward(self, x):
        xp = self.xp
        s = 1 / (1 + xp.exp(-x))
        self.save(x)
        return x * s

    def backward(self, g):
        xp = self.xp
        x = self.saved[0]
        s = 1 / (1 + xp.exp(-x))
        return (g * s * (1 + x * (1 - s)),)


# ----------------------------------------------------------------------------- functions


@tensor_method()
def sigmoid(x):
    return Sigmoid.apply(_float(x, "sigmoid"))


@tensor_method()
def relu(x):
    return Relu.apply(_t(x, "relu"))


@tensor_method()
def leaky_relu(x, negative_slope=0.01):
    return LeakyRelu.apply(_float(x, "leaky_relu"), negative_slope=negative_slope)


tensor_method("gelu")(gelu)


@tensor_method()
def silu(x):
    return Silu.apply(_float(x, "silu"))


@tensor_method()
def softplus(x, beta=1.0, threshold=20.0):
    return Softplus.apply(_float(x, "softplus"), beta=beta, threshold=threshold)


__all__ = ["sigmoid", "relu", "leaky_relu", "gelu", "silu", "softplus"]
