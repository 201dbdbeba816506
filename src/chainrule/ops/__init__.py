"""The functional op library: every differentiable op as a free function (``chainrule.exp``,
``chainrule.cat``...), with PyTorch's names and arguments. Tensor methods call these."""

from __future__ import annotations

import builtins
import numbers

import numpy as np

from ..tensor import Tensor, as_dtype, float32
from .elementwise import (
    Abs,
    Add,
    Cast,
    Clamp,
    Cos,
    Div,
    Exp,
    Expm1,
    Gelu,
    LeakyRelu,
    Log,
    Log1p,
    Maximum,
    Minimum,
    Mul,
    Neg,
    NoGradElementwise,
    Pow,
    Relu,
    Rsqrt,
    Sigmoid,
    Silu,
    Sin,
    Softplus,
    Sqrt,
    Sub,
    Tanh,
    Where,
)
from .linalg import Einsum, Matmul
from .reduce import (
    Cumsum,
    DimError,
    LogSoftmax,
    Logsumexp,
    MaxMin,
    Mean,
    Norm,
    Prod,
    Softmax,
    Sum,
    Var,
    norm_dims,
)
from .shape import (
    Cat,
    Expand,
    Flip,
    Gather,
    GetItem,
    IndexSelect,
    MaskedFill,
    Pad,
    Permute,
    Reshape,
    Roll,
    ScatterAdd,
    Stack,
    Tile,
    TriMask,
)

# ------------------------------------------------------------------------------- helpers


def _t(x, op="op"):
    if isinstance(x, Tensor):
        return x
    if isinstance(x, (numbers.Number, np.ndarray, list, tuple, np.generic)):
        return Tensor(x)
    raise TypeError(f"{op}: expected a Tensor or a number, got {type(x).__name__}")


_WEAK = (builtins.float, builtins.int, builtins.bool)  # Python scalars take a tensor's dtype


def _category(dtype):
    return 2 if dtype.kind == "f" else 0 if dtype.kind == "b" else 1


def _promote_pair(d1, d2):
    """PyTorch's promotion of two dtypes: the higher category (bool < int < float) wins;
    within a category the wider type (int64 + float16 is float16, not float64 as in NumPy)."""
    if d1 is None or d1 == d2:
        return d2
    if d2 is None:
        return d1
    c1, c2 = _category(d1), _category(d2)
    if c1 != c2:
        return d1 if c1 > c2 else d2
    return np.promote_types(d1, d2)


def _combine(higher, lower):
    # a lower-priority group (0-d tensors, then Python scalars) only changes the result when it
    # is of a higher category: f32 tensor + f64 0-d tensor is f32, i64 tensor + 1.5 is float32
    if higher is None:
        return lower
    if lower is None or higher.kind == "f":
        return higher
    if higher.kind == "b" or lower.kind == "f":
        return _promote_pair(higher, lower)
    return higher


def result_type(*operands):
    """The dtype PyTorch gives an elementwise op on ``operands`` (tensors and scalars):
    tensors with dims decide, then 0-d tensors, then Python/NumPy scalars (a float scalar counts
    as float32, an int as int64), each group only when it is of a higher category."""
    dim = zero = weak = None
    for x in operands:
        if isinstance(x, Tensor):
            if x.data.ndim:
                dim = _promote_pair(dim, x.data.dtype)
            else:
                zero = _promote_pair(zero, x.data.dtype)
        elif isinstance(x, (builtins.bool, np.bool_)):
            weak = _promote_pair(weak, np.dtype(np.bool_))
        elif isinstance(x, (builtins.int, np.integer)):
            weak = _promote_pair(weak, np.dtype(np.int64))
        elif isinstance(x, (builtins.float, np.floating)):
            weak = _promote_pair(weak, float32)
    return _combine(dim, _combine(zero, weak))


def _promote(a, b, name):
    """Operands of a binary op brought to PyTorch's result dtype: tensors cast (differentiably),
    scalars made Python scalars so that NumPy lets them take the tensor's dtype."""
    a, b = _operand(a, name), _operand(b, name)
    if not isinstance(a, Tensor) and not isinstance(b, Tensor):
        a = _t(a, name)
    dtype = result_type(a, b)
    a = a.type(dtype) if isinstance(a, Tensor) else a.item() if isinstance(a, np.generic) else a
    b = b.type(dtype) if isinstance(b, Tensor) else b.item() if isinstance(b, np.generic) else b
    return a, b


def _operand(x, op):
    """Binary-op operand: Tensors and scalars pass through; arrays and lists become tensors."""
    if isinstance(x, (Tensor, builtins.float, builtins.int, builtins.bool, np.generic)):
        return x
    return _t(x, op)


def _float(x, op):
    """A floating tensor for a math function: integers and bools become float32, as in
    PyTorch (exp of an int64 tensor is float32)."""
    if type(x) is Tensor and x.data.dtype.kind == "f":  # the common case, first
        return x
    x = _t(x, op)
    return x if x.data.dtype.kind == "f" else x.type(float32)


def _need_float(x, op):
    x = _t(x, op)
    if x.data.dtype.kind != "f":
        raise TypeError(f"{op}: needs a floating tensor, got dtype {x.dtype}; call .float() first")
    return x


