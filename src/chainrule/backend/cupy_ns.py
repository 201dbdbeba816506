"""The CuPy array namespace (``device="cuda"``): the names of
:mod:`chainrule.backend.numpy_ns`, taken from CuPy, with the extensions written for CuPy arrays
and each kernel in the NumPy-code form it has on the CPU. Imported only once a CUDA array
exists (``chainrule.backend._load_cupy``)."""

from __future__ import annotations

import sys

import cupy
import cupyx

from . import numpy_kernels, numpy_ns

_missing = []
for _name in numpy_ns.NUMPY_NAMES:
    if hasattr(cupy, _name):
        globals()[_name] = getattr(cupy, _name)
    else:  # pragma: no cover - depends on the CuPy version
        _missing.append(_name)
if "errstate" in _missing:  # CuPy does not trap floating-point errors: a no-op context
    errstate = numpy_ns.errstate
sliding_window_view = cupy.lib.stride_tricks.sliding_window_view
is_basic_index = numpy_ns.is_basic_index


def erf(x):
    import cupyx.scipy.special

    return cupyx.scipy.special.erf(x)


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
    cupy.put_along_axis(out, idx, g, axis=dim)
    return out


# the NumPy-code form of each kernel, bound to this namespace, runs on CuPy arrays
globals().update(numpy_kernels.bind(sys.modules[__name__]))
