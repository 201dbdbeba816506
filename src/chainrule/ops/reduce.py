"""Reductions: sum, mean, var/std, max/min (values and indices), amax/amin, prod, norm,
cumsum; and logsumexp and the fused softmax / log_softmax."""

from __future__ import annotations

import builtins
import math
import numbers

from ..autograd import Op
from ..tensor import Tensor
from ._args import DimError as DimError  # noqa: F401  (chainrule.ops.reduce.DimError)
from ._args import _dim1, _dims, _float, _need_float, _t, _ValuesIndices
from ._methods import tensor_method
from .arithmetic import mul, pow
from .index import getitem
from .math import abs, sqrt
from .selection import maximum, minimum
from .shape import _as_1d, reshape, unsqueeze


def _expand_back(g, shape, dims, keepdim):
    """Reshape a reduced gradient so it broadcasts against the input of ``shape``."""
    if not keepdim and dims:
        kshape = tuple(1 if i in dims else n for i, n in enumerate(shape))
        g = g.reshape(kshape)
    return g


class Sum(Op):
    """y = sum_dims x;  dx = g broadcast back over the summed dims."""

    def forward(self, x, dims=(), keepdim=False):
        self.dims, self.keepdim, self.shape = dims, keepdim, x.shape
        return x.sum(axis=dims, keepdims=keepdim)

    def backward(self, g):
        g = _expand_back(g, self.shape, self.dims, self.keepdim)
        return (self.xp.broadcast_to(g, self.shape),)


class Mean(Op):
    """y = mean_dims x;  dx = g / n broadcast back."""

    def forward(self, x, dims=(), keepdim=False):
        self.dims, self.keepdim, self.shape = dims, keepdim, x.shape
        n = 1
        for d in dims:
            n *= x.shape[d]
        self.n = n
        return x.mean(axis=dims, keepdims=keepdim)

    def backward(self, g):
        g = _expand_back(g, self.shape, self.dims, self.keepdim)
        return (self.xp.broadcast_to(g / self.n, self.shape),)


class Var(Op):
    """y = sum (x - mean)^2 / (n - correction);  dx = g 2 (x - mean) / (n - correction)."""

    def forward(self, x, dims=(), correction=1, keepdim=False):
        self.dims, self.keepdim = dims, keepdim
        n = 1
        for d in dims:
            n *= x.shape[d]
        self.denom = builtins.max(n - correction, 0)
        self.save(x)
        return x.var(axis=dims, ddof=correction, keepdims=keepdim)

    def backward(self, g):
        x = self.saved[0]
        g = _expand_back(g, x.shape, self.dims, self.keepdim)
        xc = x - x.mean(axis=self.dims, keepdims=True)
        if not self.denom:  # n <= correction (one element, an empty dim): NaN, as in PyTorch
            return (g * xc * 0.0 + float("nan"),)
        return (g * xc * (2.0 / self.denom),)


class MaxMin(Op):
    """y = max (or min) over one dim or all;  the gradient goes to the chosen element (the first
    one, as the index returned), or, over all dims, split evenly among ties (as PyTorch amax)."""

    def forward(self, x, dims=(), keepdim=False, mode="max", evenly=True):
        xp = self.xp
        self.dims, self.keepdim, self.evenly = dims, keepdim, evenly
        y = (x.max if mode == "max" else x.min)(axis=dims, keepdims=True)
        if evenly:
            self.save(x, y)
        else:
            d = dims[0]
            idx = (xp.argmax if mode == "max" else xp.argmin)(x, axis=d, keepdims=True)
            self.indices = idx
            self.shape = x.shape
        return y if keepdim else y.reshape(tuple(n for i, n in enumerate(x.shape) if i not in dims))

    def backward(self, g):
        xp = self.xp
        if not self.evenly:
            g = _expand_back(g, self.shape, self.dims, self.keepdim)
            return (xp.put_along_dim(self.shape, self.indices, g, self.dims[0]),)
        x, y = self.saved
        g = _expand_back(g, x.shape, self.dims, self.keepdim)
        mask = x == y
        count = mask.sum(axis=self.dims, keepdims=True).astype(g.dtype)
        return (g * mask / count,)


