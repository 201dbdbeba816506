"""Argument handling shared by the op families: operands made tensors, dtypes promoted as in
PyTorch (the rules are in :mod:`chainrule.dtypes`), dims normalised and checked, and the one
error type for a dim or index out of range."""

from __future__ import annotations

import builtins
import numbers

from ..backend import array_module, numpy_ns
from ..dtypes import float32, result_type
from ..tensor import ShapeError, Tensor


class DimError(IndexError, ValueError):
    """A dim or index out of range: an IndexError, as PyTorch raises, and a ValueError, as every
    other shape mistake here is."""


def norm_dims(dim, ndim, op="reduce"):
    """Normalise ``dim`` (None, int or sequence, negatives allowed) to a sorted tuple."""
    if dim is None:
        return tuple(range(ndim))
    if type(dim) is int and -ndim <= dim < ndim:  # the common case, first
        return (dim % ndim,)
    dims = (dim,) if isinstance(dim, int) else tuple(dim)
    out = []
    for d in dims:
        if not -builtins.max(ndim, 1) <= d < builtins.max(ndim, 1):
            raise DimError(
                f"{op}: dim {d} is out of range for a tensor of {ndim} dims "
                f"(expected {-builtins.max(ndim, 1)}..{builtins.max(ndim, 1) - 1})"
            )
        out.append(d % builtins.max(ndim, 1))
    return tuple(sorted(set(out))) if ndim else ()


# ----------------------------------------------------------------------------- operands

_TENSOR_LIKE = (numbers.Number, numpy_ns.ndarray, list, tuple, numpy_ns.generic)
_OPERAND = (Tensor, builtins.float, builtins.int, builtins.bool, numpy_ns.generic)
_WEAK = (builtins.float, builtins.int, builtins.bool)  # Python scalars take a tensor's dtype


def _t(x, op="op"):
    if isinstance(x, Tensor):
        return x
    if isinstance(x, _TENSOR_LIKE):
        return Tensor(x)
    raise TypeError(f"{op}: expected a Tensor or a number, got {type(x).__name__}")


def _operand(x, op):
    """Binary-op operand: Tensors and scalars pass through; arrays and lists become tensors."""
    if isinstance(x, _OPERAND):
        return x
    return _t(x, op)


def _array(x):
    """The array of a tensor, or ``x`` (a list, an array) as an array: a mask, a condition or
    an index that is not itself differentiated."""
    return x._data if isinstance(x, Tensor) else array_module(x).asarray(x)


def _promote(a, b, name):
    """Operands of a binary op brought to PyTorch's result dtype: tensors cast (differentiably),
    scalars made Python scalars so that NumPy lets them take the tensor's dtype."""
    a, b = _operand(a, name), _operand(b, name)
    if not isinstance(a, Tensor) and not isinstance(b, Tensor):
        a = _t(a, name)
    dtype = result_type(a, b)
    generic = numpy_ns.generic
    a = a.type(dtype) if isinstance(a, Tensor) else a.item() if isinstance(a, generic) else a
    b = b.type(dtype) if isinstance(b, Tensor) else b.item() if isinstance(b, generic) else b
    return a, b


def _float(x, op):
    """A floating tensor for a math function: integers and bools become float32, as in
    PyTorch (exp of an int64 tensor is float32)."""
    if type(x) is Tensor and x._data.dtype.kind == "f":  # the common case, first
        return x
    x = _t(x, op)
    return x if x._data.dtype.kind == "f" else x.type(float32)


def _need_float(x, op):
    x = _t(x, op)
    if x._data.dtype.kind != "f":
        raise TypeError(f"{op}: needs a floating tensor, got dtype {x.dtype}; call .float() first")
    return x


def _shape(x):
    return tuple(x.shape) if hasattr(x, "shape") else ()


def _broadcast_error(e, a, b, name):
    if "broadcast" in str(e):
        raise ShapeError(
            f"{name}: shapes {_shape(a)} and {_shape(b)} cannot be broadcast together (each "
            "dim must match, or be 1, counting from the right)"
        ) from None
    raise e


def _binary(cls, a, b, name):
    """``cls.apply(a, b)`` with the operands promoted to one dtype (unless they agree already)
    and a broadcast mistake reported in the op's name."""
    # fast path: operands that already agree (same dtype, or a Python scalar on a float tensor)
    if isinstance(a, Tensor):
        if not (type(b) in _WEAK and a._data.dtype.kind == "f"
                or isinstance(b, Tensor) and a._data.dtype == b._data.dtype):
            a, b = _promote(a, b, name)
    elif not (type(a) in _WEAK and isinstance(b, Tensor) and b._data.dtype.kind == "f"):
        a, b = _promote(a, b, name)
    try:
        return cls.apply(a, b)
    except ValueError as e:
        _broadcast_error(e, a, b, name)


# ----------------------------------------------------------------------------- dims and shapes


def _dims(x, dim, op):
    return norm_dims(dim, x.ndim, op)


def _dim1(x, dim, op):
    d = norm_dims(dim, x.ndim, op)  # checks the range for a 0-d tensor too (dim 0 or -1)
    return d[0] if d else 0


def _shape_arg(shape):
    """A shape given as ``f(x, 2, 3)`` or ``f(x, (2, 3))``, as a tuple of ints."""
    if len(shape) == 1 and isinstance(shape[0], (tuple, list)):
        return tuple(shape[0])
    return tuple(builtins.int(s) for s in shape)


class _ValuesIndices(tuple):
    """(values, indices), as torch.return_types.max."""

    @property
    def values(self):
        return self[0]

    @property
    def indices(self):
        return self[1]
