"""The CuPy array namespace (``device="cuda"``): the names of
:mod:`chainrule.backend.numpy_ns`, taken from CuPy, with the extensions written for CuPy arrays,
each kernel in the NumPy-code form it has on the CPU (``numpy_kernels.bind``) and, where a
fused pass is simple, a real CUDA kernel in its place (``ElementwiseKernel`` /
``ReductionKernel``): every row of the elementwise table (generated from the row's
expressions, :mod:`chainrule.backend.elementwise`), the row softmax of attention,
layer norm's forward and backward, the Adam/AdamW step, and dropout's uniform draws. Imported
only once a CUDA array exists (``chainrule.backend._load_cupy``); ``import chainrule`` never
imports it.

The fused kernels keep the contracts of ``numpy_kernels``: a forward kernel returns
``(out, saved)`` and its backward takes ``saved`` back; ``adam_step`` returns True when it
updated the arrays (False: the optimizer runs its own code).
"""

from __future__ import annotations

import math
import sys

import cupy
import cupyx
import numpy

from . import elementwise, numpy_kernels, numpy_ns

_missing = []
for _name in numpy_ns.NUMPY_NAMES:
    if hasattr(cupy, _name):
        globals()[_name] = getattr(cupy, _name)
    else:  # pragma: no cover - depends on the CuPy version
        _missing.append(_name)
for _name in ("errstate", "generic", "finfo", "iinfo", "dtype", "can_cast", "promote_types",
              "broadcast_shapes"):
    # NumPy's own objects where CuPy lacks them (CuPy takes NumPy's dtypes; CuPy does not
    # trap floating-point errors, so errstate is a no-op context there)
    if _name in _missing:
        globals()[_name] = getattr(numpy_ns, _name)
        _missing.remove(_name)
ndarray = cupy.ndarray
sliding_window_view = cupy.lib.stride_tricks.sliding_window_view
is_basic_index = numpy_ns.is_basic_index


class _AddWithAt:
    """``cupy.add`` with ``.at`` (NumPy's unbuffered scatter-add) where this CuPy's ufunc
    lacks it: ``cupyx.scatter_add``."""

    def __init__(self, uf):
        self._uf = uf
        self.__name__ = "add"

    def __call__(self, *args, **kwargs):
        return self._uf(*args, **kwargs)

    def at(self, a, indices, b):
        cupyx.scatter_add(a, indices, b)

    def __getattr__(self, name):
        return getattr(self._uf, name)


if not hasattr(cupy.add, "at"):  # pragma: no cover - depends on the CuPy version
    add = _AddWithAt(cupy.add)
if "put_along_axis" in _missing:  # pragma: no cover - depends on the CuPy version

    def put_along_axis(arr, indices, values, axis):
        arr[numpy_kernels_index(arr, indices, axis)] = values

    _missing.remove("put_along_axis")


def numpy_kernels_index(arr, indices, axis):
    """The advanced index tuple that addresses ``arr`` at ``indices`` along ``axis``."""
    grids = list(cupy.indices(indices.shape, sparse=True))
    grids[axis] = indices
    return tuple(grids)


# ----------------------------------------------------------------------------- extensions

_erf_kernel = cupy.ElementwiseKernel("T x", "T y", "y = erf(x)", "chainrule_erf")


def erf(x):
    """erf elementwise (CUDA's erf: correctly rounded to within 2 ulp in float32/float64)."""
    if x.dtype.kind != "f":
        x = x.astype(cupy.float64)
    return _erf_kernel(x)


def lgamma(x):
    """log Gamma(x) elementwise (cupyx.scipy.special.gammaln), in x's dtype."""
    import cupyx.scipy.special

    return cupyx.scipy.special.gammaln(x).astype(x.dtype, copy=False)


def digamma(x):
    """psi(x) (x > 0): the CPU's recurrence and series (numpy_ns.digamma_code) on CuPy arrays,
    so both devices give the same values."""
    return numpy_ns.digamma_code(sys.modules[__name__], x).astype(x.dtype)


def trigamma(x):
    """psi'(x) (x > 0): the CPU's code (numpy_ns.trigamma_code) on CuPy arrays."""
    return numpy_ns.trigamma_code(sys.modules[__name__], x).astype(x.dtype)


def cholesky(a):
    """The lower Cholesky factor (cupy.linalg.cholesky, batched); a ValueError when the matrix
    is not positive definite (CuPy gives NaNs there instead of raising: one check)."""
    L = cupy.linalg.cholesky(a)
    if bool(cupy.isnan(L).any()) and not bool(cupy.isnan(a).any()):
        raise ValueError("cholesky: the matrix is not positive definite")
    return L


def solve(a, b):
    """X with a X = b (cupy.linalg.solve, batched)."""
    return cupy.linalg.solve(a, b)


def inv(a):
    """The inverse of a (batched) square matrix (cupy.linalg.inv)."""
    return cupy.linalg.inv(a)


def index_put_add(shape, index, g):
    out = cupy.zeros(shape, dtype=g.dtype)
    if is_basic_index(index):
        out[index] = g
    else:
        cupyx.scatter_add(out, index, g)
    return out