def _binary(cls, a, b, name):
    # fast path: operands that already agree (same dtype, or a Python scalar on a float tensor)
    if isinstance(a, Tensor):
        if not (type(b) in _WEAK and a.data.dtype.kind == "f"
                or isinstance(b, Tensor) and a.data.dtype == b.data.dtype):
            a, b = _promote(a, b, name)
    elif not (type(a) in _WEAK and isinstance(b, Tensor) and b.data.dtype.kind == "f"):
        a, b = _promote(a, b, name)
    try:
        return cls.apply(a, b)
    except ValueError as e:
        _broadcast_error(e, a, b, name)


def _shape(x):
    return tuple(x.shape) if hasattr(x, "shape") else ()


def _dims(x, dim, op):
    return norm_dims(dim, x.ndim, op)


def _dim1(x, dim, op):
    d = norm_dims(dim, x.ndim, op)  # checks the range for a 0-d tensor too (dim 0 or -1)
    return d[0] if d else 0


def _as_1d(x, f):
    """f applied to a 0-d tensor seen as 1-d (a dim-wise op over its only element), 0-d again."""
    return reshape(f(reshape(x, (1,))), ())


def _nograd(fn, *xs):
    return NoGradElementwise.apply(*[_operand(x, "op") for x in xs], fn=fn)


# ------------------------------------------------------------------------------- arithmetic


# add, sub, mul, div: a fast path for the common case (a tensor with a tensor of the same
# dtype, or with a Python float), then the general one; Tensor's operators are these functions.


def _broadcast_error(e, a, b, name):
    if "broadcast" in str(e):
        raise ValueError(
            f"{name}: shapes {_shape(a)} and {_shape(b)} cannot be broadcast together (each "
            "dim must match, or be 1, counting from the right)"
        ) from None
    raise e


def add(a, b, alpha=1):
    if type(a) is Tensor and alpha == 1:
        if type(b) is Tensor and a.data.dtype is b.data.dtype:
            try:
                return Add._apply2(a, b)
            except ValueError as e:
                _broadcast_error(e, a, b, "add")
        elif type(b) is builtins.float and a.data.dtype.kind == "f":
            return Add._apply2(a, b)
    return _binary(Add, a, b if alpha == 1 else mul(b, alpha), "add")


def sub(a, b, alpha=1):
    if type(a) is Tensor and alpha == 1:
        if type(b) is Tensor and a.data.dtype is b.data.dtype:
            try:
                return Sub._apply2(a, b)
            except ValueError as e:
                _broadcast_error(e, a, b, "sub")
        elif type(b) is builtins.float and a.data.dtype.kind == "f":
            return Sub._apply2(a, b)
    return _binary(Sub, a, b if alpha == 1 else mul(b, alpha), "sub")


subtract = sub


def mul(a, b):
    if type(a) is Tensor:
        if type(b) is Tensor and a.data.dtype is b.data.dtype:
            try:
                return Mul._apply2(a, b)
            except ValueError as e:
                _broadcast_error(e, a, b, "mul")
        elif type(b) is builtins.float and a.data.dtype.kind == "f":
            return Mul._apply2(a, b)
    return _binary(Mul, a, b, "mul")


multiply = mul


def div(a, b, rounding_mode=None):
    if type(a) is Tensor and rounding_mode is None and a.data.dtype.kind == "f":
        if type(b) is Tensor and a.data.dtype is b.data.dtype:
            try:
                return Div._apply2(a, b)
            except ValueError as e:
                _broadcast_error(e, a, b, "div")
        elif type(b) is builtins.float:
            return Div._apply2(a, b)
    if rounding_mode == "floor":
        return floor_divide(a, b)
    if rounding_mode == "trunc":
        return _nograd(lambda xp, x, y: xp.trunc(x / y), a, b)
    if not (isinstance(a, Tensor) and a.data.dtype.kind == "f"):
        a, b = _promote(a, b, "div")
        if a.data.dtype.kind != "f" if isinstance(a, Tensor) else b.data.dtype.kind != "f":
            # true division of integers gives the default float, as in PyTorch
            a = a.type(float32) if isinstance(a, Tensor) else a
            b = b.type(float32) if isinstance(b, Tensor) else b
    return _binary(Div, a, b, "div")


divide = true_divide = div


def neg(x):
    return Neg.apply(_t(x, "neg"))


negative = neg


def pow(a, b):
    return _binary(Pow, a, b, "pow")


def square(x):
    return mul(x, x)


def reciprocal(x):
    return div(1.0, x)


def floor_divide(a, b):
    return _nograd(lambda xp, x, y: xp.floor_divide(x, y), a, b)


def remainder(a, b):
    return _nograd(lambda xp, x, y: xp.remainder(x, y), a, b)


fmod = remainder


# ------------------------------------------------------------------------------- math


def exp(x):
    return Exp.apply(_float(x, "exp"))


def expm1(x):
    return Expm1.apply(_float(x, "expm1"))


def log(x):
    return Log.apply(_float(x, "log"))


def log1p(x):
    return Log1p.apply(_float(x, "log1p"))


def log2(x):
    return log(x) / float(np.log(2.0))


def log10(x):
    return log(x) / float(np.log(10.0))


def sqrt(x):
    return Sqrt.apply(_float(x, "sqrt"))


def rsqrt(x):
    return Rsqrt.apply(_float(x, "rsqrt"))


