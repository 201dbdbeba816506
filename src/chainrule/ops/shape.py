"""Shapes: reshape/view, flatten/unflatten, permute/transpose/movedim, expand/broadcast_to,
squeeze/unsqueeze. Each is a view of its input where NumPy gives one."""

from __future__ import annotations

import builtins
import math

from ..autograd import Op
from ..tensor import ShapeError
from ._args import DimError, _dim1, _dims, _shape_arg, _t
from ._methods import tensor_method


class Reshape(Op):
    """y = x reshaped;  dx = g reshaped back."""

    def forward(self, x, shape=()):
        self.shape = x.shape
        try:
            return x.reshape(shape)
        except ValueError:
            raise ShapeError(
                f"reshape: cannot view a tensor of shape {tuple(x.shape)} ({x.size} elements) as "
                f"{tuple(shape)}"
            ) from None

    def backward(self, g):
        return (g.reshape(self.shape),)


class Contiguous(Op):
    """y = x laid out C-contiguously (a copy of a strided view);  dx = g."""

    def forward(self, x):
        return self.xp.ascontiguousarray(x)

    def backward(self, g):
        return (g,)


class Permute(Op):
    """y = x with dims permuted;  dx = g with the inverse permutation."""

    def forward(self, x, dims=()):
        self.dims = dims
        return self.xp.transpose(x, dims)

    def backward(self, g):
        inv = [0] * len(self.dims)
        for i, d in enumerate(self.dims):
            inv[d] = i
        return (self.xp.transpose(g, tuple(inv)),)


class Expand(Op):
    """y = x broadcast to shape (a view);  dx = g summed back (the engine's unbroadcast)."""

    def forward(self, x, shape=()):
        try:
            return self.xp.broadcast_to(x, shape)
        except ValueError:
            raise ShapeError(
                f"expand: cannot expand shape {tuple(x.shape)} to {tuple(shape)}: only size-1 "
                "dims can grow"
            ) from None

    def backward(self, g):
        return (g,)


# ----------------------------------------------------------------------------- functions


@tensor_method()
def reshape(x, *shape):
    x = _t(x, "reshape")
    shape = _shape_arg(shape)
    if shape == tuple(x._data.shape):
        return x
    return Reshape.apply(x, shape=shape)


def _view_strides_ok(shape, strides, new):
    """Whether an array of ``shape`` and element ``strides`` can be seen as ``new`` without a
    copy: each run of dims that is contiguous in memory must split into whole dims of ``new``
    (PyTorch's rule for ``view``)."""
    view_d = len(new) - 1
    base = strides[-1] if strides else 1
    tensor_n = view_n = 1
    for d in range(len(shape) - 1, -1, -1):
        tensor_n *= shape[d]
        if d == 0 or (shape[d - 1] != 1 and strides[d - 1] != tensor_n * base):
            while view_d >= 0 and (view_n < tensor_n or new[view_d] == 1):
                view_n *= new[view_d]
                view_d -= 1
            if view_n != tensor_n:
                return False
            if d > 0:
                base, tensor_n, view_n = strides[d - 1], 1, 1
    return view_d == -1


