"""Arithmetic: add, sub, mul, div, neg, pow (the Tensor operators ``+ - * / **`` are these
functions), square, reciprocal, floor_divide and remainder.

Each rule is the vector-Jacobian product written with ``self.xp`` and operators, so it runs on
arrays (first order) and on Tensors (create_graph) alike. Gradients may keep the broadcast shape;
the engine sums them back.
"""

from __future__ import annotations

import builtins
import math

from ..autograd import Op
from ..backend.elementwise import powi_exponent
from ..dtypes import float32
from ..tensor import Tensor
from ._args import _binary, _broadcast_error, _promote, _t
from ._methods import tensor_method
from .nograd import _nograd
from .pointwise import pointwise


class Add(Op):
    """y = a + b;  da = g, db = g."""

    def forward(self, a, b):
        return a + b

    def backward(self, g):
        return g, g


class Sub(Op):
    """y = a - b;  da = g, db = -g."""

    def forward(self, a, b):
        return a - b

    def backward(self, g):
        return g, (-g if self.needs[1] else None)


class Mul(Op):
    """y = a * b;  da = g * b, db = g * a."""

    def forward(self, a, b):
        self.save(a, b)
        return a * b

    def backward(self, g):
        a, b = self.saved
        return (g * b if self.needs[0] else None), (g * a if self.needs[1] else None)


class Div(Op):
    """y = a / b;  da = g / b, db = -g * a / b**2 = -g * y / b."""

    def forward(self, a, b):
        y = a / b
        self.save(a, b)
        return y

    def backward(self, g):
        a, b = self.saved
        ga = g / b
        return (ga if self.needs[0] else None), (-ga * a / b if self.needs[1] else None)


class Neg(Op):
    """y = -x;  dx = -g."""

    def forward(self, x):
        return -x

    def backward(self, g):
        return (-g,)


class Pow(Op):
    """y = a ** b;  da = g * b * a**(b-1), db = g * y * log(a) (a > 0 where b needs a grad)."""

    def forward(self, a, b):
        y = a**b
        self.save(a, b, y)
        return y

    def backward(self, g):
        a, b, y = self.saved
        xp = self.xp
        ga = gb = None
        if self.needs[0]:
            # d/da a**0 is 0 everywhere, also at a = 0 (where b * a**(b-1) is 0 * inf)
            if isinstance(b, (int, float)):
                ga = xp.zeros_like(g * a) if b == 0 else g * b * a ** (b - 1)
            else:
                ga = xp.where(b == 0, 0, g * b * a ** (b - 1))
        if self.needs[1]:
            if type(a) in (int, float):  # a Python base stays a weak scalar (keeps g's dtype)
                gb = g * y * (math.log(a) if a > 0 else 0.0)
            else:
                gb = g * y * xp.log(xp.where(a > 0, a, 1))
        return ga, gb


# ----------------------------------------------------------------------------- functions
# add, sub, mul, div: a fast path for the common case (a tensor with a tensor of the same
# dtype, or with a Python float), then the general one; Tensor's operators are these functions.


@tensor_method()
def add(a, b, alpha=1):
    if type(a) is Tensor and alpha == 1:
        if type(b) is Tensor and a._data.dtype is b._data.dtype:
            try:
                return Add._apply2(a, b)
            except ValueError as e:
                _broadcast_error(e, a, b, "add")
        elif type(b) is builtins.float and a._data.dtype.kind == "f":
            return Add._apply2(a, b)
    return _binary(Add, a, b if alpha == 1 else mul(b, alpha), "add")


@tensor_method("sub", "subtract")
def sub(a, b, alpha=1):
    if type(a) is Tensor and alpha == 1:
        if type(b) is Tensor and a._data.dtype is b._data.dtype:
            try:
                return Sub._apply2(a, b)
            except ValueError as e:
                _broadcast_error(e, a, b, "sub")
        elif type(b) is builtins.float and a._data.dtype.kind == "f":
            return Sub._apply2(a, b)
    return _binary(Sub, a, b if alpha == 1 else mul(b, alpha), "sub")


subtract = sub


