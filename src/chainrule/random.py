"""Random numbers: one seeded default generator for everything random in chainrule (init,
dropout, sampling, rand*), so a run started with ``manual_seed(s)`` is reproducible bit for bit
(a process that never seeds starts from a fresh seed from ``os.urandom``, as PyTorch does);
and :class:`Generator` objects for streams of their own (PyTorch's ``torch.Generator``).

A :class:`Generator` can stand in wherever chainrule takes a NumPy generator (``generator=`` of
the creation functions and of ``generate``, the ``rng`` of ``TokenData.batch``), and
:func:`use_generator` makes one the default for a block of code, so that the layers that draw
from the default generator (initialisation, dropout) draw from it instead."""

from __future__ import annotations

import contextlib
import os

import numpy as np

# an unseeded process draws a fresh seed (as PyTorch's does); manual_seed(s) makes it repeatable
_initial_seed = int.from_bytes(os.urandom(8), "little")
_generator = np.random.default_rng(_initial_seed)


def manual_seed(seed: int):
    """Reset the global generator to ``seed``; returns it."""
    global _generator, _initial_seed
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        try:
            seed = int(seed)
        except (TypeError, ValueError):
            raise TypeError(f"manual_seed: expected an integer seed, got {seed!r}") from None
    _initial_seed = int(seed)
    _generator = np.random.default_rng(_initial_seed)
    return _generator


def seed(value=None) -> int:
    """Seed the global generator from a fresh non-deterministic 64-bit number (as
    ``torch.seed()``) and return that number; ``seed(s)`` is ``manual_seed(s)``."""
    if value is None:
        value = int(np.random.SeedSequence().generate_state(1, np.uint64)[0])
    manual_seed(value)
    return int(value)


def initial_seed() -> int:
    """The seed the global generator was last started from (as ``torch.initial_seed()``)."""
    return _initial_seed


def _rng() -> np.random.Generator:
    return _generator


def get_rng_state() -> dict:
    """The generator's state, as a JSON-serialisable dict (for checkpoints)."""
    return _generator.bit_generator.state


def set_rng_state(state: dict) -> None:
    _generator.bit_generator.state = state


class Generator:
    """A random stream of its own, with ``torch.Generator``'s methods, over NumPy's PCG64.

    ``Generator().manual_seed(s)`` draws exactly what ``manual_seed(s)`` makes the default
    generator draw. The state is the JSON-serialisable dict of NumPy's bit generator, so it
    goes into a checkpoint as it is. NumPy's drawing methods (``integers``, ``random``,
    ``normal``...) are available on the generator itself."""

    default_seed = 67280421310721  # torch.Generator's

    def __init__(self, device: str = "cpu"):
        if device != "cpu":
            raise ValueError(f"Generator: device must be 'cpu' (a NumPy generator), got "
                             f"{device!r}")
        self.device = device
        self.manual_seed(self.default_seed)

    def manual_seed(self, seed: int) -> Generator:
        """Restart the stream from ``seed`` (a non-negative integer); returns self."""
        if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
            raise ValueError(f"Generator.manual_seed: seed must be a non-negative integer, got "
                             f"{seed!r}")
        self._initial_seed = int(seed)
        self._np = np.random.default_rng(self._initial_seed)
        return self

    def seed(self) -> int:
        """Restart the stream from a fresh non-deterministic 64-bit seed; returns the seed."""
        s = int(np.random.SeedSequence().generate_state(1, np.uint64)[0])
        self.manual_seed(s)
        return s

    def initial_seed(self) -> int:
        """The seed the stream was last started from."""
        return self._initial_seed

    def get_state(self) -> dict:
        """The stream's position, a JSON-serialisable dict (NumPy's bit-generator state)."""
        return self._np.bit_generator.state

    def set_state(self, state: dict) -> Generator:
        """Continue from a state returned by :meth:`get_state`; returns self."""
        name = type(self._np.bit_generator).__name__
        if not isinstance(state, dict) or state.get("bit_generator") != name:
            got = state.get("bit_generator") if isinstance(state, dict) else type(state).__name__
            raise ValueError(f"Generator.set_state: expected the state of a {name} bit "
                             f"generator (a dict from get_state()), got {got!r}")
        self._np.bit_generator.state = state
        return self

    @property
    def numpy(self) -> np.random.Generator:
        """The NumPy generator that draws the numbers."""
        return self._np

    def __getattr__(self, name):  # integers, random, normal, uniform, permutation, ...
        if name.startswith("_"):
            raise AttributeError(name)
        return getattr(self._np, name)

    def __repr__(self) -> str:
        return f"chainrule.random.Generator(initial_seed={self._initial_seed})"


@contextlib.contextmanager
def use_generator(generator: Generator | np.random.Generator):
    """Make ``generator`` the default generator inside the block (what initialisation, dropout
    and everything else that draws from the default generator use), then restore the previous
    default: ``with use_generator(g): model = GPT(config)``."""
    global _generator
    gen = generator.numpy if isinstance(generator, Generator) else generator
    if not isinstance(gen, np.random.Generator):
        raise TypeError(f"use_generator: expected a chainrule.random.Generator or a NumPy "
                        f"Generator, got {type(generator).__name__}")
    previous = _generator
    _generator = gen
    try:
        yield generator
    finally:
        _generator = previous
