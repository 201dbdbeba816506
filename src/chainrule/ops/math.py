"""Math functions: exp, expm1, log, log1p, log2, log10, sqrt, rsqrt, abs, sin, cos, tanh.

Integer and bool inputs give float32, as in PyTorch (``_float``); each rule is written with
``self.xp`` so that it is differentiable again under create_graph.
"""

from __future__ import annotations

import math

from ..autograd import Op
from ._args import _float, _t
from ._methods import tensor_method

_LN2 = float(math.log(2.0))
_LN10 = float(math.log(10.0))


class Exp(Op):
    """y = exp(x);  dx = g * y."""

    def forward(self, x):
        y = self.xp.exp(x)
        self.save(y)
        return y

    def backward(self, g):
        return (g * self.saved[0],)


class Expm1(Op):
    """y = exp(x) - 1;  dx = g * (y + 1)."""

    def forward(self, x):
        y = self.xp.expm1(x)
        self.save(y)
        return y

    def backward(self, g):
        return (g * (self.saved[0] + 1),)


class Log(Op):
    """y = log(x);  dx = g / x."""

    def forward(self, x):
        self.save(x)
        return self.xp.log(x)

    def backward(self, g):
        return (g / self.saved[0],)


class Log1p(Op):
    """y = log(1 + x);  dx = g / (1 + x)."""

    def forward(self, x):
        self.save(x)
        return self.xp.log1p(x)

    def backward(self, g):
        return (g / (1 + self.saved[0]),)


class Sqrt(Op):
    """y = sqrt(x);  dx = g / (2 y)."""

    def forward(self, x):
        y = self.xp.sqrt(x)
        self.save(y)
        return y

    def backward(self, g):
        return (g / (2 * self.saved[0]),)


class Rsqrt(Op):
    """y = 1 / sqrt(x);  dx = -g y**3 / 2."""

    def forward(self, x):
        y = 1 / self.xp.sqrt(x)
        self.save(y)
        return y

    def backward(self, g):
        y = self.saved[0]
        return (-0.5 * g * y * y * y,)


class Abs(Op):
    """y = |x|;  dx = g * sign(x) (0 at x = 0, as PyTorch)."""

    def forward(self, x):
        self.save(x)
        return self.xp.abs(x)

    def backward(self, g):
        return (g * self.xp.sign(self.saved[0]),)


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


class Tanh(Op):
    """y = tanh(x);  dx = g (1 - y**2) (from the saved output, not x)."""

    def forward(self, x):
        y = self.xp.tanh(x)
        self.save(y)
        return y

    def backward(self, g):
        y = self.saved[0]
        return (g * (1 - y * y),)


# ----------------------------------------------------------------------------- functions


@tensor_method()
def exp(x):
    return Exp.apply(_float(x, "exp"))


@tensor_method()
def expm1(x):
    return Expm1.apply(_float(x, "expm1"))


@tensor_method()
def log(x):
    return Log.apply(_float(x, "log"))


@tensor_method()
def log1p(x):
    return Log1p.apply(_float(x, "log1p"))


@tensor_method()
def log2(x):
    return log(x) / _LN2


@tensor_method()
def log10(x):
    return log(x) / _LN10


@tensor_method()
def sqrt(x):
    return Sqrt.apply(_float(x, "sqrt"))


@tensor_method()
def rsqrt(x):
    return Rsqrt.apply(_float(x, "rsqrt"))


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
    return Tanh.apply(_float(x, "tanh"))


@tensor_method("exp_")
def _exp_inplace(self):
    """x.exp_(): exp written into x's own memory."""
    return self._inplace(self.xp.exp(self._data), "exp_")

__all__ = ["exp", "expm1", "log", "log1p", "log2", "log10", "sqrt", "rsqrt", "abs", "absolute",
           "sin", "cos", "tanh"]
