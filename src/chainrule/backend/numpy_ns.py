"""The NumPy array namespace: what op code may call on NumPy arrays (``self.xp``).

Three parts, listed in ``NUMPY_NAMES``, ``EXTENSIONS`` and ``KERNELS`` (their union is
``chainrule.backend.API``):

- NumPy's own functions, dtypes and ufuncs under NumPy's names (these are NumPy's objects
  themselves, so calling ``xp.exp`` costs what ``numpy.exp`` does);
- extensions: what NumPy lacks under one name (a scatter-add into zeros, ``erf``), written here
  once instead of as fallbacks inside ops;
- kernels (:mod:`chainrule.backend.numpy_kernels`): fused passes that choose the compiled
  float32 code where it applies and run NumPy code otherwise.

The Tensor namespace (``chainrule.ops.tensor_ns``) and the CuPy one (``cupy_ns``) provide the
same names. ``RANDOM`` lists the random draws (``random_uniform``: dropout masks drawn where the
array lives), which no backward rule calls, so the Tensor namespace has none.
"""

from __future__ import annotations

import builtins as _builtins
import math
import sys

import numpy
from numpy import (  # noqa: F401  (re-exported: the namespace)
    abs,
    absolute,
    add,
    all,
    allclose,
    any,
    arange,
    arccos,
    arcsin,
    arctan,
    arctan2,
    arctanh,
    argmax,
    argmin,
    argpartition,
    argsort,
    array,
    array_split,
    asarray,
    ascontiguousarray,
    bincount,
    bitwise_and,
    bitwise_not,
    bitwise_or,
    bool_,
    broadcast_arrays,
    broadcast_shapes,
    broadcast_to,
    can_cast,
    cbrt,
    ceil,
    clip,
    concatenate,
    copysign,
    copyto,
    cos,
    cosh,
    count_nonzero,
    cumprod,
    cumsum,
    diag,
    divide,
    dot,
    dtype,
    einsum,
    empty,
    empty_like,
    equal,
    errstate,
    exp,
    exp2,
    expand_dims,
    expm1,
    eye,
    finfo,
    flatnonzero,
    flip,
    float16,
    float32,
    float64,
    floor,
    floor_divide,
    fmax,
    fmin,
    fmod,
    full,
    full_like,
    generic,
    greater,
    greater_equal,
    hypot,
    iinfo,
    indices,
    inf,
    int8,
    int16,
    int32,
    int64,
    isclose,
    isfinite,
    isinf,
    isnan,
    less,
    less_equal,
    lexsort,
    linspace,
    log,
    log1p,
    log2,
    log10,
    logaddexp,
    logical_and,
    logical_not,
    logical_or,
    logical_xor,
    matmul,
    max,
    maximum,
    may_share_memory,
    mean,
    min,
    minimum,
    moveaxis,
    multiply,
    nan,
    nan_to_num,
    ndarray,
    negative,
    newaxis,
    nonzero,
    not_equal,
    ones,
    ones_like,
    outer,
    pad,
    power,
    prod,
    promote_types,
    put_along_axis,
    ravel,
    reciprocal,
    remainder,
    repeat,
    reshape,
    result_type,
    rint,
    roll,
    round,
    searchsorted,
    shares_memory,
    sign,
    signbit,
    sin,
    sinh,
    sort,
    sqrt,
    square,
    squeeze,
    stack,
    subtract,
    sum,
    swapaxes,
    take,
    take_along_axis,
    tanh,
    tensordot,
    tile,
    transpose,
    tril,
    triu,
    true_divide,
    trunc,
    uint8,
    uint16,
    uint32,
    unique,
    var,
    vdot,
    where,
    zeros,
    zeros_like,
)
from numpy.lib.stride_tricks import sliding_window_view  # noqa: F401

from . import numpy_kernels
from .numpy_kernels import *  # noqa: F403  (the kernels: see numpy_kernels.__all__)

NUMPY_NAMES = tuple(n for n in dir() if not n.startswith("_") and n not in (
    "annotations", "math", "numpy", "numpy_kernels", "sliding_window_view", "sys"))
EXTENSIONS = ("erf", "index_put_add", "scatter_add_zeros", "put_along_dim",
              "sliding_window_view", "is_basic_index", "lgamma", "digamma", "trigamma",
              "cholesky", "solve", "inv")
KERNELS = tuple(numpy_kernels.__all__)
RANDOM = ("random_uniform",)
NUMPY_NAMES = tuple(n for n in NUMPY_NAMES if n not in KERNELS)
_self = sys.modules[__name__]

_erf = numpy.frompyfunc(math.erf, 1, 1)
_lgamma = numpy.frompyfunc(math.lgamma, 1, 1)


