"""Layout: pad (constant, reflect, replicate, circular), tril/triu, flip, roll, and repeat
(torch.repeat: whole copies of the tensor along each dim)."""

from __future__ import annotations

import builtins

from ..autograd import Op
from ..tensor import Tensor
from ._args import DimError, _dim1, _dims, _shape_arg, _t
from ._methods import tensor_method
from .index import index_select
from .shape import flatten, reshape


class Pad(Op):
    """y = x padded with a constant (a negative pad crops, as in PyTorch);  dx = g cropped back
    to x's place (and zero-padded where x was cropped)."""

    def forward(self, x, pad=(), value=0.0):
        # pad is PyTorch's: (last_lo, last_hi, prev_lo, prev_hi, ...)
        nd = x.ndim
        lohi = [(0, 0)] * nd
        for i in range(len(pad) // 2):
            lohi[nd - 1 - i] = (pad[2 * i], pad[2 * i + 1])
        self.cut = [(max(-lo, 0), max(-hi, 0)) for lo, hi in lohi]
        if any(lo or hi for lo, hi in self.cut):
            x = x[tuple(slice(lo, n - hi) for (lo, hi), n in zip(self.cut, x.shape))]
        else:
            self.cut = None
        widths = [(max(lo, 0), max(hi, 0)) for lo, hi in lohi]
        self.crop = tuple(slice(lo, lo + n) for (lo, _), n in zip(widths, x.shape))
        return self.xp.pad(x, widths, constant_values=value)

    def backward(self, g):
        g = g[self.crop]
        return (self.xp.pad(g, self.cut) if self.cut else g,)


class Flip(Op):
    """y = x reversed along dims;  dx = g reversed back."""

    def forward(self, x, dims=()):
        self.dims = dims
        return self.xp.flip(x, axis=dims)

    def backward(self, g):
        return (self.xp.flip(g, axis=self.dims),)


class Roll(Op):
    """y = roll(x, shifts, dims);  dx = roll(g, -shifts, dims)."""

    def forward(self, x, shifts=0, dims=None):
        self.shifts, self.dims = shifts, dims
        return self.xp.roll(x, shifts, axis=dims)

    def backward(self, g):
        neg = tuple(-s for s in self.shifts) if isinstance(self.shifts, tuple) else -self.shifts
        return (self.xp.roll(g, neg, axis=self.dims),)


class Tile(Op):
    """y = x repeated (torch.repeat) by reps;  dx = g summed over the copies."""

    def forward(self, x, reps=()):
        self.xshape = (1,) * (len(reps) - x.ndim) + x.shape
        self.reps = reps
        self.orig = x.shape
        return self.xp.tile(x, reps)

    def backward(self, g):
        # (r0, n0, r1, n1, ...) then sum the r axes
        split = []
        for r, n in zip(self.reps, self.xshape):
            split += [r, n]
        g = g.reshape(tuple(split)).sum(axis=tuple(range(0, 2 * len(self.reps), 2)))
        return (g.reshape(self.orig),)


class TriMask(Op):
    """y = tril(x, k) or triu(x, k);  dx = g masked the same way."""

    def forward(self, x, k=0, upper=False):
        self.k, self.upper = k, upper
        return (self.xp.triu if upper else self.xp.tril)(x, k)

    def backward(self, g):
        return ((self.xp.triu if self.upper else self.xp.tril)(g, self.k),)


# ----------------------------------------------------------------------------- functions


def _edge_index(n, lo, hi, mode):
    """Source positions, in a dim of size n, of the n + lo + hi outputs of a reflect,
    replicate or circular pad (lo, hi >= 0)."""
    out = []
    for j in range(-lo, n + hi):
        if mode == "reflect":  # mirror about the edge elements, which are not repeated
            j = -j if j < 0 else (2 * (n - 1) - j if j >= n else j)
        elif mode == "replicate":
            j = builtins.min(builtins.max(j, 0), n - 1)
        else:  # circular
            j %= n
        out.append(j)
    return out


def _pad_edges(x, pad, mode):
    """Pad the last len(pad)//2 dims by reflection, replication or wrapping around, as index
    selections (so the gradient sums each output back into the element it copies). Negative
    pads crop first, as in PyTorch."""
    k = len(pad) // 2
    if k not in (1, 2, 3) or x.ndim not in (k + 1, k + 2):
        raise NotImplementedError(
            f"pad: mode {mode!r} with a pad of {len(pad)} values is supported for inputs of "
            f"{k + 1} or {k + 2} dims (padding the last {k}), got shape {tuple(x.shape)}; only "
            "mode 'constant' pads any dims"
        )
    crop = tuple(builtins.min(p, 0) for p in pad)
    if any(crop):
        x = Pad.apply(x, pad=crop, value=0.0)
    for i in range(k):
        d, lo, hi = x.ndim - 1 - i, builtins.max(pad[2 * i], 0), builtins.max(pad[2 * i + 1], 0)
        n = x._data.shape[d]
        if not (lo or hi):
            continue
        limit = n - 1 if mode == "reflect" else n
        if lo > limit or hi > limit or n == 0:
            raise ValueError(
                f"pad: mode {mode!r} pads dim {d} of size {n} by ({lo}, {hi}); each side must "
                f"be at most {limit} (tensor of shape {tuple(x.shape)})"
            )
        idx = x.xp.asarray(_edge_index(n, lo, hi, mode), dtype="int64")
        x = index_select(x, d, Tensor._wrap(idx))
    return x


def pad(x, pad, mode="constant", value=None):
    """PyTorch's F.pad: ``pad`` is (last_lo, last_hi, prev_lo, prev_hi, ...); mode 'constant'
    (fill ``value``, 0 by default), 'reflect', 'replicate' or 'circular'."""
    if mode not in ("constant", "reflect", "replicate", "circular"):
        raise ValueError(f"pad: mode must be 'constant', 'reflect', 'replicate' or 'circular', "
                         f"got {mode!r}")
    x = _t(x, "pad")
    pad = tuple(builtins.int(p) for p in pad)
    if mode != "constant":
        if value:
            raise ValueError(f"pad: mode {mode!r} takes no fill value, got value={value}")
        return _pad_edges(x, pad, mode)
    value = 0.0 if value is None else value
    if len(pad) % 2 or len(pad) // 2 > x.ndim:
        raise ValueError(
            f"pad: pad {pad} must have an even length of at most 2*{x.ndim} (a (before, after) "
            f"pair per dim, last dim first) for a tensor of shape {tuple(x.shape)}"
        )
    for i in range(len(pad) // 2):
        n = x._data.shape[x.ndim - 1 - i]
        if n + pad[2 * i] + pad[2 * i + 1] < 0 or -pad[2 * i] > n or -pad[2 * i + 1] > n:
            raise ValueError(f"pad: pad {pad} crops more than the {n} elements of dim "
                             f"{x.ndim - 1 - i} (tensor of shape {tuple(x.shape)})")
    return Pad.apply(x, pad=pad, value=value)


def _matrix(x, op):
    x = _t(x, op)
    if x.ndim < 2:
        raise ValueError(f"{op}: needs a tensor of at least 2 dims, got shape {tuple(x.shape)}")
    return x


@tensor_method()
def tril(x, diagonal=0):
    return TriMask.apply(_matrix(x, "tril"), k=diagonal, upper=False)


@tensor_method()
def triu(x, diagonal=0):
    return TriMask.apply(_matrix(x, "triu"), k=diagonal, upper=True)


@tensor_method()
def flip(x, dims):
    x = _t(x, "flip")
    return Flip.apply(x, dims=_dims(x, dims, "flip"))


@tensor_method()
def roll(x, shifts, dims=None):
    x = _t(x, "roll")
    if x.ndim == 0 and dims is not None:
        raise DimError(f"roll: dims {dims} given for a 0-d tensor; it has no dims to roll")
    if dims is None:
        return reshape(Roll.apply(flatten(x), shifts=shifts, dims=0), x._data.shape)
    d = _dims(x, dims, "roll") if isinstance(dims, builtins.int) else tuple(
        _dim1(x, di, "roll") for di in dims)
    if isinstance(dims, builtins.int):
        d = d[0]
    return Roll.apply(x, shifts=tuple(shifts) if isinstance(shifts, list) else shifts, dims=d)


@tensor_method()
def repeat(x, *sizes):
    x = _t(x, "repeat")
    sizes = _shape_arg(sizes)
    if len(sizes) < x.ndim:
        raise ValueError(
            f"repeat: {len(sizes)} repeat counts for a tensor of {x.ndim} dims; give at least "
            f"{x.ndim}"
        )
    return Tile.apply(x, reps=sizes)


__all__ = ["pad", "tril", "triu", "flip", "roll", "repeat"]
