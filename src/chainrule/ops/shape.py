"""Shapes: reshape/view, flatten/unflatten, permute/transpose/movedim, expand/broadcast_to,
squeeze/unsqueeze. Each is a view of its input where NumPy gives one."""

from __future__ import annotations

from ..autograd import Op
from ._args import DimError, _dim1, _dims, _shape_arg, _t
from ._methods import tensor_method


class Reshape(Op):
    """y = x reshaped;  dx = g reshaped back."""

    def forward(self, x, shape=()):
        self.shape = x.shape
        try:
            return x.reshape(shape)
        except ValueError:
            raise ValueError(
                f"reshape: cannot view a tensor of shape {tuple(x.shape)} ({x.size} elements) as "
                f"{tuple(shape)}"
            ) from None

    def backward(self, g):
        return (g.reshape(self.shape),)


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
            raise ValueError(
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


@tensor_method()
def view(x, *shape):
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


@tensor_method()
def movedim(x, source, destination):
    x = _t(x, "movedim")
    src, dst = _dim1(x, source, "movedim"), _dim1(x, destination, "movedim")
    order = [d for d in range(x.ndim) if d != src]
    order.insert(dst, src)
    return permute(x, order)


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
           "swapdims", "t", "movedim", "expand", "broadcast_to", "expand_as", "squeeze",
           "unsqueeze"]
