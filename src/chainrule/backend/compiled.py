"""The switch for the optional compiled float32 CPU kernels (``chainrule._native``, built from
``src/chainrule/_native.c`` where a C compiler was found at install). Only the NumPy
namespace's kernel functions ask it; op code never does."""

from __future__ import annotations

import contextlib
import os

import numpy

try:
    from .. import _native
except ImportError:  # pragma: no cover - built wherever a C compiler was found at install
    _native = None
_native_on = _native is not None and os.environ.get("CHAINRULE_NATIVE", "1") != "0"
_float32 = numpy.dtype(numpy.float32)
_ndarray = numpy.ndarray


def native(*arrays, contiguous=True):
    """The compiled kernels when they are built and enabled and every array given is a float32
    NumPy array (C-contiguous, unless ``contiguous=False``); otherwise None, and the caller
    runs its NumPy code. ``CHAINRULE_NATIVE=0`` in the environment disables them."""
    if not _native_on:
        return None
    for a in arrays:
        if type(a) is not _ndarray or a.dtype != _float32 or (contiguous
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
