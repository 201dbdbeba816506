"""Choose which parameters of a pre-trained model train: the rest are frozen.

A frozen parameter has ``requires_grad=False``, so the ops that read it are told so
(``Op.needs``) and skip its gradient entirely: ``Linear`` computes ``dX = G W`` for the layers
below but never the ``dW = G^T X`` GEMM. An optimizer built from :func:`trainable_parameters`
holds state for the trainable ones only.
"""

from __future__ import annotations


def freeze(module):
    """Freeze every parameter of ``module`` (``requires_grad_(False)``); returns it."""
    for p in module.parameters():
        p.requires_grad_(False)
    return module


def unfreeze(module):
    """Make every parameter of ``module`` trainable again; returns it."""
    for p in module.parameters():
        p.requires_grad_(True)
    return module


def _blocks(model):
    blocks = getattr(model, "blocks", None)
    if blocks is None:
        blocks = getattr(getattr(model, "transformer", None), "h", None)
    if blocks is None:
        raise TypeError(f"{type(model).__name__} has no list of blocks (model.blocks)")
    return list(blocks)


def _final_norm(model):
    for name in ("norm", "ln_f"):
        m = getattr(model, name, None) or getattr(getattr(model, "transformer", None), name, None)
        if m is not None:
            return m
    return None


def train_last(model, n: int, norm: bool = True, head: bool = False):
    """Freeze everything except the last ``n`` blocks (and the final norm when ``norm``, the
    output head when ``head``: with tied embeddings that is the whole embedding table)."""
    blocks = _blocks(model)
    if not 0 <= n <= len(blocks):
        raise ValueError(f"train_last: n must be in 0..{len(blocks)} (the model's blocks), "
                         f"got {n}")
    freeze(model)
    for b in blocks[len(blocks) - n:]:
        unfreeze(b)
    if norm and _final_norm(model) is not None:
        unfreeze(_final_norm(model))
    if head:
        w = model.head_weight() if hasattr(model, "head_weight") else model.lm_head.weight
        w.requires_grad_(True)
    return model


def train_norms_and_head(model, head: bool = True):
    """Freeze everything except normalization layers' parameters (and the output head)."""
    freeze(model)
    for m in model.modules():
        if "Norm" in type(m).__name__:
            unfreeze(m)
    if head:
        w = model.head_weight() if hasattr(model, "head_weight") else model.lm_head.weight
        w.requires_grad_(True)
    return model


def trainable_parameters(model):
    """The parameters that require grad (what to hand the optimizer)."""
    return [p for p in model.parameters() if p.requires_grad]


def parameter_counts(model) -> dict:
    """``{'trainable': n, 'total': n}`` in number of values (each shared tensor once)."""
    params = list(model.parameters())
    return {"trainable": sum(p._data.size for p in params if p.requires_grad),
            "total": sum(p._data.size for p in params)}
