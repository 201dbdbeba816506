"""Creating tensors: from data, filled, ranges, identity and random."""

from __future__ import annotations

import numpy as np

from . import backend
from .dtypes import _default_float, as_dtype, bool_, int64
from .random import _rng
from .tensor import Tensor


def _shape(size):
    if len(size) == 1 and isinstance(size[0], (tuple, list)):
        return tuple(int(s) for s in size[0])
    return tuple(int(s) for s in size)


def _make(arr, dtype, requires_grad, device):
    dev = backend.normalize_device(device)
    if dtype is not None:
        arr = arr.astype(as_dtype(dtype), copy=False)
    t = Tensor._wrap(backend.to_device(arr, dev))
    if requires_grad:
        t.requires_grad_(True)
    return t


def tensor(data, dtype=None, requires_grad=False, device=None):
    """A new tensor holding a copy of ``data`` (floats default to float32, ints to int64)."""
    if isinstance(data, Tensor):
        data = data._data
    if backend.is_device_array(data):  # a copy on the same device (unless told otherwise)
        return Tensor(data.copy(), dtype=dtype, requires_grad=requires_grad,
                      device="cuda" if device is None else device)
    return Tensor(backend.to_numpy(data).copy() if hasattr(data, "dtype") else data,
                  dtype=dtype, requires_grad=requires_grad, device=device)


def as_tensor(data, dtype=None, device=None):
    if isinstance(data, Tensor) and dtype is None and device is None:
        return data
    return Tensor(data._data if isinstance(data, Tensor) else data, dtype=dtype, device=device)


def from_numpy(a):
    """A tensor sharing memory with the NumPy array ``a``."""
    return Tensor._wrap(a)


def zeros(*size, dtype=None, requires_grad=False, device=None):
    return _make(np.zeros(_shape(size), as_dtype(dtype) or _default_float), None, requires_grad,
                 device)


def ones(*size, dtype=None, requires_grad=False, device=None):
    return _make(np.ones(_shape(size), as_dtype(dtype) or _default_float), None, requires_grad,
                 device)


def empty(*size, dtype=None, requires_grad=False, device=None):
    return _make(np.empty(_shape(size), as_dtype(dtype) or _default_float), None, requires_grad,
                 device)


def full(size, fill_value, dtype=None, requires_grad=False, device=None):
    if dtype is None:
        dtype = (bool_ if isinstance(fill_value, bool) else
                 int64 if isinstance(fill_value, int) else _default_float)
    return _make(np.full(tuple(size), fill_value, as_dtype(dtype)), None, requires_grad, device)


def _like(x, fn, dtype, requires_grad, device, *args):
    dtype = as_dtype(dtype) or x.dtype
    return _make(fn(tuple(x.shape), *args, dtype=dtype), None, requires_grad,
                 device or x.device)


def zeros_like(x, dtype=None, requires_grad=False, device=None, memory_format=None):
    return _like(x, np.zeros, dtype, requires_grad, device)


def ones_like(x, dtype=None, requires_grad=False, device=None, memory_format=None):
    return _like(x, np.ones, dtype, requires_grad, device)


def empty_like(x, dtype=None, requires_grad=False, device=None, memory_format=None):
    return _like(x, np.empty, dtype, requires_grad, device)


def full_like(x, fill_value, dtype=None, requires_grad=False, device=None, memory_format=None):
    return _like(x, np.full, dtype, requires_grad, device, fill_value)


def rand_like(x, dtype=None, requires_grad=False, device=None, memory_format=None):
    return rand(tuple(x.shape), dtype=dtype or x.dtype, requires_grad=requires_grad,
                device=device or x.device)


def randn_like(x, dtype=None, requires_grad=False, device=None, memory_format=None):
    return randn(tuple(x.shape), dtype=dtype or x.dtype, requires_grad=requires_grad,
                 device=device or x.device)


def arange(start, end=None, step=1, dtype=None, requires_grad=False, device=None):
    if end is None:
        start, end = 0, start
    if dtype is None:
        is_float = any(isinstance(v, float) for v in (start, end, step))
        dtype = _default_float if is_float else int64
    return _make(np.arange(start, end, step, dtype=as_dtype(dtype)), None, requires_grad, device)


def linspace(start, end, steps, dtype=None, requires_grad=False, device=None):
    return _make(np.linspace(start, end, steps, dtype=as_dtype(dtype) or _default_float), None,
                 requires_grad, device)


def eye(n, m=None, dtype=None, requires_grad=False, device=None):
    return _make(np.eye(n, m, dtype=as_dtype(dtype) or _default_float), None, requires_grad,
                 device)


def rand(*size, dtype=None, requires_grad=False, device=None, generator=None):
    rng = generator or _rng()
    dt = as_dtype(dtype) or _default_float
    return _make(rng.random(_shape(size), dtype=dt if dt in (np.float32, np.float64) else None),
                 dt, requires_grad, device)


