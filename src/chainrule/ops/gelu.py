"""The GELU activation, exact and tanh forms: ``chainrule.gelu`` and
``chainrule.nn.functional.gelu`` are this one op."""

from __future__ import annotations

from ..autograd import Op
from ..tensor import Tensor
from ._args import _float


class Gelu(Op):
    """y = x Phi(x) (Phi the standard normal CDF);  dx = g (Phi(x) + x phi(x)).

    Tanh form: y = x (1 + tanh u) / 2 with u = sqrt(2/pi) (x + 0.044715 x^3);
    dx = g ((1 + t) / 2 + x (1 - t^2) u' / 2),  u' = sqrt(2/pi) (1 + 3 0.044715 x^2).

    The forward is the namespace's fused pass (``xp.gelu_forward``: on float32 the compiled
    kernel where built, else an in-place Chebyshev erfc; float64 the exact erf), which keeps
    Phi (or t) for a backward of a few passes (``xp.gelu_backward``). Under create_graph the
    Tensor namespace's ``gelu_backward`` computes Phi again from x with differentiable ops, so
    that the rule itself is recorded.
    """

    def forward(self, x, approximate="none"):
        if approximate not in ("none", "tanh"):
            raise ValueError(f"gelu: approximate must be 'none' or 'tanh', got {approximate!r}")
        self.approximate = approximate
        self.save(x)
        y, self.fwd = self.xp.gelu_forward(x, approximate)
        return y

    def backward(self, g):
        # arrays: from what the forward kept; under create_graph the Tensor namespace
        # recomputes Phi from x with differentiable ops
        return (self.xp.gelu_backward(self.saved[0], g, self.fwd, self.approximate),)


def gelu(x, approximate="none"):
    """y = x Phi(x) (Phi the standard normal CDF), or its tanh approximation with
    ``approximate="tanh"`` (PyTorch's GELU). Integer and bool tensors become float32."""
    if not (type(x) is Tensor and x._data.dtype.kind == "f"):
        x = _float(x, "gelu")
    return Gelu.apply(x, approximate=approximate)
