"""More of the op library, with PyTorch's names: atan2 (its own op), and compositions and
index-valued functions: hypot, nonzero, argwhere, count_nonzero, meshgrid, unique,
searchsorted, bucketize, nan_to_num, masked_select, var_mean, std_mean, median, mode,
scatter, scatter_reduce (prod its own op), cdist, diff, ravel, isclose, cumprod (its own
op), bernoulli, and Tensor.unfold."""

from __future__ import annotations

from ..autograd import Op
from ..tensor import Tensor
from ._args import _dim1, _t, _ValuesIndices
from ._methods import tensor_method
from .compose import narrow, select, sort
from .index import _scatter_index, gather, getitem, scatter_add
from .join import stack
from .math import sqrt
from .nograd import isinf, isnan
from .reduce import mean, norm, std, var
from .selection import where
from .shape import expand, reshape, unsqueeze

__all__ = [
    "atan2", "arctan2", "hypot", "nonzero", "argwhere", "count_nonzero", "meshgrid", "unique",
    "searchsorted", "bucketize", "nan_to_num", "masked_select", "var_mean", "std_mean",
    "median", "mode", "scatter", "scatter_reduce", "cdist", "diff", "ravel", "isclose",
    "cumprod", "bernoulli",
]


def _wrap_like(x, a):
    return Tensor._wrap(x.xp.asarray(a, dtype=x._data.dtype))


def _tensor2(a, b, op):
    if not isinstance(a, Tensor) and not isinstance(b, Tensor):
        raise TypeError(f"{op}: expected a Tensor argument")
    if not isinstance(a, Tensor):
        a = _wrap_like(b, a)
    if not isinstance(b, Tensor):
        b = _wrap_like(a, b)
    for t in (a, b):
        if t._data.dtype.kind != "f":
            raise TypeError(f"{op}: expected floating tensors, got dtype {t.dtype}")
    return a, b


class Atan2(Op):
    """z = atan2(y, x);  dy = g x / (x^2 + y^2),  dx = -g y / (x^2 + y^2)."""

    def forward(self, y, x):
        self.save(y, x)
        return self.xp.arctan2(y, x)

    def backward(self, g):
        y, x = self.saved
        r = x * x + y * y
        gy = g * x / r if self.needs[0] else None
        gx = -g * y / r if self.needs[1] else None
        return gy, gx


@tensor_method("atan2", "arctan2")
def atan2(input, other):
    """The angle of (other, input) in (-pi, pi]: atan2(y=input, x=other)."""
    y, x = _tensor2(input, other, "atan2")
    return Atan2.apply(y, x)


arctan2 = atan2


@tensor_method()
def hypot(input, other):
    """sqrt(input^2 + other^2)."""
    a, b = _tensor2(input, other, "hypot")
    return sqrt(a * a + b * b)


@tensor_method()
def nonzero(input, *, as_tuple=False):
    """The indices of the non-zero elements: int64 (n, ndim), or one index tensor per dim."""
    x = _t(input, "nonzero")
    idx = x.xp.nonzero(x._data) if x.ndim else x.xp.nonzero(x._data.reshape(1))
    if as_tuple:
        return tuple(Tensor._wrap(i.astype(x.xp.int64)) for i in idx)
    return Tensor._wrap(x.xp.stack(idx, axis=1).astype(x.xp.int64) if x.ndim
                        else x.xp.zeros((len(idx[0]), 0), dtype=x.xp.int64))


@tensor_method()
def argwhere(input):
    """nonzero(input) as an (n, ndim) tensor."""
    return nonzero(input)


@tensor_method()
def count_nonzero(input, dim=None):
    """How many elements are not zero (over ``dim``)."""
    x = _t(input, "count_nonzero")
    axis = dim if dim is None or isinstance(dim, int) else tuple(dim)
    return Tensor._wrap(x.xp.asarray(x.xp.count_nonzero(x._data, axis=axis),
                                     dtype=x.xp.int64))


