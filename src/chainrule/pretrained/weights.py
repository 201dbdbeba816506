"""File tensors into a freshly built model: ``load_state_dict(..., assign=True)`` on arrays made
fit for training first."""

from __future__ import annotations

import numpy as np

from ..nn.module import StateDictError


def load_weights(model, tensors: dict, source: str):
    """Put ``tensors`` (chainrule names -> arrays) in ``model``'s places, all or nothing, and
    return ``model``.

    Each array takes its parameter's dtype and is made C-contiguous and writable (a
    memory-mapped file array is read-only, and optimizers update weights in place); an array
    that already is so is used as it is, without a copy. Missing, unexpected and mis-shaped
    tensors are reported together in one :class:`~chainrule.nn.module.StateDictError` that
    names ``source``.
    """
    own = model.state_dict()
    fit = {}
    for name, a in tensors.items():
        if name in own:
            a = np.ascontiguousarray(a, dtype=own[name].data.dtype)
            if not a.flags.writeable:
                a = a.copy()
        fit[name] = a
    try:
        model.load_state_dict(fit, assign=True)
    except StateDictError as e:
        raise StateDictError(f"loading {source}: {e}") from None
    return model
