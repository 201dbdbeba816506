"""Stochastic gradient descent with momentum, dampening, Nesterov and weight decay."""

from __future__ import annotations

from .. import backend
from ..tensor import Tensor
from .optimizer import Optimizer


class SGD(Optimizer):
    r"""Stochastic gradient descent, with PyTorch's semantics and defaults.

    For each parameter p with gradient g (lr = learning rate, mu = momentum, tau = dampening,
    lambda = weight_decay)::

        g   <- -g                      if maximize
        g   <- g + lambda p            if lambda != 0
        b_1 =  g                       (the momentum buffer starts at the first gradient)
        b_t =  mu b_{t-1} + (1 - tau) g
        g   <- g + mu b_t              if nesterov, else g <- b_t      (when mu != 0)
        p   <- p - lr g

    The state ``momentum_buffer`` exists only when ``momentum != 0``; Nesterov needs
    ``momentum > 0`` and ``dampening == 0``.
    """

    def __init__(self, params, lr=1e-3, momentum=0.0, dampening=0.0, weight_decay=0.0,
                 nesterov=False, *, maximize=False):
        defaults = dict(lr=lr, momentum=momentum, dampening=dampening,
                        weight_decay=weight_decay, nesterov=nesterov, maximize=maximize)
        super().__init__(params, defaults)

    def _check_group(self, group):
        super()._check_group(group)
        if not group["momentum"] >= 0:
            raise ValueError(f"SGD: invalid momentum={group['momentum']!r}; expected >= 0")
        if group["nesterov"] and (group["momentum"] <= 0 or group["dampening"] != 0):
            raise ValueError("SGD: nesterov momentum requires momentum > 0 and dampening = 0, got "
                             f"momentum={group['momentum']}, dampening={group['dampening']}")

    def _init_state(self, p, group):
        return {}

    def _update(self, p, g, state, group):
        xp = backend.array_module(p)
        lr, mu, wd = group["lr"], group["momentum"], group["weight_decay"]
        # scratch: one array, or two when the gradient itself must be rewritten first
        two = group["maximize"] or wd != 0 or (mu != 0 and group["nesterov"])
        t1, t2 = self._buffers(p, 2) if two else (*self._buffers(p), None)

        def spare(a):  # a scratch array that is not ``a``
            return t1 if a is not t1 else t2

        if group["maximize"]:
            g = xp.negative(g, out=t1)
        if wd != 0:
            xp.multiply(p, wd, out=t2)
            g = xp.add(g, t2, out=t2)
        if mu != 0:
            if "momentum_buffer" not in state:
                state["momentum_buffer"] = Tensor._wrap(g.copy())
                buf = state["momentum_buffer"]._data
            else:
                buf = state["momentum_buffer"]._data
                buf *= mu
                if group["dampening"] == 0:
                    buf += g
                else:
                    buf += xp.multiply(g, 1.0 - group["dampening"], out=spare(g))
            if group["nesterov"]:
                t = spare(g)
                xp.multiply(buf, mu, out=t)
                g = xp.add(g, t, out=t)
            else:
                g = buf
        xp.subtract(p, xp.multiply(g, lr, out=spare(g)), out=p)