@tensor_method()
def view(x, *shape):
    """x in a new shape, sharing its memory: as PyTorch, refused (naming reshape) where the
    layout of a transposed, expanded or sliced tensor allows no such view."""
    x = _t(x, "view")
    a = x._data
    if a.flags.c_contiguous or not a.size or builtins.min(a.strides, default=0) < 0:
        return reshape(x, *shape)  # a reversed array is a copy in PyTorch: viewable there
    new = list(_shape_arg(shape))
    if new.count(-1) == 1:
        known = math.prod(n for n in new if n != -1)
        new[new.index(-1)] = a.size // known if known else 0
    if math.prod(new) == a.size and not _view_strides_ok(
            a.shape, [s // a.itemsize for s in a.strides], new):
        raise ShapeError(
            f"view: a tensor of shape {tuple(a.shape)} laid out as a transposed, expanded or "
            f"sliced view cannot be viewed as {tuple(new)} without a copy (view size is not "
            "compatible with input tensor's size and stride); use .reshape(...) instead, or "
            ".contiguous().view(...)"
        )
    return reshape(x, *shape)


@tensor_method("view_as", "reshape_as")
def _view_as(self, other):
    """x.view_as(other), x.reshape_as(other): x in other's shape."""
    return reshape(self, tuple(other.shape))


def _as_1d(x, f):
    """f applied to a 0-d tensor seen as 1-d (a dim-wise op over its only element), 0-d again."""
    return reshape(f(reshape(x, (1,))), ())


@tensor_method()
def flatten(x, start_dim=0, end_dim=-1):
    x = _t(x, "flatten")
    if x.ndim == 0:
        return reshape(x, (1,))
    s, e = start_dim % x.ndim, end_dim % x.ndim
    shp = x._data.shape
    n = 1
    for d in shp[s:e + 1]:
        n *= d
    return reshape(x, shp[:s] + (n,) + shp[e + 1:])


@tensor_method()
def unflatten(x, dim, sizes):
    d = _dim1(x, dim, "unflatten")
    return reshape(x, x._data.shape[:d] + tuple(sizes) + x._data.shape[d + 1:])


@tensor_method()
def permute(x, *dims):
    x = _t(x, "permute")
    dims = _shape_arg(dims)
    if len(dims) != x.ndim:
        raise ValueError(f"permute: {len(dims)} dims given for a tensor of {x.ndim} dims")
    dims = tuple(d % x.ndim for d in dims)
    if sorted(dims) != list(range(x.ndim)):
        raise ValueError(f"permute: {dims} is not a permutation of 0..{x.ndim - 1}")
    return Permute.apply(x, dims=dims)


@tensor_method("transpose", "swapaxes", "swapdims")
def transpose(x, dim0, dim1):
    x = _t(x, "transpose")
    if x.ndim < 2:
        return x
    d0, d1 = _dim1(x, dim0, "transpose"), _dim1(x, dim1, "transpose")
    dims = list(range(x.ndim))
    dims[d0], dims[d1] = dims[d1], dims[d0]
    return Permute.apply(x, dims=tuple(dims))


swapaxes = swapdims = transpose


@tensor_method()
def t(x):
    return transpose(x, 0, 1)


@tensor_method("movedim", "moveaxis")
def movedim(x, source, destination):
    """x with the dims ``source`` (an int or a tuple) moved to ``destination`` (the same
    count); the other dims keep their order."""
    x = _t(x, "movedim")
    many = isinstance(source, (tuple, list)) or isinstance(destination, (tuple, list))
    src = source if isinstance(source, (tuple, list)) else (source,)
    dst = destination if isinstance(destination, (tuple, list)) else (destination,)
    if len(src) != len(dst):
        raise ValueError(f"movedim: source {tuple(src) if many else source} and destination "
                         f"{tuple(dst) if many else destination} must have the same number of "
                         "dims")
    src = [_dim1(x, d, "movedim") for d in src]
    dst = [_dim1(x, d, "movedim") for d in dst]
    for name, ds in (("source", src), ("destination", dst)):
        if len(set(ds)) != len(ds):
            raise ValueError(f"movedim: repeated dim in {name} {tuple(ds)}")
    order = [None] * x.ndim
    for s, d in zip(src, dst):
        order[d] = s
    rest = iter(d for d in range(x.ndim) if d not in src)
    return permute(x, [next(rest) if o is None else o for o in order])


moveaxis = movedim


@tensor_method()
def expand(x, *shape):
    x = _t(x, "expand")
    shape = _shape_arg(shape)
    lead = len(shape) - x.ndim
    shape = tuple(x._data.shape[i - lead] if n == -1 else n for i, n in enumerate(shape))
    if shape == tuple(x._data.shape):
        return x
    return Expand.apply(x, shape=shape)


@tensor_method()
def broadcast_to(x, shape):
    return expand(x, tuple(shape))


@tensor_method()
def expand_as(x, other):
    return expand(x, tuple(other.shape))


@tensor_method()
def squeeze(x, dim=None):
    x = _t(x, "squeeze")
    shp = x._data.shape
    if dim is None:
        new = tuple(n for n in shp if n != 1)
    else:
        dims = _dims(x, dim, "squeeze")
        new = tuple(n for i, n in enumerate(shp) if not (i in dims and n == 1))
    return reshape(x, new)


@tensor_method()
def unsqueeze(x, dim):
    x = _t(x, "unsqueeze")
    nd = x.ndim + 1
    if not -nd <= dim < nd:
        raise DimError(f"unsqueeze: dim {dim} is out of range for a result of {nd} dims "
                       f"(expected {-nd}..{nd - 1})")
    d = dim % nd
    shp = x._data.shape
    return reshape(x, shp[:d] + (1,) + shp[d:])


__all__ = ["reshape", "view", "flatten", "unflatten", "permute", "transpose", "swapaxes",
           "swapdims", "t", "movedim", "moveaxis", "expand", "broadcast_to", "expand_as",
           "squeeze", "unsqueeze"]
