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
attention, layer norm, max pooling and the Adam step), and the random draws made where the
arrays live (``RANDOM``: dropout masks). An op that needs something new adds a
named function here, implemented in each namespace, never a ``hasattr(xp, ...)`` or an
``xp is numpy`` test inside the op. ``tests/test_architecture.py`` holds each namespace to the
list and keeps NumPy out of the op files.

This package is the only place that imports CuPy, and ``import chainrule`` never does.
"""

from __future__ import annotations

import contextlib
import os

import numpy

from . import numpy_ns
from .compiled import _native as _native  # noqa: F401  (tests look at it)
from .compiled import get_num_threads as get_num_threads
from .compiled import native as native
from .compiled import native_available as native_available
from .compiled import set_num_threads as set_num_threads
from .compiled import use_native as use_native
from .numpy_ns import EXTENSIONS as EXTENSIONS
from .numpy_ns import KERNELS as KERNELS
from .numpy_ns import NUMPY_NAMES as NUMPY_NAMES
from .numpy_ns import RANDOM as RANDOM

API = tuple(NUMPY_NAMES) + tuple(EXTENSIONS) + tuple(KERNELS) + tuple(RANDOM)
"""Every name an array namespace provides (see the module docstring)."""

ndarray = numpy.ndarray
_cupy = None  # the module of CUDA arrays once loaded (cupy, or the stand-in); None before
_cupy_ns = None
_fake = None  # fake_cuda()'s choice; None: the environment's (CHAINRULE_FAKE_CUDA=1)


def _stand_in_wanted() -> bool:
    return _fake if _fake is not None else os.environ.get("CHAINRULE_FAKE_CUDA") == "1"


def _load_cupy():
    """The module of CUDA arrays, loaded on first use: CuPy, or the CPU stand-in
    (:mod:`chainrule.backend.strict_ns`) where ``CHAINRULE_FAKE_CUDA=1`` or inside
    :func:`fake_cuda`."""
    global _cupy, _cupy_ns
    if _cupy is None:
        if _stand_in_wanted():
            from . import strict_ns

            _cupy = _cupy_ns = strict_ns
            return _cupy
        try:
            import cupy
        except ImportError as e:  # pragma: no cover - depends on the machine
            raise RuntimeError(
                "device 'cuda' needs CuPy and an NVIDIA GPU: pip install 'chainrule[cuda12]' "
                "(or 'chainrule[cuda13]' for CUDA 13)"
            ) from e
        from . import cupy_ns

        _cupy, _cupy_ns = cupy, cupy_ns
    return _cupy


def cuda_is_stand_in() -> bool:
    """True when device 'cuda' is the CPU stand-in (tests only; see :func:`fake_cuda`)."""
    return _cupy is not None and _cupy is _cupy_ns


@contextlib.contextmanager
def fake_cuda(enabled: bool = True):
    """Within the block, device 'cuda' is the CPU stand-in (:mod:`.strict_ns`: arrays that
    refuse implicit host conversion, as CuPy's do, computed by NumPy), or with
    ``enabled=False`` the real one; for tests. Arrays made inside belong to the block."""
    global _cupy, _cupy_ns, _fake
    before = _cupy, _cupy_ns, _fake
    _cupy = _cupy_ns = None
    _fake = bool(enabled)
    try:
        if enabled:
            _load_cupy()
        yield
    finally:
        _cupy, _cupy_ns, _fake = before


def cuda_is_available() -> bool:
    """True when CuPy imports and sees at least one GPU (or the stand-in is on)."""
    try:
        cp = _load_cupy()
        if cp is _cupy_ns:
            return True
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


def common_module(arrays, name: str):
    """The namespace of an op's array inputs, which must sit on one device: a RuntimeError
    naming the op ``name`` and the two devices otherwise (scalars go anywhere)."""
    dev = first = None
    for i, a in enumerate(arrays):
        if isinstance(a, _cupy.ndarray):
            d = "cuda"
        elif isinstance(a, numpy.ndarray):
            d = "cpu"
        else:
            continue
        if dev is None:
            dev, first = d, i
        elif d != dev:
            raise RuntimeError(
                f"{name}: expected all tensors on one device, but input {first} is on {dev} "
                f"and input {i} on {d}; move them with .to('{dev}') (or .to('{d}'))")
    return _cupy_ns if dev == "cuda" else numpy_ns


def is_device_array(a) -> bool:
    """True for an array of device 'cuda' (a CuPy array, or the stand-in's)."""
    return _cupy is not None and isinstance(a, _cupy.ndarray)


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