def abs(x):
    return Abs.apply(_t(x, "abs"))


absolute = abs


def sin(x):
    return Sin.apply(_float(x, "sin"))


def cos(x):
    return Cos.apply(_float(x, "cos"))


def tanh(x):
    return Tanh.apply(_float(x, "tanh"))


def sigmoid(x):
    return Sigmoid.apply(_float(x, "sigmoid"))


def relu(x):
    return Relu.apply(_t(x, "relu"))


def leaky_relu(x, negative_slope=0.01):
    return LeakyRelu.apply(_float(x, "leaky_relu"), negative_slope=negative_slope)


def gelu(x, approximate="none"):
    return Gelu.apply(_float(x, "gelu"), approximate=approximate)


def silu(x):
    return Silu.apply(_float(x, "silu"))


def softplus(x, beta=1.0, threshold=20.0):
    return Softplus.apply(_float(x, "softplus"), beta=beta, threshold=threshold)


def clamp(x, min=None, max=None):
    x = _t(x, "clamp")
    if isinstance(min, Tensor) or isinstance(max, Tensor):
        if min is not None:
            x = maximum(x, min)
        if max is not None:
            x = minimum(x, max)
        return x
    if min is None and max is None:
        raise ValueError("clamp: at least one of min and max must be given")
    return Clamp.apply(x, lo=min, hi=max)


clip = clamp


def maximum(a, b):
    return _binary(Maximum, a, b, "maximum")


def minimum(a, b):
    return _binary(Minimum, a, b, "minimum")


def where(condition, a, b):
    c = condition.data if isinstance(condition, Tensor) else np.asarray(condition)
    if c.dtype != np.bool_:
        raise TypeError(f"where: condition must be a bool tensor, got dtype {c.dtype}")
    a, b = _promote(a, b, "where")
    try:
        return Where.apply(c, a, b)
    except ValueError:
        raise ValueError(
            f"where: condition {tuple(c.shape)}, input {_shape(a)} and other {_shape(b)} cannot "
            "be broadcast together (each dim must match, or be 1, counting from the right)"
        ) from None


def cast(x, dtype):
    return Cast.apply(x, as_dtype(dtype))


def clone(x):
    return Mul.apply(x, 1) if x.requires_grad else Tensor._wrap(x.data.copy())


def to_device(x, device):
    from .device import ToDevice

    return ToDevice.apply(x, device=device)


# ------------------------------------------------------------------------------- no-gradient


def sign(x):
    return _nograd(lambda xp, a: xp.sign(a), x)


def floor(x):
    return _nograd(lambda xp, a: xp.floor(a), x)


def ceil(x):
    return _nograd(lambda xp, a: xp.ceil(a), x)


def round(x, decimals=0):
    return _nograd(lambda xp, a: xp.round(a, decimals), x)


def trunc(x):
    return _nograd(lambda xp, a: xp.trunc(a), x)


def _cmp(name, ufunc):
    def f(a, b):
        return _nograd(lambda xp, x, y: getattr(xp, ufunc)(x, y), a, b)

    f.__name__ = name
    f.__doc__ = f"Elementwise {ufunc}; a bool tensor, no gradient."
    return f


lt = less = _cmp("lt", "less")
le = less_equal = _cmp("le", "less_equal")
gt = greater = _cmp("gt", "greater")
ge = greater_equal = _cmp("ge", "greater_equal")
eq = _cmp("eq", "equal")
ne = not_equal = _cmp("ne", "not_equal")
logical_and = _cmp("logical_and", "logical_and")
logical_or = _cmp("logical_or", "logical_or")
logical_xor = _cmp("logical_xor", "logical_xor")


def logical_not(x):
    return _nograd(lambda xp, a: xp.logical_not(a) if a.dtype == bool else ~a, x)


def isnan(x):
    return _nograd(lambda xp, a: xp.isnan(a), x)


def isinf(x):
    return _nograd(lambda xp, a: xp.isinf(a), x)


def isfinite(x):
    return _nograd(lambda xp, a: xp.isfinite(a), x)


def argmax(x, dim=None, keepdim=False):
    x = _t(x, "argmax")
    if dim is None:
        return _nograd(lambda xp, a: xp.asarray(xp.argmax(a)), x)
    d = _dim1(x, dim, "argmax")
    return _nograd(lambda xp, a: xp.argmax(a, axis=d, keepdims=keepdim), x)


def argmin(x, dim=None, keepdim=False):
    x = _t(x, "argmin")
    if dim is None:
        return _nograd(lambda xp, a: xp.asarray(xp.argmin(a)), x)
    d = _dim1(x, dim, "argmin")
    return _nograd(lambda xp, a: xp.argmin(a, axis=d, keepdims=keepdim), x)


def argsort(x, dim=-1, descending=False):
    x = _t(x, "argsort")
    d = _dim1(x, dim, "argsort")
    return _nograd(lambda xp, a: xp.argsort(-a if descending else a, axis=d, kind="stable"), x)


def allclose(a, b, rtol=1e-5, atol=1e-8):
    return bool(np.allclose(np.asarray(_t(a).data), np.asarray(_t(b).data), rtol=rtol, atol=atol))


def equal(a, b):
    a, b = _t(a), _t(b)
    return a.shape == b.shape and bool((a.data == b.data).all())


