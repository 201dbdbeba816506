"""The fused dropout."""

from __future__ import annotations

from ...autograd import Op
from ...dtypes import float32
from ...random import _rng


class DropoutOp(Op):
    """y = x m / (1 - p) with m_i ~ Bernoulli(1 - p) from chainrule's generator;
    dx = g m / (1 - p)."""

    def forward(self, x, p=0.5):
        keep = self.xp.random_uniform(_rng(), x.shape, float32) >= p  # drawn where x lives
        mask = keep.astype(x.dtype)
        mask *= 1.0 / (1.0 - p)
        self.mask = mask
        return x * self.mask

    def backward(self, g):
        return (g * self.mask,)