class Norm(Op):
    """y = ||x||_2 = sqrt(sum_dims x^2);  dx = g x / y, and 0 where y = 0 (the subgradient
    PyTorch takes at the origin, where the composition sqrt(sum(x*x)) would give NaN)."""

    def forward(self, x, dims=(), keepdim=False):
        self.dims, self.keepdim = dims, keepdim
        y = self.xp.sqrt((x * x).sum(axis=dims, keepdims=keepdim))
        self.save(x, y)
        return y

    def backward(self, g):
        x, y = self.saved
        g = _expand_back(g, x.shape, self.dims, self.keepdim)
        y = _expand_back(y, x.shape, self.dims, self.keepdim)
        return (g * x / self.xp.where(y == 0, 1.0, y),)


class Logsumexp(Op):
    """y = log sum exp x (stable);  dx = g exp(x - y)."""

    def forward(self, x, dims=(), keepdim=False):
        xp = self.xp
        self.dims, self.keepdim = dims, keepdim
        if x.size == 0:  # log of an empty sum: -inf (NumPy's max has no identity to start from)
            y = xp.full(tuple(1 if i in dims else n for i, n in enumerate(x.shape)), -math.inf,
                        dtype=x.dtype)
        else:
            m = x.max(axis=dims, keepdims=True)
            m = xp.where(xp.isfinite(m), m, 0)
            y = xp.log(xp.exp(x - m).sum(axis=dims, keepdims=True)) + m
        if not keepdim:
            y = y.reshape(tuple(n for i, n in enumerate(x.shape) if i not in dims))
        self.save(x, y)  # the output itself, so create_graph differentiates through it
        return y

    def backward(self, g):
        x, y = self.saved
        g = _expand_back(g, x.shape, self.dims, self.keepdim)
        y = _expand_back(y, x.shape, self.dims, self.keepdim)
        return (g * self.xp.exp(x - y),)


class Prod(Op):
    """y = prod x;  dx_i = g prod_{j != i} x_j, from exclusive products to the left and right
    (no division, so zeros are exact).  Higher orders run through ``composite``: the same
    product as a chain of multiplications."""

    def forward(self, x, dim=None, keepdim=False):
        self.dim, self.keepdim = dim, keepdim
        self.save(x)
        if dim is None:
            return x.prod()
        return x.prod(axis=dim, keepdims=keepdim)

    def backward(self, g):
        xp = self.xp
        x = self.saved[0]
        shape = x.shape
        if self.dim is None:
            x, dim = x.reshape(-1), 0
            g = g.reshape((1,))
        else:
            dim = self.dim
            if not self.keepdim:
                g = xp.expand_dims(g, dim)
        ones = xp.ones_like(x.sum(axis=dim, keepdims=True))
        n = x.shape[dim]
        head = (slice(None),) * dim
        # left[i] = x_0 ... x_{i-1},  right[i] = x_{i+1} ... x_{n-1}
        left = xp.cumprod(xp.concatenate([ones, x], axis=dim), axis=dim)[head + (slice(0, n),)]
        rev = xp.flip(x, axis=dim)
        right = xp.cumprod(xp.concatenate([ones, rev], axis=dim), axis=dim)[head + (slice(0, n),)]
        return ((g * left * xp.flip(right, axis=dim)).reshape(shape),)

    def composite(self, x):
        if self.dim is None:
            x, dim = x.reshape((-1,)), 0
        else:
            dim = self.dim
        head = (slice(None),) * dim
        n = x.shape[dim]
        if n == 0:
            y = x.sum(dim) + 1.0  # the empty product
        else:
            y = getitem(x, head + (0,))
            for i in range(1, n):
                y = mul(y, getitem(x, head + (i,)))
        return unsqueeze(y, dim) if self.keepdim and self.dim is not None else y


class Cumsum(Op):
    """y_i = sum_{j<=i} x_j;  dx_i = sum_{j>=i} g_j (a reversed cumsum)."""

    def forward(self, x, dim=0):
        self.dim = dim
        return x.cumsum(axis=dim)

    def backward(self, g):
        xp = self.xp
        return (xp.flip(xp.cumsum(xp.flip(g, axis=self.dim), axis=self.dim), axis=self.dim),)


