"""RMSprop (Hinton's lecture 6e), with PyTorch's centered and momentum variants."""

from __future__ import annotations

from .. import backend
from ..tensor import Tensor
from .optimizer import Optimizer


class RMSprop(Optimizer):
    r"""RMSprop, with PyTorch's semantics and defaults (lr=1e-2, alpha=0.99, eps=1e-8).

    For each parameter p with gradient g (lambda = weight_decay, mu = momentum)::

        g   <- -g                                  if maximize
        g   <- g + lambda p                        if lambda != 0
        s_t =  alpha s_{t-1} + (1 - alpha) g^2     (square_avg, s_0 = 0)
        a_t =  alpha a_{t-1} + (1 - alpha) g       (grad_avg, only if centered, a_0 = 0)
        d   =  sqrt(s_t - a_t^2) + eps             if centered, else sqrt(s_t) + eps
        b_t =  mu b_{t-1} + g / d                  (momentum_buffer, b_0 = 0), p <- p - lr b_t
                                                   if mu > 0, else p <- p - lr g / d
    """

    def __init__(self, params, lr=1e-2, alpha=0.99, eps=1e-8, weight_decay=0.0, momentum=0.0,
                 centered=False, *, maximize=False):
        defaults = dict(lr=lr, alpha=alpha, eps=eps, weight_decay=weight_decay,
                        momentum=momentum, centered=centered, maximize=maximize)
        super().__init__(params, defaults)

    def _check_group(self, group):
        super()._check_group(group)
        for key in ("alpha", "eps", "momentum"):
            if not group[key] >= 0:
                raise ValueError(f"RMSprop: invalid {key}={group[key]!r}; expected >= 0")

    def _init_state(self, p, group):
        xp = p.xp
        state = {"step": 0, "square_avg": Tensor._wrap(xp.zeros_like(p._data))}
        if group["momentum"] > 0:
            state["momentum_buffer"] = Tensor._wrap(xp.zeros_like(p._data))
        if group["centered"]:
            state["grad_avg"] = Tensor._wrap(xp.zeros_like(p._data))
        return state

    def _update(self, p, g, state, group):
        xp = backend.array_module(p)
        lr, alpha, eps, wd = group["lr"], group["alpha"], group["eps"], group["weight_decay"]
        state["step"] += 1
        t, t2 = self._buffers(p, 2) if group["maximize"] or wd != 0 else (*self._buffers(p), None)
        if group["maximize"]:
            g = xp.negative(g, out=t2)
        if wd != 0:
            g = xp.add(g, xp.multiply(p, wd, out=t), out=t2)
        s = state["square_avg"]._data
        s *= alpha
        s += xp.multiply(xp.multiply(g, g, out=t), 1.0 - alpha, out=t)
        if group["centered"]:
            a = state["grad_avg"]._data
            a += xp.multiply(xp.subtract(g, a, out=t), 1.0 - alpha, out=t)
            xp.sqrt(xp.subtract(s, xp.multiply(a, a, out=t), out=t), out=t)
        else:
            xp.sqrt(s, out=t)
        t += eps
        if group["momentum"] > 0:
            b = state["momentum_buffer"]._data
            b *= group["momentum"]
            b += xp.divide(g, t, out=t)
            p -= xp.multiply(b, lr, out=t)
        else:
            p -= xp.multiply(xp.divide(g, t, out=t), lr, out=t)
