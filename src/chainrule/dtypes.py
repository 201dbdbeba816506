"""Dtypes: the dtype objects (``chainrule.float32``...), their names, and PyTorch's promotion
rules (the dtype of an op on mixed operands).

The dtype objects are NumPy's (``numpy.dtype("float32")``), so an array's ``.dtype`` compares
equal to them on every array namespace.
"""

from __future__ import annotations

import builtins

import numpy

float32 = numpy.dtype("float32")
float64 = numpy.dtype("float64")
float16 = numpy.dtype("float16")
int32 = numpy.dtype("int32")
int64 = numpy.dtype("int64")
uint8 = numpy.dtype("uint8")
bool_ = numpy.dtype("bool")
_default_float = float32

_DTYPE_NAMES = {
    "float32": float32, "float": float32, "float64": float64, "double": float64,
    "float16": float16, "half": float16, "int64": int64, "long": int64, "int32": int32,
    "int": int32, "uint8": uint8, "bool": bool_,
}


def as_dtype(dtype):
    """Normalise a dtype given as numpy dtype, Python type or name ('float32')."""
    if dtype is None:
        return None
    if isinstance(dtype, str):
        if dtype in _DTYPE_NAMES:
            return _DTYPE_NAMES[dtype]
        raise TypeError(f"unknown dtype {dtype!r}; expected one of {sorted(_DTYPE_NAMES)}")
    if dtype is float:
        return _default_float
    if dtype is int:
        return int64
    if dtype is bool:
        return bool_
    return numpy.dtype(dtype)


def is_floating(dtype) -> bool:
    return numpy.dtype(dtype).kind == "f"


# ----------------------------------------------------------------------------- promotion


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
    return numpy.promote_types(d1, d2)


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


_Tensor = ()  # the Tensor class, once chainrule.tensor has registered it (it sits above this)


def register_tensor_type(cls):
    """Tell :func:`result_type` which class is the tensor (``chainrule.tensor`` calls this once
    it has defined ``Tensor``; this module is below it and does not import it)."""
    global _Tensor
    _Tensor = cls


def result_type(*operands):
    """The dtype PyTorch gives an elementwise op on ``operands`` (tensors and scalars):
    tensors with dims decide, then 0-d tensors, then Python/NumPy scalars (a float scalar counts
    as float32, an int as int64), each group only when it is of a higher category."""
    dim = zero = weak = None
    for x in operands:
        if isinstance(x, _Tensor):
            if x.data.ndim:
                dim = _promote_pair(dim, x.data.dtype)
            else:
                zero = _promote_pair(zero, x.data.dtype)
        elif isinstance(x, (builtins.bool, numpy.bool_)):
            weak = _promote_pair(weak, bool_)
        elif isinstance(x, (builtins.int, numpy.integer)):
            weak = _promote_pair(weak, int64)
        elif isinstance(x, (builtins.float, numpy.floating)):
            weak = _promote_pair(weak, float32)
    return _combine(dim, _combine(zero, weak))


__all__ = ["float32", "float64", "float16", "int32", "int64", "uint8", "bool_", "as_dtype",
           "is_floating", "result_type"]