def any(x, dim=None, keepdim=False):
    x = _t(x, "any")
    ax = None if dim is None else _dims(x, dim, "any")
    return _nograd(lambda xp, a: xp.asarray(a.any(axis=ax, keepdims=keepdim)), x)


def all(x, dim=None, keepdim=False):
    x = _t(x, "all")
    ax = None if dim is None else _dims(x, dim, "all")
    return _nograd(lambda xp, a: xp.asarray(a.all(axis=ax, keepdims=keepdim)), x)


# ------------------------------------------------------------------------------- reductions


def _reduce_dims(dim, axis):
    return axis if dim is None else dim


def sum(x, dim=None, keepdim=False, dtype=None, *, axis=None, keepdims=None):
    if (type(x) is Tensor and dim is None and axis is None and dtype is None
            and keepdims is None and x.data.dtype.kind == "f"):  # a loss: sum of everything
        return Sum.apply(x, dims=tuple(range(x.data.ndim)), keepdim=keepdim)
    x = _t(x, "sum")
    keepdim = keepdim if keepdims is None else keepdims
    if x.data.dtype.kind in "ib" and dtype is None:
        x = x.type("int64")
    elif dtype is not None:
        x = x.type(dtype)
    return Sum.apply(x, dims=_dims(x, _reduce_dims(dim, axis), "sum"), keepdim=keepdim)


def mean(x, dim=None, keepdim=False, *, axis=None, keepdims=None):
    x = _t(x, "mean")
    if x.data.dtype.kind != "f":
        raise TypeError(f"mean: needs a floating tensor, got dtype {x.dtype}; call .float() first")
    keepdim = keepdim if keepdims is None else keepdims
    return Mean.apply(x, dims=_dims(x, _reduce_dims(dim, axis), "mean"), keepdim=keepdim)


def var(x, dim=None, unbiased=None, keepdim=False, *, correction=None):
    x = _need_float(x, "var")
    if correction is None:
        correction = 1 if unbiased is None or unbiased else 0
    return Var.apply(x, dims=_dims(x, dim, "var"), correction=correction, keepdim=keepdim)


def std(x, dim=None, unbiased=None, keepdim=False, *, correction=None):
    return sqrt(var(_need_float(x, "std"), dim, unbiased, keepdim, correction=correction))


class _ValuesIndices(tuple):
    """(values, indices), as torch.return_types.max."""

    @property
    def values(self):
        return self[0]

    @property
    def indices(self):
        return self[1]


def _maxmin(x, dim, keepdim, mode):
    x = _t(x, mode)
    if isinstance(dim, Tensor):  # torch.max(a, b) is maximum
        return (maximum if mode == "max" else minimum)(x, dim)
    if dim is None:
        if x.data.size == 0:
            raise ValueError(f"{mode}: empty tensor has no {mode}")
        return MaxMin.apply(x, dims=_dims(x, None, mode), keepdim=False, mode=mode, evenly=True)
    d = _dim1(x, dim, mode)
    if x.ndim == 0:  # over the only element: the value itself and index 0
        return _maxmin(reshape(x, (1,)), 0, False, mode)
    values = MaxMin.apply(x, dims=(d,), keepdim=keepdim, mode=mode, evenly=False)
    fn = np.argmax if mode == "max" else np.argmin
    xp = x.xp
    idx = Tensor._wrap(xp.asarray((xp.argmax if fn is np.argmax else xp.argmin)(
        x.data, axis=d, keepdims=keepdim)))
    return _ValuesIndices((values, idx))


def max(x, dim=None, keepdim=False):
    return _maxmin(x, dim, keepdim, "max")


def min(x, dim=None, keepdim=False):
    return _maxmin(x, dim, keepdim, "min")


def amax(x, dim=None, keepdim=False):
    x = _t(x, "amax")
    return MaxMin.apply(x, dims=_dims(x, dim, "amax"), keepdim=keepdim, mode="max", evenly=True)


def amin(x, dim=None, keepdim=False):
    x = _t(x, "amin")
    return MaxMin.apply(x, dims=_dims(x, dim, "amin"), keepdim=keepdim, mode="min", evenly=True)


def logsumexp(x, dim=None, keepdim=False):
    x = _float(x, "logsumexp")
    return Logsumexp.apply(x, dims=_dims(x, dim, "logsumexp"), keepdim=keepdim)


def prod(x, dim=None, keepdim=False):
    x = _t(x, "prod")
    return Prod.apply(x, dim=None if dim is None else _dim1(x, dim, "prod"), keepdim=keepdim)


def cumsum(x, dim):
    x = _t(x, "cumsum")
    d = _dim1(x, dim, "cumsum")
    if x.ndim == 0:
        return _as_1d(x, lambda v: Cumsum.apply(v, dim=0))
    return Cumsum.apply(x, dim=d)


def norm(x, p="fro", dim=None, keepdim=False):
    """Vector p-norm over ``dim`` (all elements by default); 'fro' is the 2-norm."""
    x = _need_float(x, "norm")
    if not (p in ("fro", "inf") or isinstance(p, numbers.Real)):
        raise ValueError(f"norm: p must be a number, 'fro' or inf, got {p!r}")
    if p in ("fro", 2):
        return Norm.apply(x, dims=_dims(x, dim, "norm"), keepdim=keepdim)
    if p == 1:
        return sum(abs(x), dim, keepdim)
    if p in (float("inf"), "inf"):
        return amax(abs(x), dim, keepdim)
    return pow(sum(pow(abs(x), p), dim, keepdim), 1.0 / p)


