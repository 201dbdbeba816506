"""RAdam (Liu et al. 2020: Adam with a rectified adaptive learning rate), with PyTorch's
semantics."""

from __future__ import annotations

import math

from .. import backend
from ..tensor import Tensor
from ._options import check_pytorch_options
from .optimizer import Optimizer


class RAdam(Optimizer):
    r"""RAdam, with PyTorch's semantics and defaults (lr=1e-3, betas=(0.9, 0.999), eps=1e-8).

    For each parameter p with gradient g, at step t = 1, 2, ... (lambda = weight_decay)::

        g     <- -g                                    if maximize
        p     <- p (1 - lr lambda)                     if decoupled_weight_decay
        g     <- g + lambda p                          otherwise (an L2 penalty)
        m_t   =  beta1 m_{t-1} + (1 - beta1) g         (exp_avg)
        v_t   =  beta2 v_{t-1} + (1 - beta2) g^2       (exp_avg_sq)
        rho_inf = 2 / (1 - beta2) - 1
        rho_t = rho_inf - 2 t beta2^t / (1 - beta2^t)
        r_t   = sqrt((rho_t - 4)(rho_t - 2) rho_inf / ((rho_inf - 4)(rho_inf - 2) rho_t))
        p     <- p - lr m_t / (1 - beta1^t) * r_t sqrt(1 - beta2^t) / (sqrt(v_t) + eps)
                                                       if rho_t > 5
        p     <- p - lr m_t / (1 - beta1^t)            otherwise (plain momentum while the
                                                       variance estimate is unreliable)

    State per parameter: ``step``, ``exp_avg`` and ``exp_avg_sq``.
    """

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0,
                 decoupled_weight_decay=False, *, foreach=None, maximize=False,
                 capturable=False, differentiable=False):
        check_pytorch_options("RAdam", foreach, capturable, differentiable)
        defaults = dict(lr=lr, betas=tuple(betas), eps=eps, weight_decay=weight_decay,
                        decoupled_weight_decay=decoupled_weight_decay, maximize=maximize)
        super().__init__(params, defaults)

    def _check_group(self, group):
        super()._check_group(group)
        betas = group["betas"]
        if len(betas) != 2 or not all(0.0 <= b < 1.0 for b in betas):
            raise ValueError(f"RAdam: invalid betas={betas!r}; expected two numbers in [0, 1)")
        if not group["eps"] >= 0:
            raise ValueError(f"RAdam: invalid eps={group['eps']!r}; expected >= 0")

    def _init_state(self, p, group):
        xp = p.xp
        return {"step": 0, "exp_avg": Tensor._wrap(xp.zeros_like(p._data)),
                "exp_avg_sq": Tensor._wrap(xp.zeros_like(p._data))}

    def _update(self, p, g, state, group):
        xp = backend.array_module(p)
        lr, eps, wd = group["lr"], group["eps"], group["weight_decay"]
        beta1, beta2 = group["betas"]
        state["step"] = step = state["step"] + 1
        t, t2 = self._buffers(p, 2)
        if group["maximize"]:
            g = xp.negative(g, out=t2)
        if wd != 0:
            if group["decoupled_weight_decay"]:
                p *= 1.0 - lr * wd
            else:
                g = xp.add(g, xp.multiply(p, wd, out=t), out=t2)
        m, v = state["exp_avg"]._data, state["exp_avg_sq"]._data
        m += xp.multiply(xp.subtract(g, m, out=t), 1.0 - beta1, out=t)
        v *= beta2
        v += xp.multiply(xp.multiply(g, g, out=t), 1.0 - beta2, out=t)
        c1 = 1.0 - beta1**step
        c2 = 1.0 - beta2**step
        rho_inf = 2.0 / (1.0 - beta2) - 1.0
        rho_t = rho_inf - 2.0 * step * beta2**step / c2
        if rho_t > 5.0:
            rect = math.sqrt((rho_t - 4) * (rho_t - 2) * rho_inf
                             / ((rho_inf - 4) * (rho_inf - 2) * rho_t))
            xp.sqrt(v, out=t)
            t += eps
            xp.divide(m, t, out=t)
            p -= xp.multiply(t, lr / c1 * math.sqrt(c2) * rect, out=t)
        else:
            p -= xp.multiply(m, lr / c1, out=t)