def meshgrid(*tensors, indexing="ij"):
    """Coordinate grids from 1-d tensors (views, differentiable): 'ij' (matrix) or 'xy'
    (Cartesian, the first two dims swapped)."""
    if len(tensors) == 1 and isinstance(tensors[0], (list, tuple)):
        tensors = tuple(tensors[0])
    if indexing not in ("ij", "xy"):
        raise ValueError(f"meshgrid: indexing must be 'ij' or 'xy', got {indexing!r}")
    ts = [_t(t, "meshgrid") for t in tensors]
    for t in ts:
        if t.ndim > 1:
            raise ValueError(f"meshgrid: expected 0-d or 1-d tensors, got shape "
                             f"{tuple(t.shape)}")
    ts = [reshape(t, (-1,)) for t in ts]
    shape = tuple(t.shape[0] for t in ts)
    out = []
    for i, t in enumerate(ts):
        view = [1] * len(ts)
        view[i] = shape[i]
        out.append(expand(reshape(t, tuple(view)), shape))
    if indexing == "xy" and len(ts) >= 2:
        out = [o.transpose(0, 1) for o in out]
    return tuple(out)


@tensor_method()
def unique(input, sorted=True, return_inverse=False, return_counts=False, dim=None):
    """The distinct values (sorted), with the inverse indices and counts if asked; with
    ``dim``, the distinct slices along it (sorted lexicographically), the inverse giving each
    slice's place among them."""
    x = _t(input, "unique")
    xp = x.xp
    if dim is not None:
        d = _dim1(x, dim, "unique")
        vals, inv, counts = xp.unique(x._data, return_inverse=True, return_counts=True, axis=d)
        inv = inv.reshape(-1)
    else:
        vals, inv, counts = xp.unique(x._data, return_inverse=True, return_counts=True)
        inv = inv.reshape(x._data.shape)
    out = [Tensor._wrap(vals)]
    if return_inverse:
        out.append(Tensor._wrap(inv.astype(xp.int64)))
    if return_counts:
        out.append(Tensor._wrap(counts.astype(xp.int64)))
    return out[0] if len(out) == 1 else tuple(out)


def searchsorted(sorted_sequence, input, *, out_int32=False, right=False, side=None,
                 sorter=None):
    """Where ``input``'s values would go in the innermost dim of ``sorted_sequence`` to keep
    it sorted (the first such place, or the last with ``right`` / side='right')."""
    seq = _t(sorted_sequence, "searchsorted")
    xp = seq.xp
    vals = input._data if isinstance(input, Tensor) else xp.asarray(input)
    if side is not None:
        if side not in ("left", "right"):
            raise ValueError(f"searchsorted: side must be 'left' or 'right', got {side!r}")
        right = side == "right"
    s = seq._data
    if sorter is not None:
        order = sorter._data if isinstance(sorter, Tensor) else xp.asarray(sorter)
        s = xp.take_along_axis(s, order, axis=-1)
    how = "right" if right else "left"
    if s.ndim == 1:
        res = xp.searchsorted(s, vals, side=how)
    else:
        if s.shape[:-1] != vals.shape[:-1]:
            raise ValueError(f"searchsorted: sorted_sequence {tuple(s.shape)} and input "
                             f"{tuple(vals.shape)} must agree in all but the last dim")
        s2, v2 = s.reshape(-1, s.shape[-1]), vals.reshape(-1, vals.shape[-1])
        res = xp.stack([xp.searchsorted(a, b, side=how) for a, b in zip(s2, v2)]
                       ).reshape(vals.shape)
    return Tensor._wrap(xp.asarray(res, dtype=xp.int32 if out_int32 else xp.int64))


def bucketize(input, boundaries, *, out_int32=False, right=False):
    """The bucket of each value among the sorted 1-d ``boundaries`` (torch.bucketize's
    ``right`` convention: right=False gives boundaries[i-1] < x <= boundaries[i])."""
    b = _t(boundaries, "bucketize")
    if b.ndim != 1:
        raise ValueError(f"bucketize: boundaries must be 1-d, got shape {tuple(b.shape)}")
    return searchsorted(b, input, out_int32=out_int32, right=right)


@tensor_method()
def nan_to_num(input, nan=0.0, posinf=None, neginf=None):
    """NaN, +inf and -inf replaced (by 0 and the dtype's largest and lowest finite values by
    default); the gradient passes through the other elements."""
    x = _t(input, "nan_to_num")
    if x._data.dtype.kind != "f":
        return x
    fi = x.xp.finfo(x._data.dtype)
    pos = float(fi.max) if posinf is None else float(posinf)
    neg = float(fi.min) if neginf is None else float(neginf)
    xp = x.xp
    y = where(isnan(x), float(nan), x)
    big = Tensor._wrap(xp.where(x._data > 0, pos, neg).astype(x._data.dtype))
    return where(isinf(x), big, y)