def softmax(x, dim=-1, dtype=None):
    x = _t(x, "softmax")
    if dtype is not None:
        x = x.type(dtype)
    x = _need_float(x, "softmax")
    d = _dim1(x, dim, "softmax")
    if x.ndim == 0:
        return _as_1d(x, lambda v: Softmax.apply(v, dim=0))
    return Softmax.apply(x, dim=d)


def log_softmax(x, dim=-1, dtype=None):
    x = _t(x, "log_softmax")
    if dtype is not None:
        x = x.type(dtype)
    x = _need_float(x, "log_softmax")
    d = _dim1(x, dim, "log_softmax")
    if x.ndim == 0:
        return _as_1d(x, lambda v: LogSoftmax.apply(v, dim=0))
    return LogSoftmax.apply(x, dim=d)


# ------------------------------------------------------------------------------- linear algebra


def matmul(a, b):
    if type(a) is not Tensor or type(b) is not Tensor:
        a, b = _t(a, "matmul"), _t(b, "matmul")
    return Matmul.apply(a, b)


def mm(a, b):
    if a.ndim != 2 or b.ndim != 2:
        raise ValueError(f"mm: expects 2-d operands, got {tuple(a.shape)} and {tuple(b.shape)}")
    return matmul(a, b)


def bmm(a, b):
    if a.ndim != 3 or b.ndim != 3:
        raise ValueError(f"bmm: expects 3-d operands, got {tuple(a.shape)} and {tuple(b.shape)}")
    return matmul(a, b)


def dot(a, b):
    return matmul(a, b)


def outer(a, b):
    return mul(reshape(a, (-1, 1)), reshape(b, (1, -1)))


def einsum(subscripts, *operands):
    if len(operands) == 1 and isinstance(operands[0], (list, tuple)):
        operands = tuple(operands[0])
    return Einsum.apply(*[_t(o, "einsum") for o in operands], subscripts=subscripts)


# ------------------------------------------------------------------------------- shapes


def _shape_arg(shape):
    if len(shape) == 1 and isinstance(shape[0], (tuple, list)):
        return tuple(shape[0])
    return tuple(builtins.int(s) for s in shape)


def reshape(x, *shape):
    x = _t(x, "reshape")
    shape = _shape_arg(shape)
    if shape == tuple(x.data.shape):
        return x
    return Reshape.apply(x, shape=shape)


def view(x, *shape):
    return reshape(x, *shape)


def flatten(x, start_dim=0, end_dim=-1):
    x = _t(x, "flatten")
    if x.ndim == 0:
        return reshape(x, (1,))
    s, e = start_dim % x.ndim, end_dim % x.ndim
    shp = x.data.shape
    n = 1
    for d in shp[s:e + 1]:
        n *= d
    return reshape(x, shp[:s] + (n,) + shp[e + 1:])


def unflatten(x, dim, sizes):
    d = _dim1(x, dim, "unflatten")
    return reshape(x, x.data.shape[:d] + tuple(sizes) + x.data.shape[d + 1:])


def permute(x, *dims):
    x = _t(x, "permute")
    dims = _shape_arg(dims)
    if len(dims) != x.ndim:
        raise ValueError(f"permute: {len(dims)} dims given for a tensor of {x.ndim} dims")
    dims = tuple(d % x.ndim for d in dims)
    if sorted(dims) != list(range(x.ndim)):
        raise ValueError(f"permute: {dims} is not a permutation of 0..{x.ndim - 1}")
    return Permute.apply(x, dims=dims)


def transpose(x, dim0, dim1):
    x = _t(x, "transpose")
    if x.ndim < 2:
        return x
    d0, d1 = _dim1(x, dim0, "transpose"), _dim1(x, dim1, "transpose")
    dims = list(range(x.ndim))
    dims[d0], dims[d1] = dims[d1], dims[d0]
    return Permute.apply(x, dims=tuple(dims))


swapaxes = swapdims = transpose


def t(x):
    return transpose(x, 0, 1)


def movedim(x, source, destination):
    x = _t(x, "movedim")
    src, dst = _dim1(x, source, "movedim"), _dim1(x, destination, "movedim")
    order = [d for d in range(x.ndim) if d != src]
    order.insert(dst, src)
    return permute(x, order)


def expand(x, *shape):
    x = _t(x, "expand")
    shape = _shape_arg(shape)
    lead = len(shape) - x.ndim
    shape = tuple(x.data.shape[i - lead] if n == -1 else n for i, n in enumerate(shape))
    if shape == tuple(x.data.shape):
        return x
    return Expand.apply(x, shape=shape)


def broadcast_to(x, shape):
    return expand(x, tuple(shape))


def expand_as(x, other):
    return expand(x, tuple(other.shape))


def squeeze(x, dim=None):
    x = _t(x, "squeeze")
    shp = x.data.shape
    if dim is None:
        new = tuple(n for n in shp if n != 1)
    else:
        dims = _dims(x, dim, "squeeze")
        new = tuple(n for i, n in enumerate(shp) if not (i in dims and n == 1))
    return reshape(x, new)


