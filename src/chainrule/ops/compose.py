"""Compositions: PyTorch conveniences written with the other ops (their gradients come from
those ops): tile, narrow, select, lerp, sort, topk, repeat_interleave."""

from __future__ import annotations

import builtins

from ..tensor import Tensor
from ._args import _dim1, _t, _ValuesIndices
from ._methods import tensor_method
from .arithmetic import add, mul, sub
from .index import gather, getitem, index_select
from .layout import repeat
from .nograd import _stable_order
from .shape import reshape


@tensor_method()
def tile(x, dims):
    """torch.tile: repeat, with fewer counts than dims padded by ones on the left."""
    x = _t(x, "tile")
    dims = tuple(dims)
    return repeat(x, (1,) * (x.ndim - len(dims)) + dims)


@tensor_method()
def narrow(x, dim, start, length):
    x = _t(x, "narrow")
    d = _dim1(x, dim, "narrow")
    n = x._data.shape[d]
    start = start % n if -n <= start < 0 else start
    if not (0 <= start and length >= 0 and start + length <= n):
        raise ValueError(f"narrow: start {start} and length {length} do not fit dim {d} of "
                         f"size {n}")
    return getitem(x, (slice(None),) * d + (slice(start, start + length),))


@tensor_method()
def select(x, dim, index):
    x = _t(x, "select")
    d = _dim1(x, dim, "select")
    return getitem(x, (slice(None),) * d + (builtins.int(index),))


@tensor_method()
def lerp(a, b, weight):
    """a + weight (b - a)."""
    return add(a, mul(weight, sub(b, a)))


@tensor_method()
def sort(x, dim=-1, descending=False, stable=True):
    """(values, indices) sorted along dim (stable; descending keeps the first of ties first)."""
    x = _t(x, "sort")
    d = _dim1(x, dim, "sort")
    a, xp = x._data, x.xp
    idx = _stable_order(xp, a, d, descending) if x.ndim else xp.asarray(0)
    return _ValuesIndices((gather(x, d, idx) if x.ndim else x, Tensor._wrap(idx)))


@tensor_method()
def topk(x, k, dim=-1, largest=True, sorted=True):
    """(values, indices) of the k largest (or smallest) along dim, largest first."""
    x = _t(x, "topk")
    d = _dim1(x, dim, "topk")
    n = x._data.shape[d] if x.ndim else 1
    if not 0 <= k <= n:
        raise ValueError(f"topk: k={k} is out of range for dim {d} of size {n}")
    _, idx = sort(x, d, descending=largest)
    idx = Tensor._wrap(idx._data.take(range(k), axis=d)) if x.ndim else idx
    return _ValuesIndices((gather(x, d, idx) if x.ndim else x, idx))


@tensor_method()
def repeat_interleave(x, repeats, dim=None):
    """Each element repeated ``repeats`` times along dim (the flattened tensor if dim is None)."""
    x = _t(x, "repeat_interleave")
    if dim is None:
        x, dim = reshape(x, (-1,)), 0
    d = _dim1(x, dim, "repeat_interleave")
    reps = repeats._data if isinstance(repeats, Tensor) else repeats
    xp = x.xp
    idx = xp.repeat(xp.arange(x._data.shape[d]), reps)
    return index_select(x, d, idx)


__all__ = ["tile", "narrow", "select", "lerp", "sort", "topk", "repeat_interleave"]
