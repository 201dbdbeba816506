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


def _default_threads() -> int:
    for var in ("CHAINRULE_NUM_THREADS", "OMP_NUM_THREADS"):
        v = os.environ.get(var, "")
        if v.strip().isdigit() and int(v) > 0:
            return int(v)
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)


_threads = _default_threads()
if _native is not None and hasattr(_native, "set_num_threads"):
    _native.set_num_threads(_threads)


def set_num_threads(n: int) -> None:
    """The threads chainrule's compiled kernels split large arrays across (PyTorch's
    ``torch.set_num_threads``; the default is ``CHAINRULE_NUM_THREADS`` or ``OMP_NUM_THREADS``,
    else the cores this process may run on). NumPy's BLAS keeps its own threads
    (``OPENBLAS_NUM_THREADS``, read when NumPy is imported)."""
    global _threads
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"set_num_threads: expected a positive int, got {n!r}")
    _threads = n
    if _native is not None and hasattr(_native, "set_num_threads"):
        _native.set_num_threads(n)


def get_num_threads() -> int:
    """The threads set by :func:`set_num_threads` (PyTorch's ``torch.get_num_threads``)."""
    return _threads


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