def unsqueeze(x, dim):
    x = _t(x, "unsqueeze")
    nd = x.ndim + 1
    if not -nd <= dim < nd:
        raise DimError(f"unsqueeze: dim {dim} is out of range for a result of {nd} dims "
                       f"(expected {-nd}..{nd - 1})")
    d = dim % nd
    shp = x.data.shape
    return reshape(x, shp[:d] + (1,) + shp[d:])


def cat(tensors, dim=0):
    tensors = [_t(x, "cat") for x in tensors]
    if not tensors:
        raise ValueError("cat: expected a non-empty list of tensors")
    d = _dim1(tensors[0], dim, "cat")
    ref = tensors[0].shape
    for i, x in enumerate(tensors):
        if x.ndim != len(ref) or builtins.any(
            a != b for j, (a, b) in enumerate(zip(x.shape, ref)) if j != d
        ):
            raise ValueError(
                f"cat: tensor {i} has shape {tuple(x.shape)} but tensor 0 has {tuple(ref)}; all "
                f"dims except dim {d} must match"
            )
    if len(tensors) == 1:
        return tensors[0]
    return Cat.apply(*tensors, dim=d)


concatenate = concat = cat


def stack(tensors, dim=0):
    tensors = [_t(x, "stack") for x in tensors]
    if not tensors:
        raise ValueError("stack: expected a non-empty list of tensors")
    ref = tensors[0].shape
    for i, x in enumerate(tensors):
        if x.shape != ref:
            raise ValueError(
                f"stack: tensor {i} has shape {tuple(x.shape)} but tensor 0 has {tuple(ref)}; "
                "all must match"
            )
    nd = len(ref) + 1
    if not -nd <= dim < nd:
        raise DimError(f"stack: dim {dim} is out of range for a result of {nd} dims "
                       f"(expected {-nd}..{nd - 1})")
    return Stack.apply(*tensors, dim=dim % nd)


def split(x, split_size_or_sections, dim=0):
    x = _t(x, "split")
    if x.ndim == 0:
        raise ValueError("split: needs a tensor of at least 1 dim, got a 0-d tensor")
    d = _dim1(x, dim, "split")
    n = x.data.shape[d]
    if isinstance(split_size_or_sections, builtins.int):
        step = split_size_or_sections
        if step <= 0:
            raise ValueError(f"split: split_size must be positive, got {step}")
        sizes = [builtins.min(step, n - i) for i in range(0, n, step)]
    else:
        sizes = list(split_size_or_sections)
        if builtins.sum(sizes) != n:
            raise ValueError(f"split: sections {sizes} sum to {builtins.sum(sizes)}, not {n}")
    out, start = [], 0
    pre = (slice(None),) * d
    for s in sizes:
        out.append(getitem(x, pre + (slice(start, start + s),)))
        start += s
    return tuple(out)


