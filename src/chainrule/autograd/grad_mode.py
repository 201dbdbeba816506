"""Grad mode: whether ops record the graph, per thread (as in PyTorch)."""

from __future__ import annotations

import functools
import threading


class _ThreadState(threading.local):
    """Grad mode, per thread as in PyTorch (a no_grad() block in one thread does not stop
    another thread's recording)."""

    def __init__(self):
        self.grad_enabled = True


_state = _ThreadState()


def is_grad_enabled() -> bool:
    return _state.grad_enabled


class _GradMode:
    """Context manager and decorator that sets grad mode for its block.

    Usable as ``with no_grad():``, ``@no_grad()`` and, as in PyTorch, bare ``@no_grad``.
    """

    mode = True

    def __new__(cls, *args):
        self = super().__new__(cls)
        if args and callable(args[0]) and not isinstance(args[0], bool):
            return self(args[0])  # bare decorator: no_grad(fn)
        return self

    def __enter__(self):
        self._prev = _state.grad_enabled
        _state.grad_enabled = self.mode

    def __exit__(self, *exc):
        _state.grad_enabled = self._prev
        return False

    def __call__(self, fn):
        cls = self.__class__

        @functools.wraps(fn)
        def wrapper(*args, **kwargs):
            with cls():
                return fn(*args, **kwargs)

        return wrapper


class no_grad(_GradMode):
    """Record nothing inside the block: ops run on arrays and return tensors with no grad_fn."""

    mode = False


class enable_grad(_GradMode):
    """Turn recording back on inside a ``no_grad`` block."""

    mode = True


class set_grad_enabled(_GradMode):
    """``set_grad_enabled(False)`` acts as ``no_grad``; usable as a call, a block or a decorator."""

    def __init__(self, mode: bool):
        self.mode = bool(mode)
        self._prev = _state.grad_enabled
        _state.grad_enabled = self.mode  # takes effect at once, as torch.set_grad_enabled does

    def __enter__(self):
        pass

    def __call__(self, fn):
        _state.grad_enabled = self._prev
        mode = self.mode

        @functools.wraps(fn)
        def wrapper(*args, **kwargs):
            with set_grad_enabled(mode):
                return fn(*args, **kwargs)

        return wrapper


class inference_mode(_GradMode):
    """``with inference_mode():`` or ``@inference_mode()`` (also bare): records nothing in the
    block, as :class:`no_grad` (chainrule has no separate inference tensors, so this is
    no_grad). ``inference_mode(False)`` leaves grad mode as it is."""

    def __init__(self, mode: bool = True):
        self.enabled = bool(mode)

    def __enter__(self):
        self._prev = _state.grad_enabled
        self._prev_inference = getattr(_state, "inference", False)
        if self.enabled:
            _state.grad_enabled = False
            _state.inference = True

    def __exit__(self, *exc):
        _state.grad_enabled = self._prev
        _state.inference = self._prev_inference
        return False

    def __call__(self, fn):
        enabled = getattr(self, "enabled", True)  # bare @inference_mode: __init__ has not run

        @functools.wraps(fn)
        def wrapper(*args, **kwargs):
            with inference_mode(enabled):
                return fn(*args, **kwargs)

        return wrapper


def is_inference_mode_enabled() -> bool:
    """True inside an :class:`inference_mode` block."""
    return getattr(_state, "inference", False)
