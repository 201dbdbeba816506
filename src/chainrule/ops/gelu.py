"""The GELU activation: ``chainrule.gelu`` and ``chainrule.nn.functional.gelu``."""

from __future__ import annotations

import math

from ..autograd import Op
from ..tensor import Tensor

_SQRT_2_OVER_PI = math.sqrt(2 / math.pi)
_INV_SQRT_2 = 1 / math.sqrt(2)
_INV_SQRT_2PI = 1 / math.sqrt(2 * math.pi)


class Gelu(Op):
    """Exact: y = x Phi(x), dx = g (Phi(x) + x phi(x)).
    Tanh form: y = x/2 (1 + tanh(u)), u = sqrt(2/pi)(x + 0.044715 x^3),
    dx = g (1/2 (1 + t) + x/2 (1 - t^2) du/dx)."""

    def forward(self, x, approximate="none"):
        if approximate not in ("none", "tanh"):
            raise ValueError(f"gelu: approximate must be 'none' or 'tanh', got {approximate!r}")
        xp = self.xp
        self.approximate = approximate
        self.save(x)
        if approximate == "tanh":
            return (0.5 * x * (1 + xp.tanh(_SQRT_2_OVER_PI * (x + 0.044715 * x * x * x)))).astype(
                x.dtype, copy=False)
        return (0.5 * x * (1 + xp.erf(x * _INV_SQRT_2))).astype(x.dtype, copy=False)

    def backward(self, g):
        xp = self.xp
        x = self.saved[0]
        if self.approximate == "tanh":
            t = xp.tanh(_SQRT_2_OVER_PI * (x + 0.044715 * x * x * x))
            du = _SQRT_2_OVER_PI * (1 + 3 * 0.044715 * x * x)
            return (g * (0.5 * (1 + t) + 0.5 * x * (1 - t * t) * du),)
        cdf = 0.5 * (1 + xp.erf(x * _INV_SQRT_2))
        pdf = _INV_SQRT_2PI * xp.exp(-0.5 * x * x)
        return (g * (cdf + x * pdf),)


def gelu(x, approximate="none"):
    if not (type(x) is Tensor and x.data.dtype.kind == "f"):
        from . import _float  # integers and bools become float32, as for every math function

        x = _float(x, "gelu")
    return Gelu.apply(x, approximate=approximate)
