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
            a = np.ascontiguousarray(a, dtype=own[name]._data.dtype)
            if not a.flags.writeable:
                a = a.copy()
        fit[name] = a
    try:
        model.load_state_dict(fit, assign=True)
    except StateDictError as e:
        raise StateDictError(f"loading {source}: {e}") from None
    return model

def _n_params(config) -> int:
    """The parameter count the config describes (a Llama or a GPT config), without a model."""
    e, v = config.n_embd, config.vocab_size
    if hasattr(config, "n_kv_head"):  # Llama
        kv = config.n_kv_head * (e // config.n_head)
        block = 2 * e * e + 2 * e * kv + 3 * e * config.n_hidden + 2 * e
        return v * e + config.n_layer * block + e + (0 if config.tie_embeddings else v * e)
    return v * e + config.block_size * e + config.n_layer * (12 * e * e + 13 * e) + 2 * e


def check_fits(config, tensors: dict, source: str) -> None:
    """ValueError naming ``source`` unless the weight files hold at least as many numbers as
    the model ``config`` describes, within a factor of two (checked before the model is built,
    so a small or hostile file cannot make the loader allocate a large model; a tensor or two
    missing is left to :func:`load_weights`, whose error lists each missing, unexpected and
    mis-shaped tensor)."""
    if hasattr(config, "validate"):
        config.validate()
    need = _n_params(config)
    have = sum(int(getattr(a, "size", 0)) for a in tensors.values())
    if need > 2 * have + (1 << 20):
        raise ValueError(f"{source}: the configuration describes {need:,} parameters "
                         f"(vocab_size {config.vocab_size}, n_layer {config.n_layer}, n_embd "
                         f"{config.n_embd}) but the weight files hold {have:,} numbers: the "
                         "config does not match the weights")

