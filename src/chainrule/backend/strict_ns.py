"""A CPU stand-in for the CUDA device, for tests: arrays that behave like CuPy's where a
host/device mix-up would show, computed by NumPy.

With ``CHAINRULE_FAKE_CUDA=1`` in the environment (or inside ``backend.fake_cuda()``), device
``'cuda'`` is this stand-in instead of CuPy. Its arrays (:class:`ndarray`) wrap NumPy arrays
and refuse what a CuPy array refuses:

- implicit conversion to NumPy (``numpy.asarray(a)``, ``numpy.exp(a)``, any NumPy function
  called on it) raises TypeError, as CuPy's ``__array__`` does;
- an operator or namespace function mixing it with a NumPy array (a host array) raises
  TypeError, as CuPy does;
- reductions and element reads give 0-d device arrays, not NumPy scalars (as CuPy's do);
- pickling raises: a checkpoint moves arrays to the host explicitly.

What is allowed is what PyTorch allows on a CUDA tensor: ``float(a)``, ``int(a)``,
``bool(a)``, ``a.item()``, ``a.tolist()``, printing, and the backend's explicit
``to_numpy``/``to_device``. The namespace (this module) provides the whole interface
(``chainrule.backend.API``): NumPy's names as wrappers that unwrap the arguments, call NumPy and
wrap the results; the extensions likewise; and the kernels as their NumPy code bound to this
namespace (``numpy_kernels.bind``), which is the code the CuPy namespace runs where it has no
fused kernel of its own. So a training step on the stand-in runs the same Python code as on a
GPU, and its values equal the CPU's.
"""

from __future__ import annotations

import builtins as _builtins
import sys
import weakref

import numpy

from . import numpy_kernels, numpy_ns

_MSG = ("Implicit conversion to a NumPy array is not allowed (a device array): move it to the "
        "host explicitly (chainrule.backend.to_numpy, Tensor.cpu() or .numpy())")
_SCALARS = (int, float, bool, complex, numpy.generic)
_live: weakref.WeakValueDictionary = weakref.WeakValueDictionary()  # id(numpy array) -> wrapper


def _host_error(where):
    return TypeError(f"{where}: got a NumPy (host) array where a device array is needed "
                     "(CuPy refuses to mix them); move it with chainrule.backend.to_device or "
                     "create it with the array namespace (xp.asarray, xp.zeros, ...)")


def _wrap(r):
    """NumPy results as device arrays (NumPy scalars as 0-d arrays, as CuPy returns them); one
    wrapper per NumPy array, so ``xp.asarray(a) is a`` and ``view.base is a`` hold."""
    t = type(r)
    if t is numpy.ndarray:
        w = _live.get(id(r))
        if w is not None and w._a is r:
            return w
        w = object.__new__(ndarray)
        w._a = r
        _live[id(r)] = w
        return w
    if isinstance(r, numpy.generic):
        return _wrap(numpy.asarray(r))
    if t is tuple or t is list:
        return t(_wrap(v) for v in r)
    return r


def _unwrap(x, where, host_ok=False):
    t = type(x)
    if t is ndarray:
        return x._a
    if t is numpy.ndarray:
        if host_ok:
            return x
        raise _host_error(where)
    if t is tuple or t is list:
        return t(_unwrap(v, where, host_ok) for v in x)
    if t is dict:
        return {k: _unwrap(v, where, host_ok) for k, v in x.items()}
    if t is slice and any(type(s) is ndarray for s in (x.start, x.stop, x.step)):
        return slice(*(_unwrap(s, where) for s in (x.start, x.stop, x.step)))
    return x


def _index(k):
    """An index for a device array: device arrays unwrapped; NumPy index arrays and lists are
    accepted (CuPy copies them to the device)."""
    return _unwrap(k, "indexing", host_ok=True)


def _operand(x, op):
    t = type(x)
    if t is ndarray:
        return x._a
    if t is numpy.ndarray:
        raise TypeError(f"operator {op}: a device array and a NumPy (host) array of shape "
                        f"{x.shape}; move one of them (chainrule.backend.to_device / to_numpy)")
    if isinstance(x, _SCALARS):
        return x
    return NotImplemented


