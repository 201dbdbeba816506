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
int8 = numpy.dtype("int8")
int16 = numpy.dtype("int16")
complex64 = numpy.dtype("complex64")
complex128 = numpy.dtype("complex128")
_default_float = float32


class UnsupportedDtype:
    """A PyTorch dtype name with no NumPy array type (``chainrule.bfloat16``): the name exists,
    so ``{'bfloat16': torch.bfloat16, ...}`` tables still build, but using it as a dtype raises
    a clear error."""

    __slots__ = ("name", "instead")

    def __init__(self, name, instead):
        self.name, self.instead = name, instead

    def error(self):
        return TypeError(f"dtype {self.name}: NumPy has no {self.name} array type, so chainrule "
                         f"cannot make {self.name} tensors; use {self.instead}")

    @property
    def is_floating_point(self):
        return True

    @property
    def itemsize(self):
        return 2

    def __repr__(self):
        return f"chainrule.{self.name}"


bfloat16 = UnsupportedDtype("bfloat16", "float32 (or float16 for half the memory)")

_DTYPE_NAMES = {
    "float32": float32, "float": float32, "float64": float64, "double": float64,
    "float16": float16, "half": float16, "int64": int64, "long": int64, "int32": int32,
    "int": int32, "uint8": uint8, "bool": bool_, "int16": int16, "short": int16,
    "int8": int8, "complex64": complex64, "cfloat": complex64, "complex128": complex128,
    "cdouble": complex128,
}


def as_dtype(dtype):
    """Normalise a dtype given as numpy dtype, Python type or name ('float32')."""
    if dtype is None:
        return None
    if isinstance(dtype, UnsupportedDtype):
        raise dtype.error()
    if isinstance(dtype, str):
        if dtype.startswith("torch."):
            dtype = dtype[len("torch."):]
        if dtype == "bfloat16":
            raise bfloat16.error()
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
            if x._data.ndim:
                dim = _promote_pair(dim, x._data.dtype)
            else:
                zero = _promote_pair(zero, x._data.dtype)
        elif isinstance(x, (builtins.bool, numpy.bool_)):
            weak = _promote_pair(weak, bool_)
        elif isinstance(x, (builtins.int, numpy.integer)):
            weak = _promote_pair(weak, int64)
        elif isinstance(x, (builtins.float, numpy.floating)):
            weak = _promote_pair(weak, float32)
    return _combine(dim, _combine(zero, weak))


__all__ = ["float32", "float64", "float16", "int32", "int64", "uint8", "bool_", "int8", "int16",
           "complex64", "complex128", "bfloat16", "UnsupportedDtype", "as_dtype",
           "is_floating", "result_type"]
