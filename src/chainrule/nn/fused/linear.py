"""The fused linear layer."""

from __future__ import annotations

from ...autograd import Op


class LinearOp(Op):
    """y = x W^T + b   (x: (..., in), W: (out, in), b: (out,)).

    With the leading dims of x folded into rows (X: (N, in), G: (N, out)):
    dX = G W,  dW = G^T X,  db = sum_rows G.  Each is one GEMM on contiguous operands.
    """

    def forward(self, x, w, b=None):
        self.save(x, w)
        x2 = x.reshape(-1, x.shape[-1])
        y = x2 @ w.T
        if b is not None:
            y += b
        return y.reshape(x.shape[:-1] + (w.shape[0],))

    def backward(self, g):
        x, w = self.saved
        g2 = g.reshape((-1, g.shape[-1]))
        needs = self.needs
        gx = (g2 @ w).reshape(x.shape) if needs[0] else None
        gw = g2.T @ x.reshape((-1, x.shape[-1])) if needs[1] else None
        gb = g2.sum(axis=0) if len(needs) > 2 and needs[2] else None
        return (gx, gw, gb)[:len(needs)]
