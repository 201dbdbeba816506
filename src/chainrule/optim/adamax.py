"""Adamax (Kingma & Ba 2015, section 7: Adam under the infinity norm), with PyTorch's
semantics."""

from __future__ import annotations

from .. import backend
from ..tensor import Tensor
from ._options import check_pytorch_options
from .optimizer import Optimizer


class Adamax(Optimizer):
    r"""Adamax, with PyTorch's semantics and defaults (lr=2e-3, betas=(0.9, 0.999),
    eps=1e-8).

    For each parameter p with gradient g, at step t = 1, 2, ... (lambda = weight_decay)::

        g   <- -g                                     if maximize
        g   <- g + lambda p                           if lambda != 0
        m_t =  beta1 m_{t-1} + (1 - beta1) g          (exp_avg, m_0 = 0)
        u_t =  max(beta2 u_{t-1}, |g| + eps)          (exp_inf, u_0 = 0)
        p   <- p - lr / (1 - beta1^t) m_t / u_t

    State per parameter: ``step``, ``exp_avg`` (m) and ``exp_inf`` (u).
    """

    def __init__(self, params, lr=2e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0,
                 foreach=None, *, maximize=False, differentiable=False, capturable=False):
        check_pytorch_options("Adamax", foreach, capturable, differentiable)
        defaults = dict(lr=lr, betas=tuple(betas), eps=eps, weight_decay=weight_decay,
                        maximize=maximize)
        super().__init__(params, defaults)

    def _check_group(self, group):
        super()._check_group(group)
        betas = group["betas"]
        if len(betas) != 2 or not all(0.0 <= b < 1.0 for b in betas):
            raise ValueError(f"Adamax: invalid betas={betas!r}; expected two numbers in [0, 1)")
        if not group["eps"] >= 0:
            raise ValueError(f"Adamax: invalid eps={group['eps']!r}; expected >= 0")

    def _init_state(self, p, group):
        xp = p.xp
        return {"step": 0, "exp_avg": Tensor._wrap(xp.zeros_like(p._data)),
                "exp_inf": Tensor._wrap(xp.zeros_like(p._data))}

    def _update(self, p, g, state, group):
        xp = backend.array_module(p)
        beta1, beta2 = group["betas"]
        eps, wd = group["eps"], group["weight_decay"]
        state["step"] = step = state["step"] + 1
        t, t2 = self._buffers(p, 2)
        if group["maximize"]:
            g = xp.negative(g, out=t2)
        if wd != 0:
            g = xp.add(g, xp.multiply(p, wd, out=t), out=t2)
        m, u = state["exp_avg"]._data, state["exp_inf"]._data
        m += xp.multiply(xp.subtract(g, m, out=t), 1.0 - beta1, out=t)
        u *= beta2
        xp.maximum(u, xp.add(xp.abs(g, out=t), eps, out=t), out=u)
        clr = group["lr"] / (1.0 - beta1**step)
        p -= xp.multiply(xp.divide(m, u, out=t), clr, out=t)