def chunk(x, chunks, dim=0):
    x = _t(x, "chunk")
    if not isinstance(chunks, builtins.int) or chunks <= 0:
        raise ValueError(f"chunk: chunks must be a positive integer, got {chunks!r}")
    n = x.data.shape[_dim1(x, dim, "chunk")]
    step = -(-n // chunks)
    return split(x, step, dim)


def unbind(x, dim=0):
    x = _t(x, "unbind")
    d = _dim1(x, dim, "unbind")
    pre = (slice(None),) * d
    return tuple(getitem(x, pre + (i,)) for i in range(x.data.shape[d]))


def _index_arrays(index):
    """Tensors inside an index become arrays (integer or bool)."""
    if isinstance(index, Tensor):
        return index.data
    if isinstance(index, tuple):
        return tuple(i.data if isinstance(i, Tensor) else i for i in index)
    if isinstance(index, list):
        return np.asarray(index)
    return index


def getitem(x, index):
    x = _t(x, "getitem")
    index = _index_arrays(index)
    try:
        return GetItem.apply(x, index=index)
    except IndexError as e:
        raise DimError(f"getitem: {e} (tensor of shape {tuple(x.shape)})") from None


def _index(index, x, d, op):
    """An integer index array for ``x`` along dim ``d``, checked for dtype and range."""
    idx = index.data if isinstance(index, Tensor) else np.asarray(index)
    if idx.dtype.kind not in "iu":
        raise TypeError(f"{op}: index must be an integer tensor, got dtype {idx.dtype}")
    n = x.data.shape[d] if x.ndim else 1
    if idx.size and (idx.min() < -n or idx.max() >= n):
        bad = idx.max() if idx.max() >= n else idx.min()
        raise DimError(f"{op}: index {bad} is out of range for dim {d} of size {n} "
                       f"(input shape {tuple(x.shape)})")
    return idx


def _index_like(idx, x, d, op, what="index"):
    if idx.ndim != x.ndim:
        raise ValueError(
            f"{op}: {what} has {idx.ndim} dims but input has {x.ndim}; they must match"
        )
    bad = [i for i in range(x.ndim) if i != d and idx.shape[i] > x.data.shape[i]]
    if bad:
        raise ValueError(
            f"{op}: index shape {tuple(idx.shape)} is larger than input shape "
            f"{tuple(x.shape)} in dim {bad[0]} (only dim {d} may be larger)"
        )


def gather(x, dim, index):
    x = _t(x, "gather")
    d = _dim1(x, dim, "gather")
    idx = _index(index, x, d, "gather")
    if x.ndim == 0 and idx.ndim == 0:
        return _as_1d(x, lambda v: Gather.apply(v, idx.reshape(1), dim=0))
    _index_like(idx, x, d, "gather")
    return Gather.apply(x, idx, dim=d)


def take_along_dim(x, indices, dim):
    return gather(x, dim, indices)


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


def masked_fill(x, mask, value):
    x = _t(x, "masked_fill")
    m = mask.data if isinstance(mask, Tensor) else np.asarray(mask)
    if m.dtype != np.bool_:
        raise TypeError(f"masked_fill: mask must be bool, got dtype {m.dtype}")
    if isinstance(value, Tensor):
        if value.requires_grad:  # differentiable in the fill value too, as in PyTorch
            return where(Tensor._wrap(np.broadcast_to(m, x.data.shape)), value.type(x.dtype), x)
        value = value.item()
    try:
        ok = np.broadcast_shapes(m.shape, x.data.shape) == x.data.shape
    except ValueError:
        ok = False
    if not ok:
        raise ValueError(
            f"masked_fill: mask shape {tuple(m.shape)} cannot be broadcast to input shape "
            f"{tuple(x.shape)}"
        )
    return MaskedFill.apply(x, m, value=value)


def pad(x, pad, mode="constant", value=0.0):
    if mode != "constant":
        raise NotImplementedError(f"pad: mode {mode!r}; only 'constant' is supported")
    x = _t(x, "pad")
    pad = tuple(builtins.int(p) for p in pad)
    if len(pad) % 2 or len(pad) // 2 > x.ndim:
        raise ValueError(
            f"pad: pad {pad} must have an even length of at most 2*{x.ndim} (a (before, after) "
            f"pair per dim, last dim first) for a tensor of shape {tuple(x.shape)}"
        )
    for i in range(len(pad) // 2):
        n = x.data.shape[x.ndim - 1 - i]
        if n + pad[2 * i] + pad[2 * i + 1] < 0 or -pad[2 * i] > n or -pad[2 * i + 1] > n:
            raise ValueError(f"pad: pad {pad} crops more than the {n} elements of dim "
                             f"{x.ndim - 1 - i} (tensor of shape {tuple(x.shape)})")
    return Pad.apply(x, pad=pad, value=value)


def _matrix(x, op):
    x = _t(x, op)
    if x.ndim < 2:
        raise ValueError(f"{op}: needs a tensor of at least 2 dims, got shape {tuple(x.shape)}")
    return x


def tril(x, diagonal=0):
    return TriMask.apply(_matrix(x, "tril"), k=diagonal, upper=False)


def triu(x, diagonal=0):
    return TriMask.apply(_matrix(x, "triu"), k=diagonal, upper=True)


def flip(x, dims):
    x = _t(x, "flip")
    return Flip.apply(x, dims=_dims(x, dims, "flip"))


def roll(x, shifts, dims=None):
    x = _t(x, "roll")
    if x.ndim == 0 and dims is not None:
        raise DimError(f"roll: dims {dims} given for a 0-d tensor; it has no dims to roll")
    if dims is None:
        return reshape(Roll.apply(flatten(x), shifts=shifts, dims=0), x.data.shape)
    d = _dims(x, dims, "roll") if isinstance(dims, builtins.int) else tuple(
        _dim1(x, di, "roll") for di in dims)
    if isinstance(dims, builtins.int):
        d = d[0]
    return Roll.apply(x, shifts=tuple(shifts) if isinstance(shifts, list) else shifts, dims=d)


def repeat(x, *sizes):
    x = _t(x, "repeat")
    sizes = _shape_arg(sizes)
    if len(sizes) < x.ndim:
        raise ValueError(
            f"repeat: {len(sizes)} repeat counts for a tensor of {x.ndim} dims; give at least "
            f"{x.ndim}"
        )
    return Tile.apply(x, reps=sizes)


def clone_detach(x):
    return Tensor._wrap(x.data.copy())


# ------------------------------------------------------------------------------- compositions
# PyTorch conveniences written with the ops above (their gradients come from those ops).


def clamp_min(x, min):
    return clamp(x, min=min)


def clamp_max(x, max):
    return clamp(x, max=max)


def tile(x, dims):
    """torch.tile: repeat, with fewer counts than dims padded by ones on the left."""
    x = _t(x, "tile")
    dims = tuple(dims)
    return repeat(x, (1,) * (x.ndim - len(dims)) + dims)


def narrow(x, dim, start, length):
    x = _t(x, "narrow")
    d = _dim1(x, dim, "narrow")
    n = x.data.shape[d]
    start = start % n if -n <= start < 0 else start
    if not (0 <= start and length >= 0 and start + length <= n):
        raise ValueError(f"narrow: start {start} and length {length} do not fit dim {d} of "
                         f"size {n}")
    return getitem(x, (slice(None),) * d + (slice(start, start + length),))


def select(x, dim, index):
    x = _t(x, "select")
    d = _dim1(x, dim, "select")
    return getitem(x, (slice(None),) * d + (builtins.int(index),))


def lerp(a, b, weight):
    """a + weight (b - a)."""
    return add(a, mul(weight, sub(b, a)))


def sort(x, dim=-1, descending=False, stable=True):
    """(values, indices) sorted along dim (stable; descending keeps the first of ties first)."""
    x = _t(x, "sort")
    d = _dim1(x, dim, "sort")
    a = x.data
    idx = np.argsort(-a if descending else a, axis=d, kind="stable") if x.ndim else np.asarray(0)
    idx = x.xp.asarray(idx)
    return _ValuesIndices((gather(x, d, idx) if x.ndim else x, Tensor._wrap(idx)))


def topk(x, k, dim=-1, largest=True, sorted=True):
    """(values, indices) of the k largest (or smallest) along dim, largest first."""
    x = _t(x, "topk")
    d = _dim1(x, dim, "topk")
    n = x.data.shape[d] if x.ndim else 1
    if not 0 <= k <= n:
        raise ValueError(f"topk: k={k} is out of range for dim {d} of size {n}")
    _, idx = sort(x, d, descending=largest)
    idx = Tensor._wrap(idx.data.take(range(k), axis=d)) if x.ndim else idx
    return _ValuesIndices((gather(x, d, idx) if x.ndim else x, idx))


def repeat_interleave(x, repeats, dim=None):
    """Each element repeated ``repeats`` times along dim (the flattened tensor if dim is None)."""
    x = _t(x, "repeat_interleave")
    if dim is None:
        x, dim = reshape(x, (-1,)), 0
    d = _dim1(x, dim, "repeat_interleave")
    reps = repeats.data if isinstance(repeats, Tensor) else repeats
    idx = np.repeat(np.arange(x.data.shape[d]), reps)
    return index_select(x, d, idx)


# Tensor methods that are these functions with the tensor first.
_METHODS = """add sub mul div neg pow exp expm1 log log1p log2 log10 sqrt rsqrt abs sin cos tanh
sigmoid relu gelu silu softplus clamp clip maximum minimum sign floor ceil round trunc square
reciprocal lt le gt ge eq ne logical_not logical_and logical_or isnan isinf isfinite argmax argmin
argsort any all sum mean var std max min amax amin logsumexp prod cumsum norm softmax log_softmax
matmul mm bmm dot reshape view flatten unflatten permute transpose swapaxes swapdims t movedim
expand expand_as broadcast_to squeeze unsqueeze split chunk unbind gather scatter_add index_select
masked_fill tril triu flip roll repeat outer leaky_relu floor_divide remainder
take_along_dim clamp_min clamp_max tile narrow select lerp sort topk repeat_interleave""".split()

for _name in _METHODS:
    setattr(Tensor, _name, globals()[_name])


def _view_as(self, other):
    return reshape(self, tuple(other.shape))


def _where_method(self, condition, other):
    return where(condition, self, other)


def _type_as(self, other):
    return self.type(other.dtype)


Tensor.view_as = _view_as
Tensor.reshape_as = _view_as
Tensor.where = _where_method
Tensor.type_as = _type_as
Tensor.multiply = mul
Tensor.subtract = sub
Tensor.divide = div
Tensor.exp_ = lambda self: self._inplace(self.xp.exp(self.data), "exp_")

__all__ = [
    "add",
    "sub",
    "mul",
    "div",
    "neg",
    "pow",
    "square",
    "reciprocal",
    "floor_divide",
    "remainder",
    "exp",
    "expm1",
    "log",
    "log1p",
    "log2",
    "log10",
    "sqrt",
    "rsqrt",
    "abs",
    "sin",
    "cos",
    "tanh",
    "sigmoid",
    "relu",
    "leaky_relu",
    "gelu",
    "silu",
    "softplus",
    "clamp",
    "maximum",
    "minimum",
    "where",
    "cast",
    "clone",
    "to_device",
    "sign",
    "floor",
    "ceil",
    "round",
    "trunc",
    "logical_not",
    "isnan",
    "isinf",
    "isfinite",
    "argmax",
    "argmin",
    "argsort",
    "allclose",
    "equal",
    "any",
    "all",
    "sum",
    "mean",
    "var",
    "std",
    "max",
    "min",
    "amax",
    "amin",
    "logsumexp",
    "prod",
    "cumsum",
    "norm",
    "softmax",
    "log_softmax",
    "matmul",
    "mm",
    "bmm",
    "dot",
    "outer",
    "einsum",
    "reshape",
    "view",
    "flatten",
    "unflatten",
    "permute",
    "transpose",
    "t",
    "movedim",
    "expand",
    "broadcast_to",
    "expand_as",
    "squeeze",
    "unsqueeze",
    "cat",
    "stack",
    "split",
    "chunk",
    "unbind",
    "getitem",
    "gather",
    "take_along_dim",
    "scatter_add",
    "index_select",
    "masked_fill",
    "pad",
    "tril",
    "triu",
    "flip",
    "roll",
    "repeat",
    "clone_detach",
    "subtract",
    "multiply",
    "divide",
    "true_divide",
    "negative",
    "fmod",
    "absolute",
    "clip",
    "lt",
    "less",
    "le",
    "less_equal",
    "gt",
    "greater",
    "ge",
    "greater_equal",
    "eq",
    "ne",
    "not_equal",
    "logical_and",
    "logical_or",
    "logical_xor",
    "swapaxes",
    "swapdims",
    "concatenate",
    "concat",
    "clamp_min",
    "clamp_max",
    "tile",
    "narrow",
    "select",
    "lerp",
    "sort",
    "topk",
    "repeat_interleave",
]
