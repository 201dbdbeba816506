"""One seeded generator for everything random in chainrule (init, dropout, sampling, rand*),
so a run started with ``manual_seed(s)`` is reproducible bit for bit."""

from __future__ import annotations

import numpy as np

_generator = np.random.default_rng(0)


def manual_seed(seed: int):
    """Reset the global generator to ``seed``; returns it."""
    global _generator
    _generator = np.random.default_rng(int(seed))
    return _generator


seed = manual_seed


def _rng() -> np.random.Generator:
    return _generator


def get_rng_state() -> dict:
    """The generator's state, as a JSON-serialisable dict (for checkpoints)."""
    return _generator.bit_generator.state


def set_rng_state(state: dict) -> None:
    _generator.bit_generator.state = state
