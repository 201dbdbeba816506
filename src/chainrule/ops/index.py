"""Indexing: ``x[index]`` (getitem), gather / take_along_dim, scatter_add, index_select and
masked_fill. Their gradients scatter-add into zeros through the array namespace
(``xp.index_put_add``, ``xp.scatter_add_zeros``), so repeated indices accumulate."""

from __future__ import annotations

import builtins

from .. import backend
from ..autograd import Op
from ..dtypes import bool_
from ..tensor import ShapeError, Tensor
from ._args import DimError, _array, _dim1, _t
from ._methods import tensor_method
from .selection import where
from .shape import _as_1d, expand, reshape


class GetItem(Op):
    """y = x[index];  dx = zeros with g added at index (repeated indices accumulate)."""

    def forward(self, x, index=None):
        self.index, self.shape, self.dtype = index, x.shape, x.dtype
        return x[index]

    def backward(self, g):
        return (self.xp.index_put_add(self.shape, self.index, g),)

    def backward_into(self, g, out):
        if self.xp.is_basic_index(self.index):
            out[self.index] += g  # a basic index selects each element at most once
        else:
            self.xp.add.at(out, self.index, g)


class IndexPutAdd(Op):
    """y = zeros(shape) with x added at index;  dx = g[index].  (The VJP of GetItem, recorded
    for higher-order gradients.)"""

    def forward(self, x, shape=(), index=None):
        self.index = index
        return self.xp.index_put_add(shape, index, x)

    def backward(self, g):
        return (g[self.index],)


class Gather(Op):
    """y[i][j][k] = x[i][index[i][j][k]][k] (dim 1);  dx = zeros with g added at the same places
    (repeats accumulate). As in PyTorch, index may be smaller than x in the other dims."""

    def forward(self, x, index, dim=0):
        self.dim, self.shape = dim, x.shape
        self.where = _scatter_index(self.xp, index, dim)
        return x[self.where]

    def backward(self, g):
        return (self.xp.scatter_add_zeros(self.shape, self.where, g), None)


def _scatter_index(xp, index, dim):
    """Full advanced index tuple addressing out[..., index, ...] along ``dim``."""
    grids = list(xp.indices(index.shape, sparse=True))
    grids[dim] = index
    return tuple(grids)


class ScatterAdd(Op):
    """y = x with src added at index along dim (y[i][index[i][j]] += src[i][j] for dim 1);
    dx = g, dsrc = g gathered at index (zero where src has more elements than index, which
    PyTorch allows)."""

    def forward(self, x, index, src, dim=0):
        self.where = _scatter_index(self.xp, index, dim)  # arrays, reused by a create_graph rule
        self.src_pad = [(0, s - n) for n, s in zip(index.shape, src.shape)]
        if builtins.any(hi for _, hi in self.src_pad):
            src = src[tuple(slice(0, n) for n in index.shape)]
        else:
            self.src_pad = None
        out = x.copy()
        self.xp.add.at(out, self.where, src)
        return out

    def backward(self, g):
        gsrc = None
        if self.needs[2]:
            gsrc = g[self.where]
            if self.src_pad:
                gsrc = self.xp.pad(gsrc, self.src_pad)
        return g, None, gsrc


class IndexSelect(Op):
    """y = x.take(index, dim);  dx = zeros with g added at index along dim."""

    def forward(self, x, index, dim=0):
        self.dim, self.index, self.shape = dim, index, x.shape
        return self.xp.take(x, index, axis=dim)

    def backward(self, g):
        idx = (slice(None),) * self.dim + (self.index,)
        return (self.xp.index_put_add(self.shape, idx, g), None)


class MaskedFill(Op):
    """y = where(mask, value, x);  dx = g where not mask."""

    def forward(self, x, mask, value=0.0):
        self.mask = mask
        return self.xp.where(mask, self.xp.asarray(value, dtype=x.dtype), x)

    def backward(self, g):
        return (self.xp.where(self.mask, self.xp.zeros_like(g), g), None)


# ----------------------------------------------------------------------------- functions


def _index_arrays(index, device):
    """Tensors inside an index become arrays (integer or bool), on the indexed tensor's
    ``device`` (an index array from the host is copied there, as PyTorch allows)."""
    if isinstance(index, tuple):
        return tuple(_index_arrays(i, device) if isinstance(i, (Tensor, list))
                     or getattr(i, "ndim", 0) else i for i in index)
    if isinstance(index, Tensor):
        index = index._data
    elif isinstance(index, list):
        index = _array(index)
    return backend.to_device(index, device) if getattr(index, "ndim", 0) else index


def getitem(x, index):
    x = _t(x, "getitem")
    index = _index_arrays(index, backend.device_of(x._data))
    try:
        return GetItem.apply(x, index=index)
    except IndexError as e:
        raise DimError(f"getitem: {e} (tensor of shape {tuple(x.shape)})") from None