def erf(x):
    """erf elementwise: exact (math.erf) in float64; otherwise to about 1e-7 relative, below
    float32's resolution (Numerical Recipes' Chebyshev erfc)."""
    if x.dtype == float64:
        return asarray(_erf(x), dtype=x.dtype)
    z = abs(x)
    t = 1 / (1 + 0.5 * z)
    poly = -z * z - 1.26551223 + t * (1.00002368 + t * (0.37409196 + t * (0.09678418 + t * (
        -0.18628806 + t * (0.27886807 + t * (-1.13520398 + t * (1.48851587 + t * (
            -0.82215223 + t * 0.17087277))))))))
    r = 1 - t * exp(poly)
    return r * sign(x)  # erf is odd (and sign(0) = 0 gives erf(0) = 0 exactly)


def lgamma(x):
    """log Gamma(x) elementwise, in x's dtype (math.lgamma: exact in float64)."""
    return asarray(_lgamma(x), dtype=x.dtype)


def digamma_code(xp, x):
    """psi(x) for x > 0 with the functions of namespace ``xp``, in float64: the recurrence
    psi(x) = psi(x + 1) - 1/x up to x >= 10, then the asymptotic series log x - 1/(2x) -
    sum B_2k / (2k x^2k) (error below 1e-15). Every namespace runs this same code."""
    x = x.astype(float64)
    acc = xp.zeros_like(x)
    for _ in range(10):
        small = x < 10
        acc = acc - xp.where(small, 1.0 / xp.where(small, x, 1.0), 0.0)
        x = xp.where(small, x + 1, x)
    r = 1.0 / (x * x)
    series = r * (1 / 12 - r * (1 / 120 - r * (1 / 252 - r * (1 / 240 - r * (1 / 132)))))
    return acc + xp.log(x) - 0.5 / x - series


def trigamma_code(xp, x):
    """psi'(x) for x > 0 with the functions of namespace ``xp``, in float64: psi'(x) =
    psi'(x + 1) + 1/x^2 up to x >= 10, then 1/x + 1/(2x^2) + sum B_2k / x^(2k+1)."""
    x = x.astype(float64)
    acc = xp.zeros_like(x)
    for _ in range(10):
        small = x < 10
        acc = acc + xp.where(small, 1.0 / xp.where(small, x, 1.0) ** 2, 0.0)
        x = xp.where(small, x + 1, x)
    r = 1.0 / (x * x)
    series = (1 + r * (1 / 6 - r * (1 / 30 - r * (1 / 42 - r * (1 / 30))))) / x
    return acc + series + 0.5 * r


def digamma(x):
    """psi(x) = d log Gamma(x) / dx elementwise (x > 0), in x's dtype (see digamma_code)."""
    return digamma_code(_self, x).astype(x.dtype)


def trigamma(x):
    """psi'(x) elementwise (x > 0), in x's dtype (see trigamma_code)."""
    return trigamma_code(_self, x).astype(x.dtype)


def cholesky(a):
    """The lower Cholesky factor of a (batched) symmetric positive definite matrix; a
    ValueError when it is not positive definite."""
    try:
        return numpy.linalg.cholesky(a)
    except numpy.linalg.LinAlgError:
        raise ValueError("cholesky: the matrix is not positive definite") from None


def solve(a, b):
    """X with a X = b (batched, broadcast; numpy.linalg.solve)."""
    return numpy.linalg.solve(a, b)


def inv(a):
    """The inverse of a (batched) square matrix (numpy.linalg.inv)."""
    return numpy.linalg.inv(a)


def random_uniform(generator, shape, float_dtype):
    """Values uniform in [0, 1) of ``float_dtype`` (float32 or float64) from ``generator``,
    chainrule's NumPy generator, on this namespace's device: here ``generator.random``; a
    device namespace draws its seed from the generator and the values on the device."""
    return generator.random(shape, dtype=float_dtype)


def is_basic_index(index) -> bool:
    """Whether ``index`` is made of ints, slices, None and Ellipsis only (a basic index selects
    each element at most once, so a gradient can be written rather than scatter-added)."""
    items = index if isinstance(index, tuple) else (index,)
    return _builtins.all(isinstance(i, (int, slice)) or i is None or i is Ellipsis for i in items)


def index_put_add(shape, index, g):
    """zeros(shape) with ``g`` added at ``index`` (repeats accumulate): the VJP of ``x[index]``."""
    out = zeros(shape, dtype=g.dtype)
    if is_basic_index(index):
        out[index] = g
    else:
        add.at(out, index, g)
    return out


def scatter_add_zeros(shape, index, src):
    """zeros(shape) with ``src`` added at ``index``, an advanced index tuple (duplicates
    accumulate)."""
    out = zeros(shape, dtype=src.dtype)
    add.at(out, index, src)
    return out


def put_along_dim(shape, idx, g, dim):
    """zeros(shape) with ``g`` placed at ``idx`` along ``dim`` (the VJP of take_along_dim with
    indices that do not repeat)."""
    out = zeros(shape, dtype=g.dtype)
    put_along_axis(out, idx, g, axis=dim)
    return out
