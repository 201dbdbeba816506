"""The array-namespace seam.

Op code never imports NumPy: it calls the functions of its array namespace, ``self.xp`` in an
op (``Tensor.xp`` on a tensor), and this package says which namespace holds an array. Three
implement one interface:

- :mod:`chainrule.backend.numpy_ns` for NumPy arrays on the CPU, which also chooses the
  optional compiled float32 kernels (``chainrule._native``) wherever they apply;
- :mod:`chainrule.ops.tensor_ns` for Tensors: the same functions written with differentiable
  ops, which the engine hands a backward rule under ``create_graph=True`` so that the rule is
  itself recorded;
- :mod:`chainrule.backend.cupy_ns` for CuPy arrays (``device="cuda"``), loaded on first use.

The interface is the list :data:`API`: NumPy's own names for what NumPy has (``exp``,
``einsum``, ``zeros``, ``add.at``, ...), and named functions for what it lacks (``EXTENSIONS``:
scatter-adds, ``erf``) or does slowly (``KERNELS``: fused passes such as GELU, the softmax of
attention, layer norm, max pooling and the Adam step). An op that needs something new adds a
named function here, implemented in each namespace, never a ``hasattr(xp, ...)`` or an
``xp is numpy`` test inside the op. ``tests/test_architecture.py`` holds each namespace to the
list and keeps NumPy out of the op files.

This package is the only place that imports CuPy, and ``import chainrule`` never does.
"""

from __future__ import annotations

import numpy

from . import numpy_ns
from .compiled import _native as _native  # noqa: F401  (tests look at it)
from .compiled import native as native
from .compiled import native_available as native_available
from .compiled import use_native as use_native
from .numpy_ns import EXTENSIONS as EXTENSIONS
from .numpy_ns import KERNELS as KERNELS
from .numpy_ns import NUMPY_NAMES as NUMPY_NAMES

API = tuple(NUMPY_NAMES) + tuple(EXTENSIONS) + tuple(KERNELS)
"""Every name an array namespace provides (see the module docstring)."""

ndarray = numpy.ndarray
_cupy = None  # the cupy module once loaded; None while no CUDA array exists
_cupy_ns = None



def _load_cupy():
    global _cupy, _cupy_ns
    if _cupy is None:
        try:
            import cupy
        except ImportError as e:  # pragma: no cover - depends on the machine
            raise RuntimeError(
                "device 'cuda' needs CuPy and an NVIDIA GPU: pip install 'chainrule[cuda]'"
            ) from e
        from . import cupy_ns

        _cupy, _cupy_ns = cupy, cupy_ns
    return _cupy


def cuda_is_available() -> bool:
    """True when CuPy imports and sees at least one GPU."""
    try:
        cp = _load_cupy()
        return cp.cuda.runtime.getDeviceCount() > 0
    except Exception:
        return False


def normalize_device(device) -> str:
    if device is None:
        return "cpu"
    name = str(device)
    if name == "cpu":
        return "cpu"
    if name == "cuda" or name.startswith("cuda:"):
        return "cuda"
    raise ValueError(f"unknown device {device!r}: expected 'cpu' or 'cuda'")


def xp_for_device(device: str):
    """The array namespace of a device name: numpy_ns for 'cpu', cupy_ns for 'cuda'."""
    if device == "cpu":
        return numpy_ns
    _load_cupy()
    return _cupy_ns


def array_module(a):
    """The array namespace that holds ``a`` (numpy_ns unless ``a`` is a CuPy array)."""
    if _cupy is not None and isinstance(a, _cupy.ndarray):
        return _cupy_ns
    return numpy_ns


def device_of(a) -> str:
    return "cuda" if (_cupy is not None and isinstance(a, _cupy.ndarray)) else "cpu"


def to_device(a, device: str):
    """Move an array to ``device`` ('cpu' or 'cuda'); a no-op when it is there already."""
    if device == "cpu":
        if _cupy is not None and isinstance(a, _cupy.ndarray):
            return _cupy.asnumpy(a)
        return a
    cp = _load_cupy()
    return a if isinstance(a, cp.ndarray) else cp.asarray(a)


def to_numpy(a):
    """A NumPy array with ``a``'s values, wherever ``a`` lives."""
    if _cupy is not None and isinstance(a, _cupy.ndarray):
        return _cupy.asnumpy(a)
    return numpy.asarray(a)
