"""The GELU activation, exact and tanh forms: ``chainrule.gelu`` and
``chainrule.nn.functional.gelu`` are this one op."""

from __future__ import annotations

import math

from ..autograd import Op
from ..tensor import Tensor

_SQRT_2_OVER_PI = math.sqrt(2 / math.pi)
_INV_SQRT_2 = 1 / math.sqrt(2)
_INV_SQRT_2PI = 1 / math.sqrt(2 * math.pi)


class Gelu(Op):
    """y = x Phi(x) (Phi the standard normal CDF);  dx = g (Phi(x) + x phi(x)).

    Tanh form: y = x (1 + tanh u) / 2 with u = sqrt(2/pi) (x + 0.044715 x^3);
    dx = g ((1 + t) / 2 + x (1 - t^2) u' / 2),  u' = sqrt(2/pi) (1 + 3 0.044715 x^2).

    The forward is the namespace's fused pass (``xp.gelu_forward``: on float32 the compiled
    kernel where built, else an in-place Chebyshev erfc; float64 the exact erf), which keeps
    Phi (or t) for a backward of a few passes (``xp.gelu_backward``). A recorded backward
    (``create_graph=True``, where the engine hands the rule the saved input as a Tensor and
    the Tensor namespace) computes Phi again from x with the namespace's erf, so that the
    rule itself is differentiable.
    """

    def forward(self, x, approximate="none"):
        if approximate not in ("none", "tanh"):
            raise ValueError(f"gelu: approximate must be 'none' or 'tanh', got {approximate!r}")
        self.approximate = approximate
        self.save(x)
        y, self.fwd = self.xp.gelu_forward(x, approximate)
        return y

    def backward(self, g):
        xp = self.xp
        x = self.saved[0]
        if not isinstance(x, Tensor):  # arrays: from what the forward kept
            return (xp.gelu_backward(x, g, self.fwd, self.approximate),)
        if self.approximate == "tanh":
            t = xp.tanh(_SQRT_2_OVER_PI * (x + 0.044715 * x * x * x))
            du = _SQRT_2_OVER_PI * (1 + 3 * 0.044715 * x * x)
            return (g * (0.5 * (1 + t) + 0.5 * x * (1 - t * t) * du),)
        cdf = 0.5 * (1 + xp.erf(x * _INV_SQRT_2))
        pdf = _INV_SQRT_2PI * xp.exp(-0.5 * x * x)
        return (g * (cdf + x * pdf),)


def gelu(x, approximate="none"):
    """y = x Phi(x) (Phi the standard normal CDF), or its tanh approximation with
    ``approximate="tanh"`` (PyTorch's GELU). Integer and bool tensors become float32."""
    if not (type(x) is Tensor and x.data.dtype.kind == "f"):
        from . import _float  # the op library's conversion, as for every math function

        x = _float(x, "gelu")
    return Gelu.apply(x, approximate=approximate)
