"""Adadelta (Zeiler 2012), with PyTorch's semantics."""

from __future__ import annotations

from .. import backend
from ..tensor import Tensor
from ._options import check_pytorch_options
from .optimizer import Optimizer


class Adadelta(Optimizer):
    r"""Adadelta, with PyTorch's semantics and defaults (lr=1.0, rho=0.9, eps=1e-6).

    For each parameter p with gradient g (lambda = weight_decay)::

        g   <- -g                                      if maximize
        g   <- g + lambda p                            if lambda != 0
        s_t =  rho s_{t-1} + (1 - rho) g^2             (square_avg, s_0 = 0)
        d   =  sqrt(u_{t-1} + eps) / sqrt(s_t + eps) g
        u_t =  rho u_{t-1} + (1 - rho) d^2             (acc_delta, u_0 = 0)
        p   <- p - lr d

    State per parameter: ``step``, ``square_avg`` (s) and ``acc_delta`` (u).
    """

    def __init__(self, params, lr=1.0, rho=0.9, eps=1e-6, weight_decay=0.0, foreach=None, *,
                 capturable=False, maximize=False, differentiable=False):
        check_pytorch_options("Adadelta", foreach, capturable, differentiable)
        defaults = dict(lr=lr, rho=rho, eps=eps, weight_decay=weight_decay, maximize=maximize)
        super().__init__(params, defaults)

    def _check_group(self, group):
        super()._check_group(group)
        if not 0.0 <= group["rho"] <= 1.0:
            raise ValueError(f"Adadelta: invalid rho={group['rho']!r}; expected a number in "
                             "[0, 1]")
        if not group["eps"] >= 0:
            raise ValueError(f"Adadelta: invalid eps={group['eps']!r}; expected >= 0")

    def _init_state(self, p, group):
        xp = p.xp
        return {"step": 0, "square_avg": Tensor._wrap(xp.zeros_like(p._data)),
                "acc_delta": Tensor._wrap(xp.zeros_like(p._data))}

    def _update(self, p, g, state, group):
        xp = backend.array_module(p)
        rho, eps, wd = group["rho"], group["eps"], group["weight_decay"]
        state["step"] += 1
        t, t2, t3 = self._buffers(p, 3)
        if group["maximize"]:
            g = xp.negative(g, out=t2)
        if wd != 0:
            g = xp.add(g, xp.multiply(p, wd, out=t), out=t2)
        s, u = state["square_avg"]._data, state["acc_delta"]._data
        s *= rho
        s += xp.multiply(xp.multiply(g, g, out=t), 1.0 - rho, out=t)
        xp.sqrt(xp.add(s, eps, out=t), out=t)  # the gradient's RMS
        xp.sqrt(xp.add(u, eps, out=t3), out=t3)  # the previous updates' RMS
        d = xp.multiply(xp.divide(t3, t, out=t), g, out=t)
        u *= rho
        u += xp.multiply(xp.multiply(d, d, out=t3), 1.0 - rho, out=t3)
        p -= xp.multiply(d, group["lr"], out=t3)