class ndarray:
    """A device array of the stand-in: a NumPy array behind CuPy's rules (see the module)."""

    __slots__ = ("_a", "__weakref__")
    __array_ufunc__ = None  # numpy scalars defer to our reflected operators; ufuncs refuse
    __hash__ = None

    def __new__(cls, *args, **kwargs):
        raise TypeError("the stand-in's arrays are made by its namespace functions "
                        "(xp.asarray, xp.zeros, ...)")

    def __array__(self, dtype=None, copy=None):
        raise TypeError(_MSG)

    def __array_function__(self, func, types, args, kwargs):
        raise TypeError(f"numpy.{func.__name__} was called on a device array: call it through "
                        f"the array namespace (xp.{func.__name__}) or move the array to the "
                        "host explicitly")

    def __reduce_ex__(self, protocol):
        raise TypeError("a device array is not pickled implicitly: move it to the host first "
                        "(chainrule.backend.to_numpy)")

    # -- attributes ----------------------------------------------------------------------
    shape = property(lambda self: self._a.shape)
    dtype = property(lambda self: self._a.dtype)
    ndim = property(lambda self: self._a.ndim)
    size = property(lambda self: self._a.size)
    itemsize = property(lambda self: self._a.itemsize)
    nbytes = property(lambda self: self._a.nbytes)
    strides = property(lambda self: self._a.strides)
    flags = property(lambda self: self._a.flags)
    T = property(lambda self: _wrap(self._a.T))
    mT = property(lambda self: _wrap(self._a.mT))
    real = property(lambda self: _wrap(self._a.real))
    imag = property(lambda self: _wrap(self._a.imag))
    base = property(lambda self: _wrap(self._a.base))

    _HOST_ONLY = frozenset(("tobytes", "tofile", "ctypes", "data", "dump", "dumps",
                            "__array_interface__", "__array_struct__", "resize", "setflags"))

    def __getattr__(self, name):
        if name in ndarray._HOST_ONLY or name.startswith("__"):
            raise AttributeError(f"the device array has no {name!r} (a host-memory attribute)")
        attr = getattr(self._a, name)
        if not callable(attr):
            return _wrap(attr)

        def method(*args, **kwargs):
            where = f"ndarray.{name}"
            return _wrap(attr(*_unwrap(args, where), **_unwrap(kwargs, where)))

        method.__name__ = name
        return method

    # -- explicit host conversions (allowed, as torch allows them) ------------------------
    def item(self, *args):
        return self._a.item(*args)

    def tolist(self):
        return self._a.tolist()

    def __float__(self):
        return float(self._a)

    def __int__(self):
        return int(self._a)

    def __index__(self):
        return self._a.__index__()

    def __bool__(self):
        return bool(self._a)

    def __complex__(self):
        return complex(self._a)

    def __len__(self):
        return len(self._a)

    def __iter__(self):
        for row in self._a:
            yield _wrap(row)

    def __repr__(self):
        return repr(self._a)

    def __str__(self):
        return str(self._a)

    def __format__(self, spec):
        return format(self._a.item() if self._a.ndim == 0 else self._a, spec)

    def __copy__(self):
        return _wrap(self._a.copy())

    def __deepcopy__(self, memo):
        return _wrap(self._a.copy())

    # -- indexing --------------------------------------------------------------------------
    def __getitem__(self, key):
        return _wrap(self._a[_index(key)])

    def __setitem__(self, key, value):
        self._a[_index(key)] = _unwrap(value, "ndarray.__setitem__")


def _binary(name):
    op = getattr(numpy.ndarray, name)

    def f(self, other):
        o = _operand(other, name)
        if o is NotImplemented:
            return NotImplemented
        r = op(self._a, o)
        return NotImplemented if r is NotImplemented else _wrap(r)

    f.__name__ = name
    return f


def _inplace(name):
    op = getattr(numpy.ndarray, name)

    def f(self, other):
        o = _operand(other, name)
        if o is NotImplemented:
            return NotImplemented
        op(self._a, o)
        return self

    f.__name__ = name
    return f


def _unary(name):
    op = getattr(numpy.ndarray, name)

    def f(self):
        return _wrap(op(self._a))

    f.__name__ = name
    return f


for _n in ("add", "sub", "mul", "truediv", "floordiv", "mod", "pow", "matmul", "and", "or",
           "xor", "lshift", "rshift"):
    setattr(ndarray, f"__{_n}__", _binary(f"__{_n}__"))
    setattr(ndarray, f"__r{_n}__", _binary(f"__r{_n}__"))
    setattr(ndarray, f"__i{_n}__", _inplace(f"__i{_n}__"))
for _n in ("lt", "le", "gt", "ge", "eq", "ne"):
    setattr(ndarray, f"__{_n}__", _binary(f"__{_n}__"))
for _n in ("neg", "pos", "abs", "invert"):
    setattr(ndarray, f"__{_n}__", _unary(f"__{_n}__"))


# ----------------------------------------------------------------------------- the namespace


