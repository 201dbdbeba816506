"""``torch.cuda``'s questions, answered honestly: ``is_available()`` is True only when CuPy
imports and sees a GPU (chainrule's device 'cuda'); without one, ``device_count()`` is 0, the
seeding functions seed chainrule's one generator, and ``synchronize``/``empty_cache`` do nothing.
``chainrule.cuda.amp`` holds the mixed-precision names (see :mod:`chainrule.amp`)."""

from __future__ import annotations

from .. import backend as _backend
from .. import random as _random
from . import amp as amp


def is_available() -> bool:
    """True when a CUDA GPU is usable (CuPy imports and sees one)."""
    return _backend.cuda_is_available()


def device_count() -> int:
    """The number of CUDA GPUs CuPy sees (0 without CuPy or a GPU)."""
    if not is_available():
        return 0
    return int(_backend._load_cupy().cuda.runtime.getDeviceCount())


def is_initialized() -> bool:
    return is_available()


def current_device() -> int:
    """The index of the current GPU; a clear error without one."""
    _require("current_device")
    return int(_backend._load_cupy().cuda.runtime.getDevice())


def set_device(device) -> None:
    """Select a GPU by index or name ('cuda:1'); a clear error without one."""
    _require("set_device")
    idx = device if isinstance(device, int) else int(str(device).partition(":")[2] or 0)
    _backend._load_cupy().cuda.runtime.setDevice(idx)


def get_device_name(device=None) -> str:
    _require("get_device_name")
    cp = _backend._load_cupy()
    idx = 0 if device is None else device if isinstance(device, int) else int(
        str(device).partition(":")[2] or 0)
    name = cp.cuda.runtime.getDeviceProperties(idx)["name"]
    return name.decode() if isinstance(name, bytes) else str(name)


def is_bf16_supported(including_emulation: bool = True) -> bool:
    """False: chainrule's arrays (NumPy, CuPy) have no bfloat16 type."""
    return False


def synchronize(device=None) -> None:
    """Wait for the GPU's queued work; nothing to wait for without a GPU."""
    if _backend._cupy is not None and is_available():
        _backend._cupy.cuda.Device().synchronize()


def empty_cache() -> None:
    """Release CuPy's cached GPU memory; nothing to release without a GPU."""
    if _backend._cupy is not None:
        _backend._cupy.get_default_memory_pool().free_all_blocks()


def memory_allocated(device=None) -> int:
    """Bytes of GPU memory in use by arrays (0 without a GPU)."""
    if _backend._cupy is None:
        return 0
    return int(_backend._cupy.get_default_memory_pool().used_bytes())


def max_memory_allocated(device=None) -> int:
    return memory_allocated(device)


def manual_seed(seed: int) -> None:
    """Seed the generator: chainrule has one generator for every device, so this is
    :func:`chainrule.manual_seed` (as in PyTorch, it does not fail without a GPU)."""
    _random.manual_seed(seed)


def manual_seed_all(seed: int) -> None:
    """Same as :func:`manual_seed` (one generator for every device)."""
    _random.manual_seed(seed)


def seed() -> None:
    _random.seed()


def seed_all() -> None:
    _random.seed()


def _require(name):
    if not is_available():
        raise RuntimeError(f"chainrule.cuda.{name}: no CUDA GPU is available (CuPy with an "
                           "NVIDIA GPU is needed; chainrule.cuda.is_available() is False)")


__all__ = ["is_available", "device_count", "is_initialized", "current_device", "set_device",
           "get_device_name", "is_bf16_supported", "synchronize", "empty_cache",
           "memory_allocated", "max_memory_allocated", "manual_seed", "manual_seed_all",
           "seed", "seed_all", "amp"]