@tensor_method()
def masked_select(input, mask):
    """The 1-d tensor of ``input``'s elements where ``mask`` (broadcast) is True."""
    x = _t(input, "masked_select")
    m = mask._data if isinstance(mask, Tensor) else x.xp.asarray(mask)
    if m.dtype != x.xp.bool_:
        raise TypeError(f"masked_select: mask must be a bool tensor, got dtype {m.dtype}")
    shape = x.xp.broadcast_shapes(x._data.shape, m.shape)
    if tuple(shape) != tuple(x._data.shape):
        x = expand(x, tuple(shape))
    return getitem(x, x.xp.broadcast_to(m, shape))


def var_mean(input, dim=None, *, correction=1, keepdim=False, unbiased=None):
    """(var, mean) over ``dim``."""
    if unbiased is not None:
        correction = 1 if unbiased else 0
    return (var(input, dim, correction=correction, keepdim=keepdim),
            mean(input, dim, keepdim=keepdim))


def std_mean(input, dim=None, *, correction=1, keepdim=False, unbiased=None):
    """(std, mean) over ``dim``."""
    if unbiased is not None:
        correction = 1 if unbiased else 0
    return (std(input, dim, correction=correction, keepdim=keepdim),
            mean(input, dim, keepdim=keepdim))


@tensor_method()
def median(input, dim=None, keepdim=False):
    """The lower median: of all elements (dim None), or (values, indices) along ``dim``; the
    gradient goes to the chosen element."""
    x = _t(input, "median")
    if dim is None:
        flat = reshape(x, (-1,))
        n = flat.shape[0]
        if n == 0:
            raise ValueError("median: empty input")
        v, _ = sort(flat)
        return select(v, 0, (n - 1) // 2)
    d = _dim1(x, dim, "median")
    v, i = sort(x, d)
    k = (x.shape[d] - 1) // 2
    vals, idx = select(v, d, k), select(i, d, k)
    if keepdim:
        vals, idx = unsqueeze(vals, d), unsqueeze(idx, d)
    return _ValuesIndices((vals, idx))


@tensor_method()
def mode(input, dim=-1, keepdim=False):
    """(values, indices): the most frequent value along ``dim`` (the smallest of equally
    frequent ones) and the index of its last occurrence, as PyTorch; the gradient goes to that
    element."""
    x = _t(input, "mode")
    xp = x.xp
    d = _dim1(x, dim, "mode") if x.ndim else 0
    a = x._data.reshape(1) if x.ndim == 0 else xp.moveaxis(x._data, d, -1)
    n = a.shape[-1]
    if n == 0:
        raise ValueError(f"mode: dim {dim} of input of shape {tuple(x.shape)} is empty")
    rows = a.reshape(-1, n)
    order = xp.argsort(rows, axis=-1, kind="stable")  # equal values keep their order
    s = xp.take_along_axis(rows, order, axis=-1)
    pos = xp.arange(n)
    new = xp.ones(s.shape, dtype=bool)
    new[:, 1:] = s[:, 1:] != s[:, :-1]
    start = xp.maximum.accumulate(xp.where(new, pos, 0), axis=-1)
    # the first position reaching the longest run ends the smallest value's run, and (stable
    # order) holds that value's last occurrence
    end = xp.argmax(pos - start, axis=-1)
    idx = order[xp.arange(rows.shape[0]), end].reshape(a.shape[:-1])
    if x.ndim == 0:
        return _ValuesIndices((x, Tensor._wrap(xp.asarray(0, dtype=xp.int64))))
    idx_k = xp.expand_dims(idx, d).astype(xp.int64)
    vals = gather(x, d, Tensor._wrap(idx_k))
    idx_t = Tensor._wrap(idx_k)
    if not keepdim:
        vals, idx_t = vals.squeeze(d), idx_t.squeeze(d)
    return _ValuesIndices((vals, idx_t))


def _zeros_like(x):
    return Tensor._wrap(x.xp.zeros(x._data.shape, dtype=x._data.dtype))


def _src_part(src, idx):
    """The part of src that index covers (src may be larger), or a scalar expanded."""
    if src.ndim:
        return getitem(src, tuple(slice(0, n) for n in idx.shape))
    return expand(src, idx.shape)


class ScatterProd(Op):
    """y = base with each src element multiplied into the position index names along dim
    (base = x, or 1 at those positions without ``include_self``). The derivative of y at a
    position with respect to each of its factors is the product of the others: y / m for a
    nonzero factor m when none is zero, the product of the nonzero ones for the only zero
    factor, else 0 (counted from the zeros, so a zero factor needs no division)."""

    def forward(self, x, src, dim=0, index=None, include_self=True):
        xp = self.xp
        self.dim, self.index, self.include_self = dim, index, include_self
        where_ = _scatter_index(xp, index, dim)
        hit = xp.zeros(x.shape, dtype=bool)
        hit[where_] = True
        base = x.copy() if include_self else xp.where(hit, xp.ones_like(x), x)
        nonzero = xp.where(base == 0, xp.ones_like(base), base)
        zeros = (base == 0).astype(xp.int64)
        xp.multiply.at(nonzero, where_, xp.where(src == 0, 1, src))
        xp.add.at(zeros, where_, (src == 0).astype(xp.int64))
        self.where_, self.hit, self.nonzero, self.zeros = where_, hit, nonzero, zeros
        self.save(x, src)
        return xp.where(zeros > 0, xp.zeros_like(nonzero), nonzero)

    def _others(self, m, nonzero, zeros):
        """The product of the other factors of each factor m (at its position's products)."""
        xp = self.xp
        safe = xp.where(m == 0, xp.ones_like(m), m)
        return xp.where(m == 0, xp.where(zeros == 1, nonzero, 0 * nonzero),
                        xp.where(zeros == 0, nonzero / safe, 0 * nonzero))

    def backward(self, g):
        xp = self.xp
        x, src = self.saved
        gx = gs = None
        if self.needs[0]:
            gx = g * self._others(x, self.nonzero, self.zeros)
            if not self.include_self:
                gx = xp.where(self.hit, 0 * gx, gx)
        if self.needs[1]:
            w = self.where_
            gs = xp.zeros(src.shape, dtype=g.dtype)
            part = tuple(slice(0, n) for n in self.index.shape)
            gs[part] = g[w] * self._others(src[part], self.nonzero[w], self.zeros[w])
        return gx, gs


@tensor_method()
def scatter_reduce(input, dim, index, src, reduce, *, include_self=True):
    """A copy of ``input`` with the ``src`` values reduced into the positions ``index`` names
    along ``dim``: reduce 'sum', 'prod', 'mean', 'amax' or 'amin', over the src values sent
    there and (``include_self``) input's own value; other positions keep input's. The
    gradient of 'amax'/'amin' is shared evenly by the values equal to the result, as
    PyTorch's; 'mean' divides by the number of values reduced."""
    op = "scatter_reduce"
    x = _t(input, op)
    src = _t(src, op)
    reduces = ("sum", "prod", "mean", "amax", "amin")
    if reduce not in reduces:
        raise ValueError(f"{op}: reduce must be one of {', '.join(map(repr, reduces))}, got "
                         f"{reduce!r}")
    xp = x.xp
    d = _dim1(x, dim, op)
    idx = index._data if isinstance(index, Tensor) else xp.asarray(index)
    if idx.dtype.kind not in "iu":
        raise TypeError(f"{op}: index must be an integer tensor, got dtype {idx.dtype}")
    if src.ndim != idx.ndim or any(s < n for s, n in zip(src.shape, idx.shape)):
        raise ValueError(f"{op}: src shape {tuple(src.shape)} must have index's {idx.ndim} "
                         f"dims and be at least index shape {tuple(idx.shape)} in each")
    part = _src_part(src, idx)
    ones = Tensor._wrap(xp.ones(idx.shape, dtype=x._data.dtype))
    counts = scatter_add(_zeros_like(x), d, idx, ones)._data  # src values per position
    hit = Tensor._wrap(counts > 0)
    base = x if include_self else where(hit, 0.0, x)
    if reduce == "prod":
        return ScatterProd.apply(x, src, dim=d, index=idx, include_self=include_self)
    if reduce in ("sum", "mean"):
        y = scatter_add(base, d, idx, part)
        if reduce == "sum":
            return y
        n = counts + (1 if include_self else 0)
        return where(hit, y / Tensor._wrap(xp.maximum(n, 1).astype(x._data.dtype)), x)
    # amax / amin: the result from the arrays, then written as the mean of the values equal
    # to it, so that the gradient is shared evenly among them
    where_ = _scatter_index(xp, idx, d)
    best = x._data.copy()
    pick = xp.maximum if reduce == "amax" else xp.minimum
    if not include_self:
        best[where_] = -xp.inf if reduce == "amax" else xp.inf
    pick.at(best, where_, part._data)
    self_eq = (x._data == best) & (include_self | ~(counts > 0))
    src_eq = part._data == best[where_].reshape(idx.shape)
    mask_s = Tensor._wrap(src_eq.astype(x._data.dtype))
    n = self_eq.astype(x._data.dtype) + scatter_add(_zeros_like(x), d, idx, mask_s)._data
    total = scatter_add(where(Tensor._wrap(self_eq), x, 0.0), d, idx, part * mask_s)
    return total / Tensor._wrap(n)


@tensor_method()
def scatter(input, dim, index, src=None, value=None, *, reduce=None):
    """A copy of ``input`` with ``src`` (or the scalar ``value``) written at ``index`` along
    ``dim``; reduce='add' adds and 'multiply' multiplies into input instead (as
    scatter_reduce's 'sum' and 'prod'). Differentiable in input and src."""
    x = _t(input, "scatter")
    if (src is None) == (value is None):
        if isinstance(src, (int, float)) and value is None:
            src, value = None, src
        else:
            raise ValueError("scatter: pass exactly one of src and value")
    idx = index._data if isinstance(index, Tensor) else x.xp.asarray(index)
    if src is None:
        src = Tensor._wrap(x.xp.full(idx.shape, value, dtype=x._data.dtype))
    elif not isinstance(src, Tensor):  # a Python number as src: the value everywhere
        src = Tensor._wrap(x.xp.full(idx.shape, src, dtype=x._data.dtype))
    elif src.ndim == 0:
        src = expand(src, idx.shape)
    if reduce not in (None, "add", "multiply"):
        raise ValueError(f"scatter: reduce must be None, 'add' or 'multiply', got {reduce!r}")
    if reduce == "add":
        return scatter_add(x, dim, idx, src)
    if reduce == "multiply":
        return scatter_reduce(x, dim, idx, src, "prod")
    xp = x.xp
    hit = scatter_add(Tensor._wrap(xp.zeros(x._data.shape, dtype=x._data.dtype)), dim, idx,
                      Tensor._wrap(xp.ones(idx.shape, dtype=x._data.dtype)))._data > 0
    d = _dim1(x, dim, "scatter")
    # where an index repeats, the mean of its values (PyTorch leaves the choice unspecified)
    src_part = _src_part(src, idx)
    placed = scatter_add(Tensor._wrap(xp.zeros(x._data.shape, dtype=x._data.dtype)), d, idx,
                         src_part)
    counts = scatter_add(Tensor._wrap(xp.zeros(x._data.shape, dtype=x._data.dtype)), d, idx,
                         Tensor._wrap(xp.ones(idx.shape, dtype=x._data.dtype)))._data
    placed = placed / Tensor._wrap(xp.maximum(counts, 1))
    return where(Tensor._wrap(hit), placed, x)


def cdist(x1, x2, p=2.0, compute_mode=None):
    """The p-norm distances between the rows of x1 (*, P, M) and x2 (*, R, M): (*, P, R)."""
    a, b = _t(x1, "cdist"), _t(x2, "cdist")
    if a.ndim < 2 or b.ndim < 2 or a.shape[-1] != b.shape[-1]:
        raise ValueError(f"cdist: x1 {tuple(a.shape)} and x2 {tuple(b.shape)} received, "
                         "expected (*, P, M) and (*, R, M)")
    d = unsqueeze(a, -2) - unsqueeze(b, -3)
    return norm(d, p, -1)


@tensor_method()
def diff(input, n=1, dim=-1, prepend=None, append=None):
    """The n-th forward difference along ``dim``."""
    from .join import cat

    x = _t(input, "diff")
    d = _dim1(x, dim, "diff")
    if prepend is not None or append is not None:
        parts = [t for t in (prepend, x, append) if t is not None]
        x = cat(parts, d)
    for _ in range(n):
        m = x.shape[d]
        if m == 0:
            break
        x = narrow(x, d, 1, m - 1) - narrow(x, d, 0, m - 1)
    return x


@tensor_method()
def ravel(input):
    """The elements as a 1-d tensor."""
    return reshape(_t(input, "ravel"), (-1,))


@tensor_method()
def isclose(input, other, rtol=1e-05, atol=1e-08, equal_nan=False):
    """|input - other| <= atol + rtol |other|, elementwise (bool)."""
    x = _t(input, "isclose")
    o = other._data if isinstance(other, Tensor) else other
    return Tensor._wrap(x.xp.isclose(x._data, o, rtol=rtol, atol=atol, equal_nan=equal_nan))


class Cumprod(Op):
    """y_i = prod_{j<=i} x_j;  dx_i = sum_{j>=i} g_j y_j / x_i where no x is zero (a reversed
    cumsum), else dx_i = y_{i-1} (g_i + sum_{j>i} g_j prod_{i<k<=j} x_k) term by term."""

    def forward(self, x, dim=0):
        self.dim = dim
        self.save(x)
        y = x.cumprod(axis=dim)
        self.y = y
        return y

    def backward(self, g):
        xp = self.xp
        (x,), y, d = self.saved, self.y, self.dim
        if not (x == 0).any():
            t = xp.flip(xp.cumsum(xp.flip(g * y, axis=d), axis=d), axis=d)
            return (t / x,)
        x2, y2, g2 = (xp.moveaxis(a, d, -1) for a in (x, y, g))
        n = x2.shape[-1]
        out = xp.empty_like(x2)
        for i in range(n):
            pre = y2[..., i - 1] if i else xp.ones_like(x2[..., 0])
            rest = (g2[..., i + 1:] * xp.cumprod(x2[..., i + 1:], axis=-1)).sum(axis=-1)
            out[..., i] = pre * (g2[..., i] + rest)
        return (xp.moveaxis(out, -1, d),)

    def composite(self, x):
        """The running product as n - 1 multiplies."""
        d = self.dim
        n = x.shape[d]
        ys = [select(x, d, 0)]
        for k in range(1, n):
            ys.append(ys[-1] * select(x, d, k))
        return stack(ys, d)


@tensor_method()
def cumprod(input, dim, *, dtype=None):
    """The running product along ``dim``."""
    x = _t(input, "cumprod")
    if dtype is not None:
        x = x.to(dtype)
    if x.ndim == 0:
        return x * 1
    return Cumprod.apply(x, dim=_dim1(x, dim, "cumprod"))


@tensor_method()
def bernoulli(input, p=None, *, generator=None):
    """0/1 draws, 1 with probability ``input`` (or ``p``), in the input's dtype."""
    from ..random import _rng

    x = _t(input, "bernoulli")
    rng = generator or _rng()
    probs = x._data if p is None else p
    xp = x.xp
    if ((xp.asarray(probs) < 0) | (xp.asarray(probs) > 1)).any():
        raise ValueError("bernoulli: probabilities must be in [0, 1]")
    u = xp.asarray(rng.random(x._data.shape))
    return Tensor._wrap((u < probs).astype(x._data.dtype))


def _tensor_unfold(input, dimension, size, step):
    """Tensor.unfold: the windows of ``size`` elements every ``step`` along ``dimension``, as
    a new last dim (the dim itself becomes the window count)."""
    from .index import index_select

    x = _t(input, "unfold")
    d = _dim1(x, dimension, "unfold") if x.ndim else 0
    n = x.shape[d] if x.ndim else 1
    if size < 0 or size > n or step <= 0:
        raise ValueError(f"unfold: size {size} and step {step} do not fit dim {d} of size {n} "
                         "(expected 0 <= size <= the dim's size and step > 0)")
    xp = x.xp
    count = (n - size) // step + 1
    idx = (xp.arange(count)[:, None] * step + xp.arange(size)[None, :]).reshape(-1)
    y = index_select(x, d, Tensor._wrap(idx.astype(xp.int64)))
    shape = tuple(x.shape[:d]) + (count, size) + tuple(x.shape[d + 1:])
    y = reshape(y, shape)
    return y.movedim(d + 1, -1)


tensor_method("unfold")(_tensor_unfold)
