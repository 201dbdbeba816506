"""Adagrad (Duchi, Hazan & Singer 2011), with PyTorch's semantics."""

from __future__ import annotations

from .. import backend
from ..tensor import Tensor
from .optimizer import Optimizer


class Adagrad(Optimizer):
    r"""Adagrad, with PyTorch's semantics and defaults (lr=1e-2, eps=1e-10).

    For each parameter p with gradient g, at step t = 1, 2, ... (lambda = weight_decay)::

        g     <- -g                              if maximize
        g     <- g + lambda p                    if lambda != 0
        lr_t  =  lr / (1 + (t - 1) lr_decay)
        S_t   =  S_{t-1} + g^2                   (sum, S_0 = initial_accumulator_value)
        p     <- p - lr_t g / (sqrt(S_t) + eps)
    """

    def __init__(self, params, lr=1e-2, lr_decay=0.0, weight_decay=0.0,
                 initial_accumulator_value=0.0, eps=1e-10, *, maximize=False):
        defaults = dict(lr=lr, lr_decay=lr_decay, weight_decay=weight_decay,
                        initial_accumulator_value=initial_accumulator_value, eps=eps,
                        maximize=maximize)
        super().__init__(params, defaults)

    def _check_group(self, group):
        super()._check_group(group)
        for key in ("lr_decay", "initial_accumulator_value", "eps"):
            if not group[key] >= 0:
                raise ValueError(f"Adagrad: invalid {key}={group[key]!r}; expected >= 0")

    def _init_state(self, p, group):
        xp = p.xp
        init = group["initial_accumulator_value"]
        return {"step": 0, "sum": Tensor._wrap(xp.full_like(p._data, init))}

    def _update(self, p, g, state, group):
        xp = backend.array_module(p)
        wd = group["weight_decay"]
        state["step"] = step = state["step"] + 1
        t, t2 = self._buffers(p, 2) if group["maximize"] or wd != 0 else (*self._buffers(p), None)
        if group["maximize"]:
            g = xp.negative(g, out=t2)
        if wd != 0:
            g = xp.add(g, xp.multiply(p, wd, out=t), out=t2)
        clr = group["lr"] / (1 + (step - 1) * group["lr_decay"])
        S = state["sum"]._data
        S += xp.multiply(g, g, out=t)
        xp.sqrt(S, out=t)
        t += group["eps"]
        p -= xp.multiply(xp.divide(g, t, out=t), clr, out=t)
