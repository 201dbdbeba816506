"""The Tensor namespace: the array-namespace functions that backward rules call (``self.xp.*``),
implemented with differentiable ops. With ``create_graph=True`` the engine hands a rule this
module instead of the array namespace, so the rule itself is recorded and can be differentiated
again. It provides every extension of the interface (``chainrule.backend.EXTENSIONS``) and the
NumPy names that the ops' backward rules use."""

from __future__ import annotations

import math
import sys

from .. import backend
from .. import ops as F
from ..autograd import Op
from ..backend import numpy_kernels, numpy_ns
from ..tensor import Tensor
from .index import IndexPutAdd, _scatter_index

newaxis = None
exp, log, sin, cos, tanh, sqrt, abs = F.exp, F.log, F.sin, F.cos, F.tanh, F.sqrt, F.abs
sign, maximum, minimum, einsum = F.sign, F.maximum, F.minimum, F.einsum
isfinite = F.isfinite
is_basic_index = numpy_ns.is_basic_index


def _c(x):
    return x if isinstance(x, Tensor) else Tensor(numpy_ns.asarray(x))


def where(c, a, b):
    a = a if isinstance(a, Tensor) else _c(a)
    return F.where(c._data if isinstance(c, Tensor) else c, a, b)


def zeros_like(x):
    return Tensor._wrap(x.xp.zeros_like(x._data))


def ones_like(x):
    return Tensor._wrap(x.xp.ones_like(x._data))


def zeros(shape, dtype=None):
    return Tensor._wrap(numpy_ns.zeros(shape, dtype=dtype))


def eye(n, dtype=None):
    return Tensor._wrap(numpy_ns.eye(n, dtype=dtype))


def asarray(x, dtype=None):
    return x if isinstance(x, Tensor) else Tensor._wrap(numpy_ns.asarray(x, dtype=dtype))


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
    return F.index_select(x, axis, index)


def pad(x, widths, constant_values=0.0):
    """np.pad's (lo, hi) per dim, as chainrule.pad's (last_lo, last_hi, prev_lo, ...)."""
    flat = []
    for lo, hi in reversed(list(widths)):
        flat += [lo, hi]
    return F.pad(x, tuple(flat), value=constant_values)


# ----------------------------------------------------------------------------- extensions


def erf(x):
    """erf of a floating tensor, differentiably: the array namespace's approximation (to about
    1e-7 relative, Numerical Recipes' Chebyshev erfc) written with tensor ops. Its derivative
    is within about 2e-6 of 2/sqrt(pi) exp(-x^2), but 0 at x = 0 exactly (the kink of |x|)."""
    z = F.abs(x)
    t = 1 / (1 + 0.5 * z)
    poly = -z * z - 1.26551223 + t * (1.00002368 + t * (0.37409196 + t * (0.09678418 + t * (
        -0.18628806 + t * (0.27886807 + t * (-1.13520398 + t * (1.48851587 + t * (
            -0.82215223 + t * 0.17087277))))))))
    r = 1 - t * F.exp(poly)
    return r * F.sign(x)  # erf is odd (and sign(0) = 0 gives erf(0) = 0 exactly)


def index_put_add(shape, index, g):
    return IndexPutAdd.apply(g, shape=shape, index=index)


class _ScatterAddZeros(Op):
    """y = zeros(shape) with x added at ``where`` (an advanced index tuple);  dx = g[where]."""

    def forward(self, x, shape=(), where=()):
        self.where = where
        return self.xp.scatter_add_zeros(shape, where, x)

    def backward(self, g):
        return (g[self.where],)


def scatter_add_zeros(shape, where, src):
    return _ScatterAddZeros.apply(src, shape=shape, where=where)


def put_along_dim(shape, idx, g, dim):
    where = _scatter_index(backend.array_module(idx), idx, dim)
    return scatter_add_zeros(shape, where, F.expand(g, tuple(idx.shape)))


def sliding_window_view(x, window_shape, axis=None):
    """numpy's sliding_window_view of a tensor, differentiably: the windows gathered by index
    (a copy, where NumPy gives a strided view)."""
    xp = x.xp
    positions = xp.arange(x._data.size).reshape(x._data.shape)
    index = xp.sliding_window_view(positions, window_shape, axis=axis)
    return F.getitem(F.reshape(x, (-1,)), index)


def lgamma(x):
    from .special import Lgamma

    return Lgamma.apply(x)


def digamma(x):
    from .special import Digamma

    return Digamma.apply(x)


def trigamma(x):
    """psi'(x) with differentiable ops: the array namespaces' code (numpy_ns.trigamma_code)."""
    return numpy_ns.trigamma_code(sys.modules[__name__], x).to(x.dtype)


def cholesky(a):
    from .special import Cholesky

    return Cholesky.apply(a)


def solve(a, b):
    from .special import Solve

    return Solve.apply(_c(a), _c(b))


def inv(a):
    n = a.shape[-1]
    return solve(a, F.broadcast_to(eye(n, dtype=a.dtype), tuple(a.shape)))


# -- kernels: the fused passes of the NumPy namespace, as differentiable compositions ---------
# (the other fused ops give a ``composite`` instead, which the engine records under
# create_graph; GELU's backward is written here because the Tensor namespace's erf is an
# approximation that a composite would carry into the first derivative)

_INV_SQRT_2 = 1 / math.sqrt(2)


class _TensorMath:
    """The functions of the elementwise table's expressions, as differentiable ops."""

    exp, expm1, log, log1p = F.exp, F.expm1, F.log, F.log1p
    tanh, sqrt, abs, sigmoid = F.tanh, F.sqrt, F.abs, F.sigmoid

    @staticmethod
    def where(c, a, b):
        return where(c, a, b)

    @staticmethod
    def ncdf(x):
        return 0.5 * (1 + erf(x * _INV_SQRT_2))

    @staticmethod
    def powi(x, p):
        return x ** p


def pointwise_forward(name, x, params=()):
    """Row ``name`` of the elementwise table on a tensor, as differentiable ops: ``(y,
    kept)`` as the array namespaces return it."""
    out = numpy_kernels._function(name, "forward")(x, params, _TensorMath)
    return out if numpy_kernels._table.ROWS[name].keep else (out, None)


def pointwise_backward(name, saved, g, params=(), kept=None):
    """The gradient of row ``name``, recomputed with differentiable ops (so a rule's own
    gradient can be taken; what the forward kept is an array outside the graph, not used)."""
    return numpy_kernels._function(name, "backward")(saved, g, params, _TensorMath)

