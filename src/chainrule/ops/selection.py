"""Elementwise choice: maximum, minimum, clamp (and clamp_min, clamp_max) and where.

The gradient goes to the operand chosen: split evenly at ties of maximum and minimum (to both
operands where a NaN is compared), and passed to x at a clamp bound, as in PyTorch.
"""

from __future__ import annotations

from ..autograd import Op
from ..dtypes import bool_
from ..tensor import ShapeError, Tensor
from ._args import _array, _binary, _promote, _shape, _t
from ._methods import tensor_method


class Clamp(Op):
    """y = min(max(x, lo), hi);  dx = g where lo <= x <= hi (PyTorch passes the bound's gradient
    at ties to x)."""

    def forward(self, x, lo=None, hi=None):
        self.save(x)
        self.lo, self.hi = lo, hi
        return self.xp.clip(x, lo, hi)

    def backward(self, g):
        x = self.saved[0]
        mask = True
        if self.lo is not None:
            mask = x >= self.lo
        if self.hi is not None:
            mask = (x <= self.hi) * mask
        return (g * mask,)


def _choice_weights(smaller, larger, tie, dtype):
    """The gradient's share of each operand of max (or min): 1 to the chosen, 0 to the other,
    1/2 each at a tie, and 1 to both where a NaN makes every comparison false (PyTorch's
    ``where(a == b, g / 2, g).masked_fill_(a < b, 0)``)."""
    half = tie.astype(dtype) * 0.5
    return 1 - smaller.astype(dtype) - half, 1 - larger.astype(dtype) - half


class Maximum(Op):
    """y = max(a, b);  the gradient goes to the larger, split evenly at ties (as PyTorch), and
    to both where either is NaN."""

    def forward(self, a, b):
        self.save(a, b)
        return self.xp.maximum(a, b)

    def backward(self, g):
        a, b = self.saved
        wa, wb = _choice_weights(a < b, a > b, a == b, g.dtype)
        return (g * wa if self.needs[0] else None), (g * wb if self.needs[1] else None)


class Minimum(Op):
    """y = min(a, b);  the gradient goes to the smaller, split evenly at ties, and to both
    where either is NaN."""

    def forward(self, a, b):
        self.save(a, b)
        return self.xp.minimum(a, b)

    def backward(self, g):
        a, b = self.saved
        wa, wb = _choice_weights(a > b, a < b, a == b, g.dtype)
        return (g * wa if self.needs[0] else None), (g * wb if self.needs[1] else None)


class Where(Op):
    """y = where(c, a, b);  da = g [c], db = g [not c]."""

    def forward(self, c, a, b):
        self.save(c)
        return self.xp.where(c, a, b)

    def backward(self, g):
        c = self.saved[0]
        xp = self.xp
        zero = xp.zeros_like(g)
        return (None, xp.where(c, g, zero) if self.needs[1] else None,
                xp.where(c, zero, g) if self.needs[2] else None)


# ----------------------------------------------------------------------------- functions


@tensor_method()
def maximum(a, b):
    return _binary(Maximum, a, b, "maximum")


@tensor_method()
def minimum(a, b):
    return _binary(Minimum, a, b, "minimum")


@tensor_method("clamp", "clip")
def clamp(x, min=None, max=None):
    x = _t(x, "clamp")
    if isinstance(min, Tensor) or isinstance(max, Tensor):
        if min is not None:
            x = maximum(x, min)
        if max is not None:
            x = minimum(x, max)
        return x
    if min is None and max is None:
        raise ValueError("clamp: at least one of min and max must be given")
    return Clamp.apply(x, lo=min, hi=max)


clip = clamp


@tensor_method()
def clamp_min(x, min):
    return clamp(x, min=min)


@tensor_method()
def clamp_max(x, max):
    return clamp(x, max=max)


def where(condition, a, b):
    c = _array(condition)
    if c.dtype != bool_:
        raise TypeError(f"where: condition must be a bool tensor, got dtype {c.dtype}")
    a, b = _promote(a, b, "where")
    try:
        return Where.apply(c, a, b)
    except ValueError:
        raise ShapeError(
            f"where: condition {tuple(c.shape)}, input {_shape(a)} and other {_shape(b)} cannot "
            "be broadcast together (each dim must match, or be 1, counting from the right)"
        ) from None


@tensor_method("where")
def _where_method(self, condition, other):
    """x.where(condition, other): x where condition holds, else other."""
    return where(condition, self, other)


__all__ = ["maximum", "minimum", "clamp", "clip", "clamp_min", "clamp_max", "where"]
