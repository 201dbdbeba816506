"""Which functions of the op library are also Tensor methods.

An op function declares itself a method where it is defined::

    @tensor_method()                 # x.sum(...) is sum(x, ...)
    def sum(x, dim=None, ...): ...

    @tensor_method("clamp", "clip")  # under these names
    def clamp(x, min=None, max=None): ...

so ``x.sum`` *is* ``chainrule.sum`` (the same function object, the tensor passed first). Methods
with no free function of their own (``view_as``, ``type_as``...) are declared the same way on a
private function. :mod:`chainrule.tensor` attaches every declared method to ``Tensor`` once the
op library is loaded (:func:`attach`).
"""

from __future__ import annotations

METHODS: dict = {}
"""Method name -> function, in the order declared."""


def tensor_method(*names):
    """Declare the decorated function a Tensor method, under its own name or ``names``."""

    def declare(fn):
        for name in names or (fn.__name__,):
            if METHODS.get(name, fn) is not fn:
                raise ValueError(f"Tensor method {name!r} is declared twice: "
                                 f"{METHODS[name].__module__} and {fn.__module__}")
            METHODS[name] = fn
        return fn

    return declare


def attach(cls):
    """Set every declared method on ``cls`` (the Tensor class)."""
    for name, fn in METHODS.items():
        setattr(cls, name, fn)