def randn(*size, dtype=None, requires_grad=False, device=None, generator=None):
    rng = generator or _rng()
    dt = as_dtype(dtype) or _default_float
    return _make(rng.standard_normal(_shape(size), dtype=dt if dt in (np.float32, np.float64)
                                     else None), dt, requires_grad, device)


def randint(low, high=None, size=(), dtype=None, device=None, generator=None):
    """Integers drawn uniformly from [low, high): ``randint(high, size)`` or
    ``randint(low, high, size)``, as torch.randint."""
    if isinstance(high, (tuple, list)) and size == ():
        low, high, size = 0, low, high  # randint(high, size)
    elif high is None:
        low, high = 0, low
    rng = generator or _rng()
    return _make(rng.integers(low, high, size=tuple(size), dtype=np.int64), dtype, False, device)


def randperm(n, dtype=None, device=None, generator=None):
    rng = generator or _rng()
    return _make(rng.permutation(n).astype(np.int64), dtype, False, device)


def multinomial(probs, num_samples=1, replacement=False, generator=None):
    """Draw indices from each row of ``probs`` (non-negative weights)."""
    rng = generator or _rng()
    arr = probs._data if isinstance(probs, Tensor) else probs
    p = backend.to_numpy(arr).astype(np.float64)  # drawn on the host, given back on probs' device
    flat = p.reshape(-1, p.shape[-1])
    out = np.empty((flat.shape[0], num_samples), dtype=np.int64)
    for i, row in enumerate(flat):
        s = row.sum()
        if not np.isfinite(s) or s <= 0 or (row < 0).any():
            raise ValueError("multinomial: probabilities must be finite, non-negative, sum > 0")
        out[i] = rng.choice(row.shape[0], size=num_samples, replace=replacement, p=row / s)
    return Tensor._wrap(backend.to_device(out.reshape(p.shape[:-1] + (num_samples,)),
                                          backend.device_of(arr)))

__all__ = [
    "tensor",
    "as_tensor",
    "from_numpy",
    "zeros",
    "ones",
    "empty",
    "full",
    "zeros_like",
    "ones_like",
    "empty_like",
    "full_like",
    "rand_like",
    "randn_like",
    "arange",
    "linspace",
    "eye",
    "rand",
    "randn",
    "randint",
    "randperm",
    "multinomial",
]


# ----------------------------------------------------------------------------- typed constructors


class _TypedTensorMeta(type):
    def __instancecheck__(cls, obj):
        return isinstance(obj, Tensor) and obj._data.dtype == cls._tensor_dtype

    def __repr__(cls):
        return f"<class 'chainrule.{cls.__name__}'>"


def _typed_tensor(name, dtype_name):
    dtype = np.dtype(dtype_name)

    def __new__(cls, *args, device=None):
        """``FloatTensor(data)`` copies ``data`` into a tensor of this dtype;
        ``FloatTensor(2, 3)`` or ``FloatTensor(size)`` is an uninitialised (here: zero) tensor
        of that shape; ``FloatTensor()`` is empty."""
        if len(args) == 1 and not isinstance(args[0], (int, np.integer)):
            a = args[0]
            if isinstance(a, (tuple, list)) and a and all(
                    isinstance(s, (int, np.integer)) for s in a) and type(a).__name__ == "Size":
                return zeros(*a, dtype=dtype, device=device)
            return tensor(a, dtype=dtype, device=device)
        for s in args:
            if isinstance(s, bool) or not isinstance(s, (int, np.integer)):
                raise TypeError(f"{name}(): expected data or integer sizes, got {args!r}")
        return zeros(*args, dtype=dtype, device=device) if args else zeros(0, dtype=dtype,
                                                                             device=device)

    return _TypedTensorMeta(name, (), {"__new__": __new__, "_tensor_dtype": dtype,
                                       "dtype": dtype, "__doc__": __new__.__doc__})


FloatTensor = _typed_tensor("FloatTensor", "float32")
DoubleTensor = _typed_tensor("DoubleTensor", "float64")
HalfTensor = _typed_tensor("HalfTensor", "float16")
LongTensor = _typed_tensor("LongTensor", "int64")
IntTensor = _typed_tensor("IntTensor", "int32")
ShortTensor = _typed_tensor("ShortTensor", "int16")
CharTensor = _typed_tensor("CharTensor", "int8")
ByteTensor = _typed_tensor("ByteTensor", "uint8")
BoolTensor = _typed_tensor("BoolTensor", "bool")

TYPED_TENSORS = ("FloatTensor", "DoubleTensor", "HalfTensor", "LongTensor", "IntTensor",
                 "ShortTensor", "CharTensor", "ByteTensor", "BoolTensor")
