"""The fused batch normalization: statistics per channel over the batch and spatial dims."""

from __future__ import annotations

from ... import ops as P
from ...autograd import Op


class BatchNormOp(Op):
    """Batch norm of x (N, C, *) with the batch statistics of each channel (training mode):

    mu_c = mean x[:, c],  var_c = mean (x[:, c] - mu_c)^2 (biased),  r = 1 / sqrt(var + eps),
    xh = (x - mu) r,  y = xh w + b.

    With m = N * prod(*) elements a channel:  db = sum g,  dw = sum g xh,
    dx = w r (g - db / m - xh dw / m), one pass each way. ``mean`` and ``var`` are the batch
    statistics the caller computed (it also updates the running statistics from them).
    """

    def forward(self, x, w=None, b=None, mean=None, var=None, eps=1e-5):
        xp = self.xp
        self.eps = eps
        self.save(*[a for a in (x, w, b) if a is not None])
        N, C = x.shape[0], x.shape[1]
        x3 = x.reshape(N, C, -1)
        r = (1.0 / xp.sqrt(var + eps)).astype(x.dtype, copy=False)
        xh = x3 - mean.astype(x.dtype, copy=False)[:, None]
        xh *= r[:, None]
        self.xh, self.r = xh, r
        if w is None:
            y = xh.copy() if b is not None else xh
        else:
            y = xh * w[:, None]
        if b is not None:
            y += b[:, None]
        return y.reshape(x.shape)

    def backward(self, g):
        saved, needs, xh = self.saved, self.needs, self.xh
        has_w, has_b = len(saved) > 1, len(saved) > 2
        N, C = xh.shape[0], xh.shape[1]
        m = xh.shape[0] * xh.shape[2]
        g3 = g.reshape(N, C, -1)
        gsum = g3.sum(axis=(0, 2))
        gxh = self.xp.einsum("ncm,ncm->c", g3, xh)
        gx = gw = gb = None
        if needs[0]:
            scale = self.r * saved[1] if has_w else self.r
            gx = g3 - (gsum / m)[:, None]
            gx -= xh * (gxh / m)[:, None]
            gx *= scale[:, None]
            gx = gx.reshape(saved[0].shape)
        if has_w and needs[1]:
            gw = gxh
        if has_b and needs[2]:
            gb = gsum
        return (gx, gw, gb)[:len(needs)]

    def composite(self, x, w=None, b=None):
        """The same function from primitives: per-channel (x - mean) * rsqrt(var + eps) w + b."""
        N, C = x.shape[0], x.shape[1]
        x3 = x.reshape(N, C, -1)
        mu = x3.mean(dim=(0, 2), keepdim=True)
        xc = x3 - mu
        var = (xc * xc).mean(dim=(0, 2), keepdim=True)
        y = xc * P.rsqrt(var + self.eps)
        if w is not None:
            y = y * w.reshape(1, C, 1)
        if b is not None:
            y = y + b.reshape(1, C, 1)
        return y.reshape(x.shape)
