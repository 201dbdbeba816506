"""Automatic mixed precision names (``torch.amp``): ``autocast`` and ``GradScaler``.

chainrule runs every op in the dtype of its inputs and has no autocasting, so mixed-precision
code written for PyTorch runs here in full precision:

- :class:`autocast` accepts PyTorch's arguments and is a context manager and decorator that
  changes nothing (ops keep their inputs' dtype). ``autocast(dtype=chainrule.bfloat16)`` is
  accepted too: the block runs in float32, as it would with ``enabled=False``.
- :class:`GradScaler` is disabled, as PyTorch's is when it cannot scale: ``scale(loss)``
  returns the loss itself, ``step(optimizer)`` calls ``optimizer.step()``, ``unscale_`` and
  ``update`` do nothing, ``get_scale()`` is 1.0 and ``is_enabled()`` is False. Without float16
  activations there is no underflow to guard against, so the loop is exact as written.

To train in lower precision, convert the model and inputs explicitly (``model.half()``).
"""

from __future__ import annotations

import functools

_DEVICE_TYPES = ("cpu", "cuda", "mps", "xpu", "meta")


class autocast:
    """``with autocast(device_type='cuda', dtype=torch.float16):`` or ``@autocast(...)``: runs
    the block unchanged (chainrule has no autocasting; see the module's note)."""

    def __init__(self, device_type="cuda", dtype=None, enabled=True, cache_enabled=None):
        if not isinstance(device_type, str) or device_type.split(":")[0] not in _DEVICE_TYPES:
            raise ValueError(f"autocast: device_type must be one of {', '.join(_DEVICE_TYPES)}, "
                             f"got {device_type!r}")
        self.device_type, self.fast_dtype = device_type, dtype
        self.enabled = bool(enabled)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def __call__(self, fn):
        @functools.wraps(fn)
        def wrapper(*args, **kwargs):
            with self:
                return fn(*args, **kwargs)

        return wrapper


def is_autocast_available(device_type: str) -> bool:
    """False: chainrule has no autocasting (``autocast`` blocks run unchanged)."""
    return False


class GradScaler:
    """PyTorch's gradient scaler, always disabled here (see the module's note): ``scale``
    returns its argument, ``step`` calls ``optimizer.step()``, the rest do nothing."""

    def __init__(self, device="cuda", init_scale=2.0**16, growth_factor=2.0, backoff_factor=0.5,
                 growth_interval=2000, enabled=True):
        self._requested = bool(enabled)

    def scale(self, outputs):
        return outputs

    def unscale_(self, optimizer):
        return None

    def step(self, optimizer, *args, **kwargs):
        return optimizer.step(*args, **kwargs)

    def update(self, new_scale=None):
        return None

    def get_scale(self) -> float:
        return 1.0

    def is_enabled(self) -> bool:
        return False

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state_dict) -> None:
        if not isinstance(state_dict, dict):
            raise TypeError(f"GradScaler.load_state_dict: expected a dict, got "
                            f"{type(state_dict).__name__}")


__all__ = ["autocast", "GradScaler", "is_autocast_available"]