@tensor_method("mul", "multiply")
def mul(a, b):
    if type(a) is Tensor:
        if type(b) is Tensor and a._data.dtype is b._data.dtype:
            try:
                return Mul._apply2(a, b)
            except ValueError as e:
                _broadcast_error(e, a, b, "mul")
        elif type(b) is builtins.float and a._data.dtype.kind == "f":
            return Mul._apply2(a, b)
    return _binary(Mul, a, b, "mul")


multiply = mul


@tensor_method("div", "divide")
def div(a, b, rounding_mode=None):
    if type(a) is Tensor and rounding_mode is None and a._data.dtype.kind == "f":
        if type(b) is Tensor and a._data.dtype is b._data.dtype:
            try:
                return Div._apply2(a, b)
            except ValueError as e:
                _broadcast_error(e, a, b, "div")
        elif type(b) is builtins.float:
            return Div._apply2(a, b)
    if rounding_mode == "floor":
        return floor_divide(a, b)
    if rounding_mode == "trunc":
        return _nograd(lambda xp, x, y: xp.trunc(x / y), a, b)
    if not (isinstance(a, Tensor) and a._data.dtype.kind == "f"):
        a, b = _promote(a, b, "div")
        if a._data.dtype.kind != "f" if isinstance(a, Tensor) else b._data.dtype.kind != "f":
            # true division of integers gives the default float, as in PyTorch
            a = a.type(float32) if isinstance(a, Tensor) else a
            b = b.type(float32) if isinstance(b, Tensor) else b
    return _binary(Div, a, b, "div")


divide = true_divide = div


@tensor_method()
def neg(x):
    return Neg.apply(_t(x, "neg"))


negative = neg


@tensor_method()
def pow(a, b):
    # a floating tensor to a small integral or half-integral power: the elementwise table's
    # multiplications (NumPy's general pow is an order of magnitude slower)
    if type(a) is Tensor and a._data.dtype.kind == "f" and powi_exponent(b):
        return pointwise("pow", a, b)
    return _binary(Pow, a, b, "pow")


@tensor_method()
def square(x):
    return mul(x, x)


@tensor_method()
def reciprocal(x):
    return pointwise("reciprocal", x)


@tensor_method()
def floor_divide(a, b):
    return _nograd(lambda xp, x, y: xp.floor_divide(x, y), a, b)


class Remainder(Op):
    """y = a - floor(a / b) b (the sign of b);  da = g, db = -g floor(a / b) (PyTorch's rule;
    the quotient is piecewise constant, so it is kept as a constant array)."""

    def forward(self, a, b):
        if getattr(self, "needs", (False, False))[1]:
            self.q = self.xp.floor_divide(a, b)
        return self.xp.remainder(a, b)

    def backward(self, g):
        return g, (-g * self.q if self.needs[1] else None)


class Fmod(Op):
    """y = a - trunc(a / b) b (C's fmod, the sign of a);  da = g, db = -g trunc(a / b)."""

    def forward(self, a, b):
        if getattr(self, "needs", (False, False))[1]:
            self.q = self.xp.trunc(a / b)
        return self.xp.fmod(a, b)

    def backward(self, g):
        return g, (-g * self.q if self.needs[1] else None)


def _modulo(cls, a, b, name):
    """A floating result is differentiable; integers take the plain kernel (no graph)."""
    a, b = _promote(a, b, name)
    if (a if isinstance(a, Tensor) else b)._data.dtype.kind == "f":
        return _binary(cls, a, b, name)
    if cls is Remainder:
        return _nograd(lambda xp, x, y: xp.remainder(x, y), a, b)
    return _nograd(lambda xp, x, y: xp.fmod(x, y), a, b)


@tensor_method()
def remainder(a, b):
    """Python's a % b: the result has the sign of the divisor (``remainder(-5., 3.)`` is 1)."""
    return _modulo(Remainder, a, b, "remainder")


@tensor_method()
def fmod(a, b):
    """C's remainder: the result has the sign of the dividend (``fmod(-5., 3.)`` is -2), where
    :func:`remainder` has the divisor's (1)."""
    return _modulo(Fmod, a, b, "fmod")

__all__ = ["add", "sub", "subtract", "mul", "multiply", "div", "divide", "true_divide", "neg",
           "negative", "pow", "square", "reciprocal", "floor_divide", "remainder", "fmod"]
