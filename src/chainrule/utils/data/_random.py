"""Which random stream a sampler or split draws from."""

from __future__ import annotations

import numpy as np

from ... import random as _cr_random


def numpy_rng(generator, where: str) -> np.random.Generator:
    """The NumPy generator behind ``generator``: chainrule's default (global) one for None,
    a NumPy Generator as it is, or the ``.numpy`` generator of a :class:`chainrule.Generator`
    (any object with a NumPy Generator there)."""
    if generator is None:
        return _cr_random._rng()
    if isinstance(generator, np.random.Generator):
        return generator
    inner = getattr(generator, "numpy", None)
    if isinstance(inner, np.random.Generator):
        return inner
    raise TypeError(f"{where}: generator must be a chainrule.Generator, a NumPy Generator or "
                    f"None, got {type(generator).__name__}")


def draw_seed(generator, where: str) -> int:
    """One 63-bit seed drawn from ``generator`` (or the default generator)."""
    return int(numpy_rng(generator, where).integers(0, 2**63 - 1))
