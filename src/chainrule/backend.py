"""The array-namespace seam.

Op code never imports NumPy directly: it asks this module for the namespace (``xp``) that
holds an array, so that ``device="cuda"`` is served by CuPy through the same op code. This is
the only file that imports CuPy, and the one that says whether the optional compiled float32
CPU kernels (``chainrule._native``) serve a given set of arrays (``native``).
"""

from __future__ import annotations

import contextlib
import os

import numpy

ndarray = numpy.ndarray
_cupy = None  # the cupy module once loaded; None while no CUDA array exists

try:  # the optional compiled float32 kernels (src/chainrule/_native.c)
    from . import _native
except ImportError:  # pragma: no cover - built wherever a C compiler was found at install
    _native = None
_native_on = _native is not None and os.environ.get("CHAINRULE_NATIVE", "1") != "0"
_float32 = numpy.dtype(numpy.float32)


def _load_cupy():
    global _cupy
    if _cupy is None:
        try:
            import cupy
        except ImportError as e:  # pragma: no cover - depends on the machine
            raise RuntimeError(
                "device 'cuda' needs CuPy and an NVIDIA GPU: pip install 'chainrule[cuda]'"
            ) from e
        _cupy = cupy
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
    """The array module for a device name: numpy for 'cpu', cupy for 'cuda'."""
    return numpy if device == "cpu" else _load_cupy()


def array_module(a):
    """The array module that holds ``a`` (numpy unless ``a`` is a CuPy array)."""
    if _cupy is not None and isinstance(a, _cupy.ndarray):
        return _cupy
    return numpy


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


def native(*arrays, contiguous=True):
    """The compiled CPU kernels (``chainrule._native``) when they are built and enabled and
    every array given is a float32 NumPy array (C-contiguous, unless ``contiguous=False``);
    otherwise None, and the caller runs its NumPy code. ``CHAINRULE_NATIVE=0`` in the
    environment disables them."""
    if not _native_on:
        return None
    for a in arrays:
        if type(a) is not ndarray or a.dtype != _float32 or (contiguous
                                                             and not a.flags.c_contiguous):
            return None
    return _native


def native_available() -> bool:
    """True when the compiled kernels were built at install time and are enabled."""
    return _native_on


@contextlib.contextmanager
def use_native(enabled: bool):
    """Within the block, use the compiled kernels (if built) or not; for comparing the two."""
    global _native_on
    before = _native_on
    _native_on = bool(enabled) and _native is not None
    try:
        yield
    finally:
        _native_on = before