class Softmax(Op):
    """y = exp(x - logsumexp x);  dx = y (g - sum(g y)) (from the saved output)."""

    def forward(self, x, dim=-1):
        xp = self.xp
        self.dim = dim
        if x.size == 0:  # nothing to normalize (and NumPy's max of an empty dim fails)
            self.save(x)
            return x.copy()
        e = x - x.max(axis=dim, keepdims=True)
        xp.exp(e, out=e)
        e /= e.sum(axis=dim, keepdims=True)
        self.save(e)
        return e

    def backward(self, g):
        y = self.saved[0]
        gy = g * y
        return (gy - y * gy.sum(axis=self.dim, keepdims=True),)


class LogSoftmax(Op):
    """y = x - logsumexp x;  dx = g - exp(y) sum(g) (from the saved output)."""

    def forward(self, x, dim=-1):
        xp = self.xp
        self.dim = dim
        if x.size == 0:
            self.save(x)
            return x.copy()
        s = x - x.max(axis=dim, keepdims=True)
        s -= xp.log(xp.exp(s).sum(axis=dim, keepdims=True))
        self.save(s)
        return s

    def backward(self, g):
        y = self.saved[0]
        return (g - self.xp.exp(y) * g.sum(axis=self.dim, keepdims=True),)


# ----------------------------------------------------------------------------- functions


def _reduce_dims(dim, axis):
    return axis if dim is None else dim


@tensor_method()
def sum(x, dim=None, keepdim=False, dtype=None, *, axis=None, keepdims=None):
    if (type(x) is Tensor and dim is None and axis is None and dtype is None
            and keepdims is None and x._data.dtype.kind == "f"):  # a loss: sum of everything
        return Sum.apply(x, dims=tuple(range(x._data.ndim)), keepdim=keepdim)
    x = _t(x, "sum")
    keepdim = keepdim if keepdims is None else keepdims
    if x._data.dtype.kind in "ib" and dtype is None:
        x = x.type("int64")
    elif dtype is not None:
        x = x.type(dtype)
    return Sum.apply(x, dims=_dims(x, _reduce_dims(dim, axis), "sum"), keepdim=keepdim)


@tensor_method()
def mean(x, dim=None, keepdim=False, *, dtype=None, axis=None, keepdims=None):
    x = _t(x, "mean")
    if dtype is not None:
        x = x.type(dtype)
    if x._data.dtype.kind != "f":
        raise TypeError(f"mean: needs a floating tensor, got dtype {x.dtype}; call .float() first "
                        "or pass dtype=")
    keepdim = keepdim if keepdims is None else keepdims
    return Mean.apply(x, dims=_dims(x, _reduce_dims(dim, axis), "mean"), keepdim=keepdim)


@tensor_method()
def var(x, dim=None, unbiased=None, keepdim=False, *, correction=None):
    x = _need_float(x, "var")
    if isinstance(dim, bool):  # var(False): PyTorch's var(unbiased), not a dim
        dim, unbiased = None, dim
    if correction is None:
        correction = 1 if unbiased is None or unbiased else 0
    return Var.apply(x, dims=_dims(x, dim, "var"), correction=correction, keepdim=keepdim)


@tensor_method()
def std(x, dim=None, unbiased=None, keepdim=False, *, correction=None):
    return sqrt(var(_need_float(x, "std"), dim, unbiased, keepdim, correction=correction))


def _maxmin(x, dim, keepdim, mode):
    x = _t(x, mode)
    if isinstance(dim, Tensor):  # torch.max(a, b) is maximum
        return (maximum if mode == "max" else minimum)(x, dim)
    if dim is None:
        if x._data.size == 0:
            raise ValueError(f"{mode}: empty tensor has no {mode}")
        return MaxMin.apply(x, dims=_dims(x, None, mode), keepdim=False, mode=mode, evenly=True)
    d = _dim1(x, dim, mode)
    if x.ndim == 0:  # over the only element: the value itself and index 0
        return _maxmin(reshape(x, (1,)), 0, False, mode)
    values = MaxMin.apply(x, dims=(d,), keepdim=keepdim, mode=mode, evenly=False)
    xp = x.xp
    arg = xp.argmax if mode == "max" else xp.argmin
    idx = Tensor._wrap(xp.asarray(arg(x._data, axis=d, keepdims=keepdim)))
    return _ValuesIndices((values, idx))