def _index(index, x, d, op):
    """An integer index array for ``x`` along dim ``d``, checked for dtype and range."""
    idx = _array(index)
    if idx.dtype.kind not in "iu":
        raise TypeError(f"{op}: index must be an integer tensor, got dtype {idx.dtype}")
    n = x._data.shape[d] if x.ndim else 1
    if idx.size and (idx.min() < -n or idx.max() >= n):
        bad = idx.max() if idx.max() >= n else idx.min()
        raise DimError(f"{op}: index {bad} is out of range for dim {d} of size {n} "
                       f"(input shape {tuple(x.shape)})")
    return idx


def _index_like(idx, x, d, op, what="index"):
    if idx.ndim != x.ndim:
        raise ShapeError(
            f"{op}: {what} has {idx.ndim} dims but input has {x.ndim}; they must match"
        )
    bad = [i for i in range(x.ndim) if i != d and idx.shape[i] > x._data.shape[i]]
    if bad:
        raise ShapeError(
            f"{op}: index shape {tuple(idx.shape)} is larger than input shape "
            f"{tuple(x.shape)} in dim {bad[0]} (only dim {d} may be larger)"
        )


@tensor_method()
def gather(x, dim, index):
    x = _t(x, "gather")
    d = _dim1(x, dim, "gather")
    idx = _index(index, x, d, "gather")
    if x.ndim == 0 and idx.ndim == 0:
        return _as_1d(x, lambda v: Gather.apply(v, idx.reshape(1), dim=0))
    _index_like(idx, x, d, "gather")
    return Gather.apply(x, idx, dim=d)


@tensor_method()
def take_along_dim(x, indices, dim=None):
    """x's values at ``indices`` along ``dim``; the other dims of x and indices broadcast
    against each other (unlike gather). dim=None: the flattened x at the flattened indices."""
    x = _t(x, "take_along_dim")
    idx = _array(indices)
    if dim is None:
        return gather(reshape(x, (-1,)), 0, idx.reshape(-1))
    d = _dim1(x, dim, "take_along_dim")
    if idx.ndim != x.ndim:
        raise ShapeError(f"take_along_dim: input and indices should have the same number of "
                         f"dims, got {x.ndim} and {idx.ndim}")
    if x.ndim == 0:
        return gather(x, 0, idx)
    xs, js = list(x._data.shape), list(idx.shape)
    try:
        rest = x.xp.broadcast_shapes(tuple(xs[:d] + xs[d + 1:]), tuple(js[:d] + js[d + 1:]))
    except ValueError:
        raise ShapeError(f"take_along_dim: input of shape {tuple(xs)} and indices of shape "
                         f"{tuple(js)} do not broadcast outside dim {d}") from None
    rest = list(rest)
    xshape, ishape = tuple(rest[:d] + [xs[d]] + rest[d:]), tuple(rest[:d] + [js[d]] + rest[d:])
    if xshape != tuple(xs):
        x = expand(x, xshape)
    if ishape != tuple(js):
        idx = x.xp.broadcast_to(idx, ishape)
    return gather(x, d, idx)


@tensor_method()
def scatter_add(x, dim, index, src):
    x, src = _t(x, "scatter_add"), _t(src, "scatter_add")
    d = _dim1(x, dim, "scatter_add")
    idx = _index(index, x, d, "scatter_add")
    _index_like(idx, x, d, "scatter_add")
    if src.ndim != idx.ndim or builtins.any(s < n for s, n in zip(src.shape, idx.shape)):
        raise ValueError(
            f"scatter_add: src shape {tuple(src.shape)} must have index's {idx.ndim} dims and "
            f"be at least index shape {tuple(idx.shape)} in each"
        )
    return ScatterAdd.apply(x, idx, src, dim=d)


@tensor_method()
def index_select(x, dim, index):
    x = _t(x, "index_select")
    d = _dim1(x, dim, "index_select")
    idx = _index(index, x, d, "index_select")
    if idx.ndim > 1:
        raise ValueError(f"index_select: index must be 1-d, got shape {tuple(idx.shape)}")
    idx = idx.reshape(-1)
    if x.ndim == 0:
        return _as_1d(x, lambda v: IndexSelect.apply(v, idx.reshape(1), dim=0))
    return IndexSelect.apply(x, idx, dim=d)


@tensor_method()
def masked_fill(x, mask, value):
    x = _t(x, "masked_fill")
    m = _array(mask)
    if m.dtype != bool_:
        raise TypeError(f"masked_fill: mask must be bool, got dtype {m.dtype}")
    xp = x.xp
    if isinstance(value, Tensor):
        if value.requires_grad:  # differentiable in the fill value too, as in PyTorch
            return where(Tensor._wrap(xp.broadcast_to(m, x._data.shape)), value.type(x.dtype), x)
        value = value.item()
    try:
        ok = xp.broadcast_shapes(m.shape, x._data.shape) == x._data.shape
    except ValueError:
        ok = False
    if not ok:
        raise ShapeError(
            f"masked_fill: mask shape {tuple(m.shape)} cannot be broadcast to input shape "
            f"{tuple(x.shape)}"
        )
    return MaskedFill.apply(x, m, value=value)


__all__ = ["getitem", "gather", "take_along_dim", "scatter_add", "index_select",
           "masked_fill"]
