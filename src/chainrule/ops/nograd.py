"""Ops without a gradient: comparisons and logical ops (bool results), rounding and sign,
isnan/isinf/isfinite, argmax/argmin/argsort, any/all, and the whole-tensor tests allclose and
equal. All run through one op, :class:`NoGradElementwise`, which records nothing."""

from __future__ import annotations

from .. import backend
from ..autograd import Op
from ._args import _dim1, _dims, _operand, _t
from ._methods import tensor_method


class NoGradElementwise(Op):
    """Any op whose output carries no gradient (comparisons, sign, floor, argmax...)."""

    differentiable = False

    def forward(self, *arrays, fn):
        return fn(self.xp, *arrays)


def _nograd(fn, *xs):
    """``fn(xp, *arrays)`` on the operands' arrays, as a tensor outside the graph."""
    return NoGradElementwise.apply(*[_operand(x, "op") for x in xs], fn=fn)


# ----------------------------------------------------------------------------- rounding


@tensor_method()
def sign(x):
    return _nograd(lambda xp, a: xp.sign(a), x)


@tensor_method()
def floor(x):
    return _nograd(lambda xp, a: xp.floor(a), x)


@tensor_method()
def ceil(x):
    return _nograd(lambda xp, a: xp.ceil(a), x)


@tensor_method()
def round(x, decimals=0):
    return _nograd(lambda xp, a: xp.round(a, decimals), x)


@tensor_method()
def trunc(x):
    return _nograd(lambda xp, a: xp.trunc(a), x)


# ----------------------------------------------------------------------------- comparisons


def _cmp(name, ufunc):
    def f(a, b):
        return _nograd(lambda xp, x, y: getattr(xp, ufunc)(x, y), a, b)

    f.__name__ = name
    f.__doc__ = f"Elementwise {ufunc}; a bool tensor, no gradient."
    return f


lt = less = tensor_method()(_cmp("lt", "less"))
le = less_equal = tensor_method()(_cmp("le", "less_equal"))
gt = greater = tensor_method()(_cmp("gt", "greater"))
ge = greater_equal = tensor_method()(_cmp("ge", "greater_equal"))
eq = tensor_method()(_cmp("eq", "equal"))
ne = not_equal = tensor_method()(_cmp("ne", "not_equal"))
logical_and = tensor_method()(_cmp("logical_and", "logical_and"))
logical_or = tensor_method()(_cmp("logical_or", "logical_or"))
logical_xor = _cmp("logical_xor", "logical_xor")


@tensor_method()
def logical_not(x):
    return _nograd(lambda xp, a: xp.logical_not(a), x)


@tensor_method()
def isnan(x):
    return _nograd(lambda xp, a: xp.isnan(a), x)


@tensor_method()
def isinf(x):
    return _nograd(lambda xp, a: xp.isinf(a), x)


@tensor_method()
def isfinite(x):
    return _nograd(lambda xp, a: xp.isfinite(a), x)


# ----------------------------------------------------------------------------- positions


@tensor_method()
def argmax(x, dim=None, keepdim=False):
    x = _t(x, "argmax")
    if dim is None:
        return _nograd(lambda xp, a: xp.asarray(xp.argmax(a)), x)
    d = _dim1(x, dim, "argmax")
    return _nograd(lambda xp, a: xp.argmax(a, axis=d, keepdims=keepdim), x)


@tensor_method()
def argmin(x, dim=None, keepdim=False):
    x = _t(x, "argmin")
    if dim is None:
        return _nograd(lambda xp, a: xp.asarray(xp.argmin(a)), x)
    d = _dim1(x, dim, "argmin")
    return _nograd(lambda xp, a: xp.argmin(a, axis=d, keepdims=keepdim), x)


def _stable_order(xp, a, d, descending):
    """Indices sorting ``a`` along ``d``, ties in their original order. Descending is the
    ascending order of the reversed array, reversed: no negation, so unsigned and bool inputs
    sort right, and NaN (last ascending) comes first, as in PyTorch."""
    if not descending:
        return xp.argsort(a, axis=d, kind="stable")
    idx = xp.flip(xp.argsort(xp.flip(a, axis=d), axis=d, kind="stable"), axis=d)
    return (a.shape[d] - 1) - idx


@tensor_method()
def argsort(x, dim=-1, descending=False, stable=False):
    """Indices sorting ``x`` along ``dim``; always stable (``stable=`` is PyTorch's keyword,
    and a stable order is one of the orders an unstable sort may give)."""
    x = _t(x, "argsort")
    if x.ndim == 0:
        return _nograd(lambda xp, a: xp.zeros((), dtype="int64"), x)
    d = _dim1(x, dim, "argsort")
    return _nograd(lambda xp, a: _stable_order(xp, a, d, descending), x)


# ----------------------------------------------------------------------------- whole-tensor tests


def allclose(a, b, rtol=1e-5, atol=1e-8):
    a, b = backend.to_numpy(_t(a)._data), backend.to_numpy(_t(b)._data)
    return bool(backend.numpy_ns.allclose(a, b, rtol=rtol, atol=atol))


def equal(a, b):
    a, b = _t(a), _t(b)
    return a.shape == b.shape and bool((a._data == b._data).all())


@tensor_method()
def any(x, dim=None, keepdim=False):
    x = _t(x, "any")
    ax = None if dim is None else _dims(x, dim, "any")
    return _nograd(lambda xp, a: xp.asarray(a.any(axis=ax, keepdims=keepdim)), x)


@tensor_method()
def all(x, dim=None, keepdim=False):
    x = _t(x, "all")
    ax = None if dim is None else _dims(x, dim, "all")
    return _nograd(lambda xp, a: xp.asarray(a.all(axis=ax, keepdims=keepdim)), x)


__all__ = ["sign", "floor", "ceil", "round", "trunc", "lt", "less", "le", "less_equal", "gt",
           "greater", "ge", "greater_equal", "eq", "ne", "not_equal", "logical_and",
           "logical_or", "logical_xor", "logical_not", "isnan", "isinf", "isfinite", "argmax",
           "argmin", "argsort", "allclose", "equal", "any", "all"]