def scatter_add_zeros(shape, index, src):
    out = cupy.zeros(shape, dtype=src.dtype)
    cupyx.scatter_add(out, index, src)
    return out


def put_along_dim(shape, idx, g, dim):
    out = cupy.zeros(shape, dtype=g.dtype)
    put_along_axis(out, idx, g, axis=dim)
    return out


# ----------------------------------------------------------------------------- random draws

# splitmix64 of (seed + i * golden ratio): a counter-based generator, one 64-bit value per
# element from the element's index, so one launch draws a whole mask
_SPLITMIX = """
    unsigned long long z = seed + (unsigned long long)i * 0x9E3779B97F4A7C15ULL;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    z ^= z >> 31;
"""
_uniform32 = cupy.ElementwiseKernel(
    "uint64 seed", "float32 y", _SPLITMIX + "y = (float)(z >> 40) * (1.0f / 16777216.0f);",
    "chainrule_uniform32")
_uniform64 = cupy.ElementwiseKernel(
    "uint64 seed", "float64 y", _SPLITMIX + "y = (double)(z >> 11) * (1.0 / 9007199254740992.0);",
    "chainrule_uniform64")


def random_uniform(generator, shape, float_dtype):
    """Values uniform in [0, 1) drawn on the GPU: the seed is one draw from ``generator``
    (chainrule's generator, so ``manual_seed`` fixes every mask and a resumed run continues
    the same stream), the values a counter-based generator of that seed."""
    seed = numpy.uint64(generator.integers(0, 2**63 - 1, dtype=numpy.int64))
    out = cupy.empty(shape, dtype=float_dtype)
    if out.size:
        (_uniform32 if out.dtype == cupy.float32 else _uniform64)(seed, out)
    return out


# ----------------------------------------------------------------------------- kernels

# the NumPy-code form of each kernel, bound to this namespace, runs on CuPy arrays; the fused
# kernels below replace the ones where one CUDA pass is simple to write
globals().update(numpy_kernels.bind(sys.modules[__name__]))

_pointwise_kernels: dict = {}  # (row, direction) -> its ElementwiseKernel


def _pointwise_kernel(name, which):
    k = _pointwise_kernels.get((name, which))
    if k is None:
        row = elementwise.ROWS.get(name)
        if row is None:
            raise ValueError(f"pointwise: no elementwise op named {name!r}")
        ins, outs, op = elementwise.cuda_kernel_spec(row)[which]
        k = _pointwise_kernels[(name, which)] = cupy.ElementwiseKernel(
            ins, outs, op, f"chainrule_{name}_{which}", preamble=elementwise.CUDA_PRELUDE)
    return k


def pointwise_forward(name, x, params=(), *, xp=None):
    """Row ``name`` of the elementwise table, one CUDA kernel generated from the row:
    ``(y, kept)`` as on the CPU."""
    if x.dtype.kind != "f":
        x = x.astype(cupy.float32)
    p = [x.dtype.type(v) for v in params]
    out = _pointwise_kernel(name, "forward")(x, *p)
    return out if elementwise.ROWS[name].keep else (out, None)


def pointwise_backward(name, saved, g, params=(), kept=None, *, xp=None):
    """The gradient of row ``name``, one CUDA kernel."""
    g = cupy.asarray(g, dtype=saved.dtype)
    p = [saved.dtype.type(v) for v in params]
    if elementwise.ROWS[name].keep:
        return _pointwise_kernel(name, "backward")(saved, g, kept, *p)
    return _pointwise_kernel(name, "backward")(saved, g, *p)


def _row_softmax_inplace(S):
    """softmax over the last dim of S, in place, in three CuPy passes (max, exp-sum, scale)."""
    S -= S.max(axis=-1, keepdims=True)
    cupy.exp(S, out=S)
    S /= S.sum(axis=-1, keepdims=True)
    return S


_causal_mask_kernel = cupy.ElementwiseKernel(
    "T s, int64 L, int64 S, float64 scale", "T y",
    "long long col = i % S; long long row = (i / S) % L;"
    "y = col > row ? (T)(-__int_as_float(0x7f800000)) : (T)(s * scale);",
    "chainrule_scale_causal")


def attention_softmax(q, k, scale, causal=False, mask=None, *, xp=None):
    """A = softmax(q k^T scale + mask) over the last dim (the causal part masked in the same
    pass as the scaling); ``(A, None)``."""
    S = cupy.matmul(q, cupy.swapaxes(k, -1, -2))
    if causal and mask is None and S.flags.c_contiguous:
        L, Sk = S.shape[-2], S.shape[-1]
        S = _causal_mask_kernel(S, L, Sk, float(scale), S)
    else:
        S *= S.dtype.type(scale)
        if mask is not None:
            S += mask
        if causal:
            L, Sk = S.shape[-2], S.shape[-1]
            S += cupy.triu(cupy.full((L, Sk), -cupy.inf, dtype=S.dtype), 1)
    return _row_softmax_inplace(S), None


