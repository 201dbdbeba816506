"""NAdam (Dozat 2016: Adam with Nesterov momentum), with PyTorch's semantics."""

from __future__ import annotations

from .. import backend
from ..tensor import Tensor
from ._options import check_pytorch_options
from .optimizer import Optimizer


def _number(value) -> float:
    """A state scalar as a Python float (a loaded state dict may hold it as a 0-d tensor)."""
    return float(value.item()) if hasattr(value, "item") else float(value)


class NAdam(Optimizer):
    r"""NAdam, with PyTorch's semantics and defaults (lr=2e-3, betas=(0.9, 0.999), eps=1e-8,
    momentum_decay=4e-3).

    For each parameter p with gradient g, at step t = 1, 2, ... (lambda = weight_decay,
    psi = momentum_decay)::

        g     <- -g                                    if maximize
        p     <- p (1 - lr lambda)                     if decoupled_weight_decay
        g     <- g + lambda p                          otherwise (an L2 penalty)
        mu_t  =  beta1 (1 - 0.5 * 0.96^(t psi))        (and mu_{t+1} likewise)
        P_t   =  mu_1 mu_2 ... mu_t                    (mu_product, P_0 = 1)
        m_t   =  beta1 m_{t-1} + (1 - beta1) g         (exp_avg)
        v_t   =  beta2 v_{t-1} + (1 - beta2) g^2       (exp_avg_sq)
        d     =  sqrt(v_t / (1 - beta2^t)) + eps
        p     <- p - lr (1 - mu_t) / (1 - P_t) g / d - lr mu_{t+1} / (1 - P_t mu_{t+1}) m_t / d

    State per parameter: ``step``, ``mu_product`` (a number), ``exp_avg`` and ``exp_avg_sq``.
    ``decoupled_weight_decay=True`` gives NAdamW.
    """

    def __init__(self, params, lr=2e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0,
                 momentum_decay=4e-3, decoupled_weight_decay=False, *, foreach=None,
                 maximize=False, capturable=False, differentiable=False):
        check_pytorch_options("NAdam", foreach, capturable, differentiable)
        defaults = dict(lr=lr, betas=tuple(betas), eps=eps, weight_decay=weight_decay,
                        momentum_decay=momentum_decay,
                        decoupled_weight_decay=decoupled_weight_decay, maximize=maximize)
        super().__init__(params, defaults)

    def _check_group(self, group):
        super()._check_group(group)
        betas = group["betas"]
        if len(betas) != 2 or not all(0.0 <= b < 1.0 for b in betas):
            raise ValueError(f"NAdam: invalid betas={betas!r}; expected two numbers in [0, 1)")
        if not group["eps"] >= 0:
            raise ValueError(f"NAdam: invalid eps={group['eps']!r}; expected >= 0")
        if not group["momentum_decay"] >= 0:
            raise ValueError(f"NAdam: invalid momentum_decay={group['momentum_decay']!r}; "
                             "expected >= 0")

    def _init_state(self, p, group):
        xp = p.xp
        return {"step": 0, "mu_product": 1.0, "exp_avg": Tensor._wrap(xp.zeros_like(p._data)),
                "exp_avg_sq": Tensor._wrap(xp.zeros_like(p._data))}

    def _update(self, p, g, state, group):
        xp = backend.array_module(p)
        lr, eps, wd = group["lr"], group["eps"], group["weight_decay"]
        beta1, beta2 = group["betas"]
        psi = group["momentum_decay"]
        state["step"] = step = state["step"] + 1
        t, t2, t3 = self._buffers(p, 3)
        if group["maximize"]:
            g = xp.negative(g, out=t2)
        if wd != 0:
            if group["decoupled_weight_decay"]:
                p *= 1.0 - lr * wd
            else:
                g = xp.add(g, xp.multiply(p, wd, out=t), out=t2)
        mu = beta1 * (1.0 - 0.5 * 0.96 ** (step * psi))
        mu_next = beta1 * (1.0 - 0.5 * 0.96 ** ((step + 1) * psi))
        state["mu_product"] = mu_product = _number(state["mu_product"]) * mu
        m, v = state["exp_avg"]._data, state["exp_avg_sq"]._data
        m += xp.multiply(xp.subtract(g, m, out=t), 1.0 - beta1, out=t)
        v *= beta2
        v += xp.multiply(xp.multiply(g, g, out=t), 1.0 - beta2, out=t)
        xp.sqrt(xp.multiply(v, 1.0 / (1.0 - beta2**step), out=t), out=t)
        t += eps  # the denominator d
        a = lr * (1.0 - mu) / (1.0 - mu_product)
        b = lr * mu_next / (1.0 - mu_product * mu_next)
        # p -= (a g + b m) / d, with g possibly held in t2
        num = xp.multiply(g, a, out=t2)
        num += xp.multiply(m, b, out=t3)
        p -= xp.divide(num, t, out=t)
