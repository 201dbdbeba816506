"""The Tensor namespace: the array-module functions that backward rules call (``self.xp.*``),
implemented with differentiable ops. With ``create_graph=True`` the engine hands a rule this
module instead of NumPy, so the rule itself is recorded and can be differentiated again."""

from __future__ import annotations

import numpy as np

from .. import ops as F
from ..autograd import Op
from ..tensor import Tensor
from .shape import IndexPutAdd, _scatter_index, index_add_zeros

newaxis = None
exp, log, sin, cos, tanh, sqrt, abs = F.exp, F.log, F.sin, F.cos, F.tanh, F.sqrt, F.abs
sign, maximum, minimum, einsum = F.sign, F.maximum, F.minimum, F.einsum
isfinite = F.isfinite


def _c(x):
    return x if isinstance(x, Tensor) else Tensor(np.asarray(x))


def where(c, a, b):
    a = a if isinstance(a, Tensor) else _c(a)
    return F.where(c.data if isinstance(c, Tensor) else c, a, b)


def zeros_like(x):
    return Tensor._wrap(np.zeros_like(x.data))


def ones_like(x):
    return Tensor._wrap(np.ones_like(x.data))


def zeros(shape, dtype=None):
    return Tensor._wrap(np.zeros(shape, dtype=dtype))


def asarray(x, dtype=None):
    return x if isinstance(x, Tensor) else Tensor._wrap(np.asarray(x, dtype=dtype))


def broadcast_to(x, shape):
    return F.expand(x, tuple(shape))


def transpose(x, axes):
    return F.permute(x, tuple(axes))


def swapaxes(x, a, b):
    return F.transpose(x, a, b)


def expand_dims(x, axis):
    return F.unsqueeze(x, axis)


def flip(x, axis):
    return F.flip(x, axis)


def cumsum(x, axis):
    return F.cumsum(x, axis)


def roll(x, shift, axis=None):
    return F.roll(x, shift, axis)


def tril(x, k=0):
    return F.tril(x, k)


def triu(x, k=0):
    return F.triu(x, k)


def clip(x, lo, hi):
    return F.clamp(x, lo, hi)


def concatenate(xs, axis=0):
    return F.cat(list(xs), axis)


def take(x, index, axis):
    return F.index_select(x, axis, np.asarray(index))


def index_put_add(shape, index, g):
    return IndexPutAdd.apply(g, shape=shape, index=index)


class _ScatterAddZeros(Op):
    """y = zeros(shape) with x added at ``where`` (an advanced index tuple);  dx = g[where]."""

    def forward(self, x, shape=(), where=()):
        self.where = where
        out = np.zeros(shape, dtype=x.dtype)
        np.add.at(out, where, x)
        return out

    def backward(self, g):
        return (g[self.where],)


def scatter_add_zeros(shape, where, src):
    return _ScatterAddZeros.apply(src, shape=shape, where=where)


def put_along_dim(shape, idx, g, dim):
    return scatter_add_zeros(shape, _scatter_index(np, idx, dim), F.expand(g, tuple(idx.shape)))


def pad(x, widths, constant_values=0.0):
    """np.pad's (lo, hi) per dim, as chainrule.pad's (last_lo, last_hi, prev_lo, ...)."""
    flat = []
    for lo, hi in reversed(list(widths)):
        flat += [lo, hi]
    return F.pad(x, tuple(flat), value=constant_values)


__all__ = ["index_add_zeros"]
