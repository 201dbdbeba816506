"""``torch.accelerator``: the accelerator chainrule can use, which is CUDA when a GPU and CuPy
are present (device 'cuda') and none otherwise."""

from __future__ import annotations

from . import backend as _backend
from .tensor import Device as _Device


def is_available() -> bool:
    """True when a CUDA GPU is usable."""
    return _backend.cuda_is_available()


def current_accelerator(check_available: bool = False):
    """``device(type='cuda')`` when a GPU is usable, else None (as PyTorch on a CPU-only
    machine)."""
    return _Device("cuda") if is_available() else None


def device_count() -> int:
    if not is_available():
        return 0
    return int(_backend._load_cupy().cuda.runtime.getDeviceCount())


def synchronize(device=None) -> None:
    if _backend._cupy is not None and is_available():
        _backend._cupy.cuda.Device().synchronize()


__all__ = ["is_available", "current_accelerator", "device_count", "synchronize"]
