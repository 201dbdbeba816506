"""Adam and AdamW (Kingma & Ba 2015; Loshchilov & Hutter 2019), with PyTorch's semantics."""

from __future__ import annotations

import math

from .. import backend
from ..tensor import Tensor
from .optimizer import Optimizer


class Adam(Optimizer):
    r"""Adam, with bias correction, optional AMSGrad and L2 weight decay (PyTorch's defaults).

    For each parameter p with gradient g, at step t = 1, 2, ... (beta1, beta2 = betas,
    lambda = weight_decay)::

        g   <- -g                                   if maximize
        p   <- p (1 - lr lambda)                    if decoupled (AdamW)
        g   <- g + lambda p                         if not decoupled (Adam's L2 penalty)
        m_t =  beta1 m_{t-1} + (1 - beta1) g        (computed as m + (1 - beta1)(g - m))
        v_t =  beta2 v_{t-1} + (1 - beta2) g^2
        vmax_t = max(vmax_{t-1}, v_t)               if amsgrad, and v_t <- vmax_t below
        p   <- p - lr / (1 - beta1^t) * m_t / (sqrt(v_t) / sqrt(1 - beta2^t) + eps)

    with m_0 = v_0 = vmax_0 = 0. State per parameter: ``step``, ``exp_avg`` (m),
    ``exp_avg_sq`` (v) and, with amsgrad, ``max_exp_avg_sq``. The update runs in place on the
    parameter's array with one scratch buffer, about a dozen passes over memory in all; for
    float32 CPU parameters (without amsgrad) the compiled kernel makes one.
    """

    _decoupled = False

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0,
                 amsgrad=False, *, maximize=False, decoupled_weight_decay=None):
        if decoupled_weight_decay is None:
            decoupled_weight_decay = self._decoupled
        defaults = dict(lr=lr, betas=tuple(betas), eps=eps, weight_decay=weight_decay,
                        amsgrad=amsgrad, maximize=maximize,
                        decoupled_weight_decay=decoupled_weight_decay)
        super().__init__(params, defaults)

    def _check_group(self, group):
        super()._check_group(group)
        name = type(self).__name__
        betas = group["betas"]
        if len(betas) != 2 or not all(0.0 <= b < 1.0 for b in betas):
            raise ValueError(f"{name}: invalid betas={betas!r}; expected two numbers in [0, 1)")
        if not group["eps"] >= 0:
            raise ValueError(f"{name}: invalid eps={group['eps']!r}; expected >= 0")

    def _init_state(self, p, group):
        xp = p.xp
        state = {"step": 0, "exp_avg": Tensor._wrap(xp.zeros_like(p._data)),
                 "exp_avg_sq": Tensor._wrap(xp.zeros_like(p._data))}
        if group["amsgrad"]:
            state["max_exp_avg_sq"] = Tensor._wrap(xp.zeros_like(p._data))
        return state

    def _update(self, p, g, state, group):
        xp = backend.array_module(p)
        lr, eps, wd = group["lr"], group["eps"], group["weight_decay"]
        beta1, beta2 = group["betas"]
        m, v = state["exp_avg"]._data, state["exp_avg_sq"]._data
        state["step"] = step = state["step"] + 1
        if xp.adam_step(p, g, m, v, step=step, lr=lr, beta1=beta1, beta2=beta2, eps=eps,
                        weight_decay=wd, decoupled=group["decoupled_weight_decay"],
                        maximize=group["maximize"], amsgrad=group["amsgrad"]):
            return  # the namespace's fused step (the compiled kernel) ran
        extra = group["maximize"] or (wd != 0 and not group["decoupled_weight_decay"])
        if extra:
            t, t2 = self._buffers(p, 2)
            if group["maximize"]:
                g = xp.negative(g, out=t2)
            if wd != 0 and not group["decoupled_weight_decay"]:
                g = xp.add(g, xp.multiply(p, wd, out=t), out=t2)
        else:
            (t,) = self._buffers(p)
        if wd != 0 and group["decoupled_weight_decay"]:
            p *= 1.0 - lr * wd
        m += xp.multiply(xp.subtract(g, m, out=t), 1.0 - beta1, out=t)
        v *= beta2
        v += xp.multiply(xp.multiply(g, g, out=t), 1.0 - beta2, out=t)
        if group["amsgrad"]:
            v = xp.maximum(state["max_exp_avg_sq"]._data, v, out=state["max_exp_avg_sq"]._data)
        # lr/c1 m / (sqrt(v)/c2 + eps) = m / (a sqrt(v) + b), a = c1/(lr c2), b = eps c1/lr:
        # one pass fewer than dividing and scaling separately.
        c1 = 1.0 - beta1**step
        c2 = math.sqrt(1.0 - beta2**step)
        if lr == 0:
            return
        xp.sqrt(v, out=t)
        t *= c1 / (lr * c2)
        t += eps * c1 / lr
        p -= xp.divide(m, t, out=t)


class AdamW(Adam):
    r"""Adam with decoupled weight decay (Loshchilov & Hutter): before the Adam step,
    ``p <- p (1 - lr lambda)``; the decay never enters the moments. Default
    ``weight_decay=1e-2``, as in PyTorch. See :class:`Adam` for the full update."""

    _decoupled = True

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=1e-2,
                 amsgrad=False, *, maximize=False):
        super().__init__(params, lr=lr, betas=betas, eps=eps, weight_decay=weight_decay,
                         amsgrad=amsgrad, maximize=maximize, decoupled_weight_decay=True)
