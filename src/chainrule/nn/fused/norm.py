"""The fused normalizations: layer norm and RMS norm over the trailing n elements of a row."""

from __future__ import annotations

from ... import ops as P
from ...autograd import Op


class LayerNormOp(Op):
    """Layer norm over the trailing n elements of each row of x:

    mu = mean x,  var = mean (x - mu)^2,  r = 1 / sqrt(var + eps),  xh = (x - mu) r,
    y = xh w + b.

    With gh = g w:  dx = r (gh - mean(gh) - xh mean(gh xh)),  dw = sum_rows g xh,
    db = sum_rows g  (the means are over the normalized elements of a row). Both passes are
    the namespace's kernels (``xp.layer_norm_forward`` / ``layer_norm_backward``).
    """

    def forward(self, x, w=None, b=None, n=1, eps=1e-5):
        self.n, self.eps = n, eps
        self.save(*[a for a in (x, w, b) if a is not None])
        y, self.fwd = self.xp.layer_norm_forward(x.reshape(-1, n), w, b, eps)
        return y.reshape(x.shape)

    def backward(self, g):
        saved, needs = self.saved, self.needs
        has_w, has_b = len(saved) > 1, len(saved) > 2
        gx, gw, gb = self.xp.layer_norm_backward(
            g.reshape(-1, self.n), self.fwd, saved[1] if has_w else None, needs[0],
            has_w and needs[1], has_b and needs[2])
        if gx is not None:
            gx = gx.reshape(saved[0].shape)
        if gw is not None:
            gw = gw.reshape(saved[1].shape)
        if gb is not None:
            gb = gb.reshape(saved[2].shape)
        return (gx, gw, gb)[:len(needs)]

    def composite(self, x, w=None, b=None):
        """The same function from primitives: (x - mean) * rsqrt(var + eps) * w + b."""
        shape = x.shape
        x2 = x.reshape(-1, self.n)
        mu = x2.mean(dim=1, keepdim=True)
        xc = x2 - mu
        var = (xc * xc).mean(dim=1, keepdim=True)
        y = xc * P.rsqrt(var + self.eps)
        if w is not None:
            y = y * w.reshape(-1)
        if b is not None:
            y = y + b.reshape(-1)
        return y.reshape(shape)


class RMSNormOp(Op):
    """RMS norm over the trailing n elements of each row:

    r = 1 / sqrt(mean x^2 + eps),  xh = x r,  y = xh w.

    With gh = g w:  dx = r (gh - xh mean(gh xh)),  dw = sum_rows g xh.
    """

    def forward(self, x, w=None, n=1, eps=1e-6):
        self.n, self.eps = n, eps
        self.save(*[a for a in (x, w) if a is not None])
        x2 = x.reshape(-1, n)
        ms = self.xp.einsum("ij,ij->i", x2, x2)[:, None]
        ms /= n
        r = (1.0 / self.xp.sqrt(ms + eps)).astype(x.dtype, copy=False)
        xh = x2 * r
        self.xh, self.r = xh, r
        y = xh * w.reshape(-1) if w is not None else xh
        return y.reshape(x.shape)

    def backward(self, g):
        xh, r, n = self.xh, self.r, self.n
        has_w = len(self.saved) > 1
        g2 = g.reshape(-1, n)
        gx = gw = None
        if has_w and self.needs[1]:
            gw = self.xp.einsum("ij,ij->j", g2, xh).reshape(self.saved[1].shape)
        if self.needs[0]:
            gh = g2 * self.saved[1].reshape(-1) if has_w else g2
            c = self.xp.einsum("ij,ij->i", gh, xh)[:, None]
            c /= n
            gx = gh - xh * c
            gx *= r
            gx = gx.reshape(self.saved[0].shape)
        return (gx, gw)[:len(self.needs)]

    def composite(self, x, w=None):
        """x * rsqrt(mean(x^2) + eps) * w, from primitives."""
        shape = x.shape
        x2 = x.reshape(-1, self.n)
        y = x2 * P.rsqrt((x2 * x2).mean(dim=1, keepdim=True) + self.eps)
        if w is not None:
            y = y * w.reshape(-1)
        return y.reshape(shape)