@tensor_method()
def max(x, dim=None, keepdim=False):
    return _maxmin(x, dim, keepdim, "max")


@tensor_method()
def min(x, dim=None, keepdim=False):
    return _maxmin(x, dim, keepdim, "min")


@tensor_method()
def amax(x, dim=None, keepdim=False):
    x = _t(x, "amax")
    return MaxMin.apply(x, dims=_dims(x, dim, "amax"), keepdim=keepdim, mode="max", evenly=True)


@tensor_method()
def amin(x, dim=None, keepdim=False):
    x = _t(x, "amin")
    return MaxMin.apply(x, dims=_dims(x, dim, "amin"), keepdim=keepdim, mode="min", evenly=True)


@tensor_method()
def logsumexp(x, dim=None, keepdim=False):
    x = _float(x, "logsumexp")
    return Logsumexp.apply(x, dims=_dims(x, dim, "logsumexp"), keepdim=keepdim)


@tensor_method()
def prod(x, dim=None, keepdim=False, *, dtype=None):
    x = _t(x, "prod")
    if dtype is not None:
        x = x.type(dtype)
    return Prod.apply(x, dim=None if dim is None else _dim1(x, dim, "prod"), keepdim=keepdim)


@tensor_method()
def cumsum(x, dim, *, dtype=None):
    x = _t(x, "cumsum")
    if dtype is not None:
        x = x.type(dtype)
    d = _dim1(x, dim, "cumsum")
    if x.ndim == 0:
        return _as_1d(x, lambda v: Cumsum.apply(v, dim=0))
    return Cumsum.apply(x, dim=d)


@tensor_method()
def norm(x, p="fro", dim=None, keepdim=False):
    """Vector p-norm over ``dim`` (all elements by default); 'fro' is the 2-norm, inf / -inf
    the largest / smallest |x|, 0 the count of non-zeros (no gradient)."""
    x = _need_float(x, "norm")
    if not (p in ("fro", "inf", "-inf") or isinstance(p, numbers.Real)):
        raise ValueError(f"norm: p must be a number, 'fro' or inf, got {p!r}")
    if p in ("fro", 2):
        return Norm.apply(x, dims=_dims(x, dim, "norm"), keepdim=keepdim)
    if p == 1:
        return sum(abs(x), dim, keepdim)
    if p in (float("inf"), "inf"):
        return amax(abs(x), dim, keepdim)
    if p in (float("-inf"), "-inf"):
        return amin(abs(x), dim, keepdim)
    if p == 0:
        return sum((x.detach() != 0).type(x.dtype), dim, keepdim)
    return pow(sum(pow(abs(x), p), dim, keepdim), 1.0 / p)


@tensor_method()
def softmax(x, dim=-1, dtype=None):
    x = _t(x, "softmax")
    if dtype is not None:
        x = x.type(dtype)
    x = _need_float(x, "softmax")
    d = _dim1(x, dim, "softmax")
    if x.ndim == 0:
        return _as_1d(x, lambda v: Softmax.apply(v, dim=0))
    return Softmax.apply(x, dim=d)


@tensor_method()
def log_softmax(x, dim=-1, dtype=None):
    x = _t(x, "log_softmax")
    if dtype is not None:
        x = x.type(dtype)
    x = _need_float(x, "log_softmax")
    d = _dim1(x, dim, "log_softmax")
    if x.ndim == 0:
        return _as_1d(x, lambda v: LogSoftmax.apply(v, dim=0))
    return LogSoftmax.apply(x, dim=d)


__all__ = ["sum", "mean", "var", "std", "max", "min", "amax", "amin", "logsumexp", "prod",
           "cumsum", "norm", "softmax", "log_softmax"]