class _Ufunc:
    """A NumPy ufunc on device arrays: calls and ``at``/``reduce``/``reduceat``/``outer``/
    ``accumulate``, with ``out=`` given back as the device array passed."""

    def __init__(self, uf):
        self._uf = uf
        self.__name__ = uf.__name__
        self.nin, self.nout = uf.nin, uf.nout

    def __repr__(self):
        return f"<stand-in ufunc {self.__name__!r}>"

    def _run(self, fn, where, args, kwargs):
        out = kwargs.get("out")
        r = fn(*_unwrap(args, where), **_unwrap(kwargs, where))
        if out is not None:
            return out[0] if type(out) is tuple and len(out) == 1 else out
        return _wrap(r)

    def __call__(self, *args, **kwargs):
        return self._run(self._uf, f"xp.{self.__name__}", args, kwargs)

    def at(self, a, indices, b=None):
        self._uf.at(_unwrap(a, f"xp.{self.__name__}.at"), _index(indices),
                    *(() if b is None else (_unwrap(b, f"xp.{self.__name__}.at"),)))

    def reduce(self, *args, **kwargs):
        return self._run(self._uf.reduce, f"xp.{self.__name__}.reduce", args, kwargs)

    def reduceat(self, *args, **kwargs):
        return self._run(self._uf.reduceat, f"xp.{self.__name__}.reduceat", args, kwargs)

    def outer(self, *args, **kwargs):
        return self._run(self._uf.outer, f"xp.{self.__name__}.outer", args, kwargs)

    def accumulate(self, *args, **kwargs):
        return self._run(self._uf.accumulate, f"xp.{self.__name__}.accumulate", args, kwargs)


# functions whose results are not arrays (dtypes, booleans, shapes): given back unchanged
_PLAIN_RESULT = frozenset(("can_cast", "promote_types", "result_type", "broadcast_shapes",
                           "may_share_memory", "shares_memory", "is_basic_index"))
# functions that take a host array on purpose: a copy onto the device (as cupy.asarray)
_TAKES_HOST = frozenset(("asarray", "array"))


def _function(name, fn):
    where = f"xp.{name}"
    plain = name in _PLAIN_RESULT
    host_ok = name in _TAKES_HOST

    def f(*args, **kwargs):
        out = kwargs.get("out")
        r = fn(*_unwrap(args, where, host_ok), **_unwrap(kwargs, where))
        if out is not None:
            return out
        if plain:
            return r
        if host_ok and type(r) is numpy.ndarray and args and r is args[0]:
            r = r.copy()  # a host array given: the device array is a copy, never a view
        return _wrap(r)

    f.__name__ = name
    f.__doc__ = f"numpy_ns.{name} on device arrays."
    return f


def _build():
    from . import API  # the package is loaded before this module (imported on first use)

    ns = {}
    kernels = set(numpy_kernels.__all__)
    for name in API:
        if name in kernels:
            continue
        obj = getattr(numpy_ns, name)
        if name == "ndarray":
            ns[name] = ndarray
        elif isinstance(obj, numpy.ufunc):
            ns[name] = _Ufunc(obj)
        elif isinstance(obj, type) or not callable(obj):
            ns[name] = obj  # dtypes, finfo/iinfo, errstate, generic, constants
        else:
            ns[name] = _function(name, obj)
    return ns


globals().update(_build())
# the NumPy code of each kernel, bound to this namespace: what the CuPy namespace runs too
globals().update(numpy_kernels.bind(sys.modules[__name__]))

# ----------------------------------------------------------------------------- the device


def asnumpy(a):
    """The explicit device-to-host copy (``cupy.asnumpy``)."""
    if type(a) is ndarray:
        return a._a.copy()
    return numpy.asarray(a)


def to_device(a):
    """The explicit host-to-device copy of a NumPy array (or anything array-like)."""
    if type(a) is ndarray:
        return a
    return _wrap(numpy.array(a, copy=True))


def device_count():
    return 1


def device_name():
    return "chainrule CPU stand-in (CHAINRULE_FAKE_CUDA)"


class MemoryPool:
    """The CuPy memory-pool questions for the stand-in: bytes held by live device arrays that
    own their memory (no caching: used and total are the same)."""

    def used_bytes(self):
        return int(_builtins.sum(w._a.nbytes for w in list(_live.values())
                                 if w._a.base is None))

    def total_bytes(self):
        return self.used_bytes()

    def free_all_blocks(self):
        return None


_pool = MemoryPool()


def get_default_memory_pool():
    return _pool


def synchronize():
    return None