_softmax_bwd = cupy.ElementwiseKernel(
    "T gA, T A, T d", "T dS", "dS = A * (gA - d)", "chainrule_softmax_backward")


def attention_softmax_backward(gA, A, scale, saved, *, xp=None):
    """dS = A (gA - sum_rows(gA A)); ``(dS, scale)``: the scale left to the products."""
    d = (gA * A).sum(axis=-1, keepdims=True)
    dS = _softmax_bwd(gA, A, d, gA)
    return dS, A.dtype.type(scale)


_ln_mean_rstd = cupy.ReductionKernel(
    "T x", "float64 s",  # the sums in float64, as the compiled CPU kernel keeps them
    "(double)x", "a + b", "s = a", "0", "chainrule_row_sum", reduce_type="float64")
_ln_norm = cupy.ElementwiseKernel(
    "T x, T mu, T r", "T xh", "xh = (x - mu) * r", "chainrule_ln_normalize")
_ln_affine = cupy.ElementwiseKernel(
    "T xh, T w, T b", "T y", "y = xh * w + b", "chainrule_ln_affine")
_ln_bwd = cupy.ElementwiseKernel(
    "T gh, T xh, T r, T a, T c", "T dx", "dx = r * (gh - a - xh * c)", "chainrule_ln_backward")


def layer_norm_forward(x, w=None, b=None, eps=1e-5, *, xp=None):
    """Layer norm of the rows of x (R, n) with float64 statistics; ``(y, saved)`` with saved
    holding xh and r (R, 1), as the CPU kernel's."""
    n = x.shape[1]
    mu = (_ln_mean_rstd(x, axis=1, keepdims=True) / n).astype(x.dtype)
    d = x - mu
    var = _ln_mean_rstd(d * d, axis=1, keepdims=True) / n
    r = (1.0 / cupy.sqrt(var + eps)).astype(x.dtype)
    xh = _ln_norm(x, mu, r)
    if w is None:
        y = xh.copy()
    else:
        bb = b.reshape(-1) if b is not None else cupy.zeros(n, dtype=x.dtype)
        y = _ln_affine(xh, w.reshape(-1), bb)
    return y, (None, xh, r)


def layer_norm_backward(g, saved, w=None, need_x=True, need_w=False, need_b=False, *, xp=None):
    """dx = r (gh - mean(gh) - xh mean(gh xh)), dw = sum_rows g xh, db = sum_rows g."""
    _, xh, r = saved
    n = xh.shape[1]
    g = cupy.asarray(g, dtype=xh.dtype)
    gw = (g * xh).sum(axis=0) if need_w else None
    gb = g.sum(axis=0) if need_b else None
    gx = None
    if need_x:
        gh = g * w.reshape(-1) if w is not None else g
        a = gh.mean(axis=1, keepdims=True)
        c = (gh * xh).sum(axis=1, keepdims=True) / n
        gx = _ln_bwd(gh, xh, r, a, c)
    return gx, gw, gb


_adam = cupy.ElementwiseKernel(
    "T g, float64 beta1, float64 beta2, float64 wd, float64 decay, float64 step_size, "
    "float64 eps_hat, bool maximize",
    "T p, T m, T v",
    """
    T gi = maximize ? -g : g;
    if (wd != 0.0) gi += (T)wd * p;
    m = (T)beta1 * m + (T)(1.0 - beta1) * gi;
    v = (T)beta2 * v + (T)(1.0 - beta2) * gi * gi;
    p = p * (T)decay - (T)step_size * m / (sqrt(v) + (T)eps_hat);
    """,
    "chainrule_adam_step")


def adam_step(p, g, m, v, *, step, lr, beta1, beta2, eps, weight_decay, decoupled=False,
              maximize=False, amsgrad=False, xp=None):
    """One Adam (AdamW with ``decoupled``) update of p, m and v in place, one kernel over the
    four arrays: True; False for AMSGrad or lr = 0 (the optimizer runs its own code).
    p <- p decay - lr / c1 * m / (sqrt(v) / c2 + eps), written as step_size m / (sqrt v +
    eps c2) with step_size = lr c2 / c1 (c1 = 1 - beta1^t, c2 = sqrt(1 - beta2^t))."""
    if amsgrad or lr == 0 or not (p.dtype == g.dtype == m.dtype == v.dtype):
        return False
    c1, c2 = 1.0 - beta1**step, math.sqrt(1.0 - beta2**step)
    decay = 1.0 - lr * weight_decay if decoupled else 1.0
    _adam(g, beta1, beta2, 0.0 if decoupled else weight_decay, decay, lr * c2 / c1, eps * c2,
          bool(maximize), p, m, v)
    return True


def _unavailable(name):
    def f(*args, **kwargs):
        raise NotImplementedError(f"xp.{name}: this CuPy version has no {name} (device 'cuda'); "
                                  "upgrade CuPy (chainrule needs cupy>=13)")

    f.__name__ = name
    return f


for _name in _missing:  # pragma: no cover - depends on the CuPy version
    globals()[_name] = _unavailable(_name)
