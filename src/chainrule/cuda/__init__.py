"""``torch.cuda``'s questions, answered honestly: ``is_available()`` is True only when CuPy
imports and sees a GPU (chainrule's device 'cuda'); without one, ``device_count()`` is 0, the
seeding functions seed chainrule's one generator (device random draws, such as dropout masks,
take their seeds from it), and ``synchronize``/``empty_cache`` do nothing. The memory
functions read CuPy's default memory pool. With the CPU stand-in on (tests:
``CHAINRULE_FAKE_CUDA=1``), they answer for it.
``chainrule.cuda.amp`` holds the mixed-precision names (see :mod:`chainrule.amp`)."""

from __future__ import annotations

from .. import backend as _backend
from .. import random as _random
from . import amp as amp


def is_available() -> bool:
    """True when a CUDA GPU is usable (CuPy imports and sees one)."""
    return _backend.cuda_is_available()


def _cuda():
    """The module of CUDA arrays (CuPy, or the CPU stand-in) once a GPU is usable."""
    return _backend._load_cupy()


def device_count() -> int:
    """The number of CUDA GPUs CuPy sees (0 without CuPy or a GPU)."""
    if not is_available():
        return 0
    if _backend.cuda_is_stand_in():
        return _cuda().device_count()
    return int(_cuda().cuda.runtime.getDeviceCount())


def is_initialized() -> bool:
    return is_available()


def current_device() -> int:
    """The index of the current GPU; a clear error without one."""
    _require("current_device")
    if _backend.cuda_is_stand_in():
        return 0
    return int(_cuda().cuda.runtime.getDevice())


def _index(device) -> int:
    if device is None:
        return current_device()
    if isinstance(device, int):
        return device
    return int(str(device).partition(":")[2] or 0)


def set_device(device) -> None:
    """Select a GPU by index or name ('cuda:1'); a clear error without one."""
    _require("set_device")
    idx = _index(device)
    if idx >= device_count() or idx < 0:
        raise RuntimeError(f"chainrule.cuda.set_device: no GPU {idx} (device_count() is "
                           f"{device_count()})")
    if not _backend.cuda_is_stand_in():
        _cuda().cuda.runtime.setDevice(idx)


def get_device_name(device=None) -> str:
    _require("get_device_name")
    if _backend.cuda_is_stand_in():
        return _cuda().device_name()
    name = _cuda().cuda.runtime.getDeviceProperties(_index(device))["name"]
    return name.decode() if isinstance(name, bytes) else str(name)


def is_bf16_supported(including_emulation: bool = True) -> bool:
    """False: chainrule's arrays (NumPy, CuPy) have no bfloat16 type."""
    return False


def synchronize(device=None) -> None:
    """Wait for the GPU's queued work (kernels run asynchronously: time a step only after
    this); nothing to wait for without a GPU."""
    if _backend._cupy is None or not is_available():
        return
    if _backend.cuda_is_stand_in():
        _cuda().synchronize()
    else:
        _cuda().cuda.Device().synchronize()


def _pool():
    return None if _backend._cupy is None else _backend._cupy.get_default_memory_pool()


_peak = 0  # the most bytes in use seen by memory_allocated / max_memory_allocated


def empty_cache() -> None:
    """Release the GPU memory CuPy's pool keeps cached for reuse; nothing without a GPU."""
    pool = _pool()
    if pool is not None:
        pool.free_all_blocks()


def memory_allocated(device=None) -> int:
    """Bytes of GPU memory in use by arrays (CuPy's pool: ``used_bytes``); 0 without a GPU."""
    global _peak
    pool = _pool()
    if pool is None:
        return 0
    used = int(pool.used_bytes())
    _peak = max(_peak, used)
    return used


def memory_reserved(device=None) -> int:
    """Bytes of GPU memory held by CuPy's pool, in use or cached (``total_bytes``)."""
    pool = _pool()
    return 0 if pool is None else int(pool.total_bytes())


def max_memory_allocated(device=None) -> int:
    """The peak of GPU memory in use since the start or :func:`reset_peak_memory_stats`: the
    pool's size, its high-water mark (CuPy keeps freed blocks cached, so the pool only grows
    until the cache is emptied), or the most in use seen, whichever is larger."""
    return max(memory_allocated(device), memory_reserved(device), _peak)


def max_memory_reserved(device=None) -> int:
    return max_memory_allocated(device)


def reset_peak_memory_stats(device=None) -> None:
    """Start the peak over from now: empties the pool's cache (so its size is the memory in
    use) and forgets the peak seen."""
    global _peak
    empty_cache()
    _peak = 0
    memory_allocated(device)


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
           "memory_allocated", "max_memory_allocated", "memory_reserved", "max_memory_reserved",
           "reset_peak_memory_stats", "manual_seed", "manual_seed_all", "seed", "seed_all",
           "amp"]
