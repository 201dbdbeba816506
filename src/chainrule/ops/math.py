"""Math functions: exp, expm1, log, log1p, log2, log10, sqrt, rsqrt, abs, sin, cos, tanh.

exp, expm1, log, log1p, sqrt, rsqrt and tanh are rows of the elementwise table
(:mod:`chainrule.ops.pointwise`); abs, sin and cos are written here.

Integer and bool inputs give float32, as in PyTorch (``_float``); each rule is written with
``self.xp`` so that it is differentiable again under create_graph.
"""

from __future__ import annotations

import math

from ..autograd import Op
from ._args import _float, _t
from ._methods import tensor_method
from .pointwise import pointwise

_LN2 = float(math.log(2.0))
_LN10 = float(math.log(10.0))


class Abs(Op):
    """y = |x|;  dx = g * sign(x) (0 at x = 0 and at NaN, as PyTorch)."""

    def forward(self, x):
        self.save(x)
        return self.xp.abs(x)

    def backward(self, g):
        x = self.saved[0]
        xp = self.xp
        return (xp.where(x > 0, g, xp.where(x < 0, -g, 0.0)),)


class Sin(Op):
    """y = sin(x);  dx = g cos(x)."""

    def forward(self, x):
        self.save(x)
        return self.xp.sin(x)

    def backward(self, g):
        return (g * self.xp.cos(self.saved[0]),)


class Cos(Op):
    """y = cos(x);  dx = -g sin(x)."""

    def forward(self, x):
        self.save(x)
        return self.xp.cos(x)

    def backward(self, g):
        return (-g * self.xp.sin(self.saved[0]),)



# ----------------------------------------------------------------------------- functions


@tensor_method()
def exp(x):
    return pointwise("exp", x)


@tensor_method()
def expm1(x):
    return pointwise("expm1", x)


@tensor_method()
def log(x):
    return pointwise("log", x)


@tensor_method()
def log1p(x):
    return pointwise("log1p", x)


@tensor_method()
def log2(x):
    return log(x) / _LN2


@tensor_method()
def log10(x):
    return log(x) / _LN10


@tensor_method()
def sqrt(x):
    return pointwise("sqrt", x)


@tensor_method()
def rsqrt(x):
    return pointwise("rsqrt", x)


@tensor_method()
def abs(x):
    return Abs.apply(_t(x, "abs"))


absolute = abs


@tensor_method()
def sin(x):
    return Sin.apply(_float(x, "sin"))


@tensor_method()
def cos(x):
    return Cos.apply(_float(x, "cos"))


@tensor_method()
def tanh(x):
    return pointwise("tanh", x)


@tensor_method("exp_")
def _exp_inplace(self):
    """x.exp_(): exp written into x's own memory."""
    return self._inplace(self.xp.exp(self._data), "exp_")

__all__ = ["exp", "expm1", "log", "log1p", "log2", "log10", "sqrt", "rsqrt", "abs", "absolute",
           "sin", "cos", "tanh"]
