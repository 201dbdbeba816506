"""Fused ops of the neural-network layers: one forward pass and a hand-derived gradient each.

Each op's docstring gives its math. Ops whose backward reads intermediates define
``composite(...)``: the same function written with chainrule's primitive ops, which the engine
differentiates for ``create_graph=True`` and which the tests hold equal to the fused op.
"""

from __future__ import annotations

import math

import numpy as np

from .. import ops as P
from ..autograd import Op
from ..backend import native
from ..ops.shape import index_add_zeros
from ..random import _rng
from ..tensor import Tensor


def apply_present(op, *inputs, **params):
    """``op.apply`` without the trailing optional inputs that are None (no bias, no mask), so
    the op's inputs are exactly the tensors it saves and differentiates."""
    n = len(inputs)
    while n and inputs[n - 1] is None:
        n -= 1
    return op.apply(*inputs[:n], **params)


# ----------------------------------------------------------------------------- linear


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


# ----------------------------------------------------------------------------- GELU

_SQRT_HALF = 1 / math.sqrt(2)
_INV_SQRT_2PI = 1 / math.sqrt(2 * math.pi)
_SQRT_2_OVER_PI = math.sqrt(2 / math.pi)
# erfc(z) = t exp(-z^2 + P(t)), t = 1 / (1 + z/2) for z >= 0 (Numerical Recipes' Chebyshev
# fit): relative error below 1.2e-7 everywhere, so the tails of Phi stay accurate too
_NR = (-1.26551223, 1.00002368, 0.37409196, 0.09678418, -0.18628806, 0.27886807,
       -1.13520398, 1.48851587, -0.82215223, 0.17087277)


_BLOCK = 65536  # elements per block of a multi-pass elementwise kernel: its temporaries
# stay in the core's cache, so each of its ~20 passes costs a cache pass, not a memory pass


def _phi_float32(xp, x, y=None):
    """Phi(x) = erfc(-x / sqrt 2) / 2 for a float32 array, block by block with every pass in
    place on cache-sized buffers; with ``y`` given, also y = x Phi(x) (the GELU)."""
    f = x.dtype.type
    xf = x.reshape(-1)
    n = xf.size
    out = xp.empty(n, dtype=x.dtype)
    yf = y.reshape(-1) if y is not None else None
    m = max(min(n, _BLOCK), 1)
    z = xp.empty(m, dtype=x.dtype)
    t = xp.empty(m, dtype=x.dtype)
    for s in range(0, n, m):
        e = min(s + m, n)
        k = e - s
        xb, zb, tb, poly = xf[s:e], z[:k], t[:k], out[s:e]
        xp.abs(xb, out=zb)
        zb *= f(_SQRT_HALF)
        xp.multiply(zb, f(0.5), out=tb)
        tb += 1
        xp.reciprocal(tb, out=tb)
        xp.multiply(tb, f(_NR[-1]), out=poly)
        for c in _NR[-2:0:-1]:
            poly += f(c)
            poly *= tb
        poly += f(_NR[0])
        xp.square(zb, out=zb)
        poly -= zb
        xp.exp(poly, out=poly)
        poly *= tb  # = erfc(|x| / sqrt 2)
        poly *= f(-0.5)
        poly += f(0.5)  # = 1/2 - Phi(-|x|) >= 0
        # Phi(x) = 1/2 + sign(x) (1/2 - Phi(-|x|)): x's sign bit put onto the non-negative
        # value with integer ops (NumPy's copysign is several times slower; a where, more so)
        sb = tb.view(xp.uint32)
        xp.bitwise_and(xb.view(xp.uint32), xp.uint32(0x80000000), out=sb)
        pb = poly.view(xp.uint32)
        xp.bitwise_or(pb, sb, out=pb)
        poly += f(0.5)
        if yf is not None:
            xp.multiply(xb, poly, out=yf[s:e])
    return out.reshape(x.shape)


class GeluOp(Op):
    """y = x Phi(x) (Phi the standard normal CDF);  dx = g (Phi(x) + x phi(x)).

    Tanh form: y = x (1 + tanh u) / 2 with u = sqrt(2/pi) (x + 0.044715 x^3);
    dx = g ((1 + t) / 2 + x (1 - t^2) u' / 2),  u' = sqrt(2/pi) (1 + 3 0.044715 x^2).

    Phi (or t) is computed once in forward and saved, so backward is a few passes; float32
    uses the compiled kernel (chainrule._native) where built, else an in-place Chebyshev erfc;
    float64 the exact erf of the op library.
    """

    def forward(self, x, approximate="none"):
        xp = self.xp
        self.approximate = approximate
        self.save(x)
        self.kern = native(x) if approximate == "none" else None  # the compiled kernels
        if self.kern is not None:
            y = np.empty_like(x)
            self.cdf = np.empty_like(x)
            self.kern.gelu_forward(x, y, self.cdf)
            return y
        if approximate == "tanh":
            u = x * x
            u *= 0.044715
            u += 1
            u *= x
            u *= _SQRT_2_OVER_PI
            t = xp.tanh(u, out=u)
            self.t = t
            y = t + 1
            y *= x
            y *= 0.5
            return y
        if x.dtype == xp.float32:
            y = xp.empty(x.shape, dtype=x.dtype)
            self.cdf = _phi_float32(xp, xp.ascontiguousarray(x), y)
            return y
        from ..ops.elementwise import erf

        self.cdf = 0.5 * (1 + erf(xp, x * _SQRT_HALF))
        return x * self.cdf

    def backward(self, g):
        xp = self.xp
        x = self.saved[0]
        if self.approximate == "tanh":
            t = self.t
            d = x * x
            d *= 3 * 0.044715
            d += 1
            d *= _SQRT_2_OVER_PI * 0.5
            d *= x
            d *= 1 - t * t
            d += 0.5 * (1 + t)
            d *= g
            return (d,)
        if self.kern is not None:  # forward ran the compiled kernel
            d = np.empty_like(x)
            self.kern.gelu_backward(x, np.ascontiguousarray(g, dtype=x.dtype), d, self.cdf)
            return (d,)
        d = x * x
        d *= -0.5
        xp.exp(d, out=d)
        d *= x.dtype.type(_INV_SQRT_2PI)
        d *= x
        d += self.cdf
        d *= g
        return (d,)

    def composite(self, x):
        """The op library's (unfused) gelu."""
        return P.gelu(x, approximate=self.approximate)


# ----------------------------------------------------------------------------- embedding


class EmbeddingOp(Op):
    """y = W[idx]   (W: (V, D), idx: integer array of any shape -> y: idx.shape + (D,)).

    dW = zeros(V, D) with row g_k added at idx_k for every position k (repeats accumulate);
    rows at padding_idx get no gradient. idx gets none.
    """

    def forward(self, w, idx, padding_idx=None):
        self.idx, self.wshape, self.padding_idx = idx, w.shape, padding_idx
        return self.xp.take(w, idx, axis=0)

    def backward(self, g):
        flat = self.idx.reshape(-1)
        g2 = g.reshape((-1, self.wshape[1]))
        if self.padding_idx is not None:
            g2 = g2 * (flat != self.padding_idx)[:, None].astype(g2.dtype)
        if isinstance(g2, np.ndarray):
            # sort the positions by row, sum each run of equal rows in one reduceat pass and
            # write each row once (np.add.at is an order of magnitude slower)
            order = np.argsort(flat, kind="stable")
            rows = flat[order]
            starts = np.flatnonzero(np.concatenate(([True], rows[1:] != rows[:-1])))
            gw = np.zeros(self.wshape, dtype=g2.dtype)
            if rows.size:
                gw[rows[starts]] = np.add.reduceat(g2[order], starts, axis=0)
        else:
            gw = index_add_zeros(self.xp, self.wshape, (flat,), g2)
        return gw, None


# ----------------------------------------------------------------------------- dropout


class DropoutOp(Op):
    """y = x m / (1 - p) with m_i ~ Bernoulli(1 - p) from chainrule's generator;
    dx = g m / (1 - p)."""

    def forward(self, x, p=0.5):
        keep = _rng().random(x.shape, dtype=np.float32) >= p
        mask = keep.astype(x.dtype)
        mask *= 1.0 / (1.0 - p)
        self.mask = self.xp.asarray(mask)
        return x * self.mask

    def backward(self, g):
        return (g * self.mask,)


# ----------------------------------------------------------------------------- normalization


def _rows(x, n):
    return x.reshape(-1, n)


def _rowsum(xp, a):
    """a.sum(axis=-1, keepdims=True) for a float array: a matrix-vector product with ones
    (BLAS), several times faster than NumPy's reduction along a short contiguous axis."""
    if xp is not np or a.dtype.kind != "f" or a.ndim < 2 or not a.flags.c_contiguous:
        return a.sum(axis=-1, keepdims=True)
    n = a.shape[-1]
    return (a.reshape(-1, n) @ np.ones(n, dtype=a.dtype)).reshape(a.shape[:-1] + (1,))


def _rowdot(xp, a, b):
    """(a * b).sum(axis=-1, keepdims=True) without the product's temporary."""
    if xp is not np or a.shape != b.shape:
        return (a * b).sum(axis=-1, keepdims=True)
    n = a.shape[-1]
    d = np.einsum("ij,ij->i", a.reshape(-1, n), b.reshape(-1, n))
    return d.reshape(a.shape[:-1] + (1,))


class LayerNormOp(Op):
    """Layer norm over the trailing n elements of each row of x:

    mu = mean x,  var = mean (x - mu)^2,  r = 1 / sqrt(var + eps),  xh = (x - mu) r,
    y = xh w + b.

    With gh = g w:  dx = r (gh - mean(gh) - xh mean(gh xh)),  dw = sum_rows g xh,
    db = sum_rows g  (the means are over the normalized elements of a row).
    """

    def forward(self, x, w=None, b=None, n=1, eps=1e-5):
        self.n, self.eps = n, eps
        self.save(*[a for a in (x, w, b) if a is not None])
        x2 = _rows(x, n)
        self.kern = native(x2, *[a for a in (w, b) if a is not None])
        if self.kern is not None:
            y, xh = np.empty_like(x2), np.empty_like(x2)
            self.r = np.empty((x2.shape[0], 1), dtype=x2.dtype)
            self.kern.layernorm_forward(x2, w, b, y, xh, self.r, n, eps)
            self.xh = xh
            return y.reshape(x.shape)
        mu = _rowsum(self.xp, x2)
        mu /= n
        xh = x2 - mu
        var = self.xp.einsum("ij,ij->i", xh, xh)[:, None]
        var /= n
        r = 1.0 / self.xp.sqrt(var + eps)
        xh *= r.astype(xh.dtype, copy=False)
        self.xh, self.r = xh, r.astype(xh.dtype, copy=False)
        if w is None:
            y = xh.copy()
        else:
            y = xh * w.reshape(-1)
            if b is not None:
                y += b.reshape(-1)
        return y.reshape(x.shape)

    def backward(self, g):
        xh, r, n = self.xh, self.r, self.n
        has_w = len(self.saved) > 1
        has_b = len(self.saved) > 2
        g2 = _rows(g, n)
        gw = gb = gx = None
        if self.kern is not None:  # forward ran the compiled kernel
            return self._native_backward(g2, has_w, has_b)
        if has_w and self.needs[1]:
            gw = self.xp.einsum("ij,ij->j", g2, xh).reshape(self.saved[1].shape)
        if has_b and self.needs[2]:
            gb = g2.sum(axis=0).reshape(self.saved[2].shape)
        if self.needs[0]:
            gx = g2 * self.saved[1].reshape(-1) if has_w else g2.copy()  # gh, then dx in place
            a = _rowsum(self.xp, gx)
            a /= n
            c = self.xp.einsum("ij,ij->i", gx, xh)[:, None]
            c /= n
            gx -= a
            gx -= xh * c
            gx *= r
            gx = gx.reshape(self.saved[0].shape)
        return (gx, gw, gb)[:len(self.needs)]

    def _native_backward(self, g2, has_w, has_b):
        n, needs, saved = self.n, self.needs, self.saved
        g2 = np.ascontiguousarray(g2, dtype=self.xh.dtype)
        gx = np.empty_like(g2) if needs[0] else None
        gw = np.zeros(n) if has_w and needs[1] else None  # float64 accumulators
        gb = np.zeros(n) if has_b and needs[2] else None
        self.kern.layernorm_backward(g2, self.xh, self.r, saved[1] if has_w else None, gx, gw,
                                     gb, n)
        if gx is not None:
            gx = gx.reshape(saved[0].shape)
        if gw is not None:
            gw = gw.astype(g2.dtype).reshape(saved[1].shape)
        if gb is not None:
            gb = gb.astype(g2.dtype).reshape(saved[2].shape)
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
        x2 = _rows(x, n)
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
        g2 = _rows(g, n)
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


# ----------------------------------------------------------------------------- cross-entropy


class CrossEntropyOp(Op):
    """Cross-entropy of logits x (M, C) against class indices t (M,), fused with log-softmax.

    logp = x - logsumexp(x);  with per-class weights w (1 if none), label smoothing e and
    valid_i = [t_i != ignore_index], row i's loss is
        l_i = valid_i ((1 - e) w_{t_i} (-logp_{i,t_i}) + e/C sum_c w_c (-logp_{ic})).
    reduction 'none' gives l, 'sum' sum_i l_i, 'mean' sum_i l_i / sum_i valid_i w_{t_i}.

    Writing l_i = sum_c a_ic (-logp_ic) and using d(-logp_ic)/dx_ij = p_ij - [c = j]:
        dx_ij = s_i (p_ij sum_c a_ic - a_ij),  s_i the upstream gradient of row i
    (divided by the mean's denominator), with p = exp(logp).
    """

    def forward(self, x, t=None, weight=None, ignore_index=-100, label_smoothing=0.0,
                reduction="mean"):
        xp = self.xp
        self.save(x)
        self.t, self.weight, self.ignore_index = t, weight, ignore_index
        self.eps, self.reduction = label_smoothing, reduction
        M, C = x.shape
        logp = x - x.max(axis=1, keepdims=True)
        e = xp.exp(logp)
        logp -= xp.log(e.sum(axis=1, keepdims=True))
        del e
        self.logp = logp
        valid = t != ignore_index
        ti = xp.where(valid, t, 0)
        self.valid, self.ti = valid, ti
        rows = xp.arange(M)
        nll = -logp[rows, ti]
        wt = weight[ti] * valid if weight is not None else valid.astype(x.dtype)
        self.wt = wt.astype(x.dtype, copy=False)
        loss = (1.0 - label_smoothing) * self.wt * nll if label_smoothing else self.wt * nll
        if label_smoothing:
            smooth = -(logp @ weight) if weight is not None else -logp.sum(axis=1)
            loss = loss + (label_smoothing / C) * smooth * valid
        loss = loss.astype(x.dtype, copy=False)
        if reduction == "none":
            return loss
        if reduction == "sum":
            return loss.sum()
        self.denom = self.wt.sum()
        with np.errstate(invalid="ignore", divide="ignore"):
            return (loss.sum() / self.denom).astype(x.dtype)

    def backward(self, g):
        xp = self.xp
        logp, wt, e = self.logp, self.wt, self.eps
        M, C = logp.shape
        if self.reduction == "none":
            s = g
        else:
            if self.reduction == "mean":
                # every row ignored: the mean is 0/0 (nan, as PyTorch) and the gradient 0
                g = g / self.denom if self.denom else g * 0
            s = xp.broadcast_to(g, (M,))
        coef_t = (1.0 - e) * wt * s  # a_{i, t_i} part, times s_i
        if e:
            wsum = self.weight.sum() if self.weight is not None else C
            smooth_s = (e / C) * s * self.valid
            row = coef_t + smooth_s * wsum
        else:
            row = coef_t
        gx = xp.exp(logp)
        gx *= row.astype(gx.dtype, copy=False)[:, None]
        gx[xp.arange(M), self.ti] -= coef_t.astype(gx.dtype, copy=False)
        if e:
            w = self.weight if self.weight is not None else 1.0
            gx -= (smooth_s[:, None] * w).astype(gx.dtype, copy=False)
        return (gx,)

    def composite(self, x):
        """The same loss from primitives: log_softmax, gather, where, sums."""
        M, C = x.shape
        logp = P.log_softmax(x, dim=1)
        valid = self.valid
        w = self.weight
        nll = -P.gather(logp, 1, self.ti.reshape(-1, 1)).reshape(-1)
        wt = Tensor._wrap(self.wt)
        loss = nll * wt * (1.0 - self.eps)
        if self.eps:
            smooth = -(logp * Tensor._wrap(w)).sum(dim=1) if w is not None else -logp.sum(dim=1)
            loss = loss + smooth * Tensor._wrap(valid.astype(x.dtype)) * (self.eps / C)
        if self.reduction == "none":
            return loss
        if self.reduction == "sum":
            return loss.sum()
        return loss.sum() / float(self.wt.sum())


class SoftCrossEntropyOp(Op):
    """Cross-entropy of logits x (M, C) against class probabilities y (M, C):

    y' = (1 - e) y + e/C,  l_i = -sum_c w_c y'_ic logp_ic;  'mean' divides the sum by M.
    dx_ij = s_i (p_ij sum_c w_c y'_ic - w_j y'_ij),  dy_ic = -s_i (1 - e) w_c logp_ic.
    """

    def forward(self, x, y, weight=None, label_smoothing=0.0, reduction="mean"):
        xp = self.xp
        self.save(x, y)
        self.weight, self.eps, self.reduction = weight, label_smoothing, reduction
        M, C = x.shape
        logp = x - x.max(axis=1, keepdims=True)
        logp -= xp.log(xp.exp(logp).sum(axis=1, keepdims=True))
        self.logp = logp
        yw = y * (1.0 - label_smoothing) + label_smoothing / C if label_smoothing else y
        if weight is not None:
            yw = yw * weight
        self.yw = yw
        loss = -(yw * logp).sum(axis=1).astype(x.dtype, copy=False)
        if reduction == "none":
            return loss
        if reduction == "sum":
            return loss.sum()
        return (loss.sum() / M).astype(x.dtype)

    def backward(self, g):
        xp = self.xp
        logp, yw = self.logp, self.yw
        M, C = logp.shape
        s = g if self.reduction == "none" else xp.broadcast_to(
            g / M if self.reduction == "mean" else g, (M,))
        s = s.astype(logp.dtype, copy=False)[:, None]
        gx = gy = None
        if self.needs[0]:
            gx = xp.exp(logp) * yw.sum(axis=1, keepdims=True) - yw
            gx *= s
        if self.needs[1]:
            w = self.weight if self.weight is not None else 1.0
            gy = -(1.0 - self.eps) * s * w * logp
        return gx, gy

    def composite(self, x, y):
        M, C = x.shape
        logp = P.log_softmax(x, dim=1)
        yw = y * (1.0 - self.eps) + self.eps / C if self.eps else y
        if self.weight is not None:
            yw = yw * Tensor._wrap(self.weight)
        loss = -(yw * logp).sum(dim=1)
        if self.reduction == "none":
            return loss
        if self.reduction == "sum":
            return loss.sum()
        return loss.sum() / M


# ----------------------------------------------------------------------------- attention

_causal_cache: dict = {}


def causal_upper(L, S):
    """Boolean (L, S) mask of the positions a causal query may not see (j > i)."""
    key = (L, S)
    m = _causal_cache.get(key)
    if m is None:
        m = np.triu(np.ones((L, S), dtype=bool), 1)
        if len(_causal_cache) > 64:
            _causal_cache.clear()
        _causal_cache[key] = m
    return m


def causal_additive(xp, L, S, dtype):
    """(L, S) of 0 where query i may see key j (j <= i) and -inf above the diagonal."""
    key = (L, S, np.dtype(dtype).str, "add")
    m = _causal_cache.get(key)
    if m is None:
        m = additive_mask(xp, ~causal_upper(L, S), dtype)
        _causal_cache[key] = m
    return m


def additive_mask(xp, allowed, dtype):
    """0 where ``allowed`` is True, -inf elsewhere."""
    m = xp.zeros(allowed.shape, dtype=dtype)
    m[~allowed] = -np.inf
    return m


class AttentionOp(Op):
    """Scaled dot-product attention over the last two dims:

    S = (q k^T) s [+ mask, or -inf where a boolean mask is False / above the diagonal
    when causal],  A = softmax_rows(S),  A' = A D (dropout, D = m / (1 - p)),  o = A' v.

    do = g:  dv = A'^T g,  dA' = g v^T,  dA = dA' D,  dS = A (dA - sum_rows(dA A)),
    dq = s dS k,  dk = s dS^T q,  d(additive mask) = dS.
    """

    def forward(self, q, k, v, mask=None, scale=1.0, causal=False, dropout_p=0.0):
        xp = self.xp
        self.scale, self.causal, self.dropout_p = scale, causal, dropout_p
        self.has_mask = mask is not None
        self.save(*((q, k, v) if mask is None else (q, k, v, mask)))
        # the compiled row softmax takes the scale and the causal mask itself
        self.kern = native(q, k, contiguous=False) if mask is None and scale > 0 else None
        if self.kern is not None:
            S = q @ xp.swapaxes(k, -1, -2)
            self.kern.softmax_rows(S, S.shape[-1], S.shape[-2] if causal else 0, scale)
        else:
            S = (q * q.dtype.type(scale)) @ xp.swapaxes(k, -1, -2)
            # masks are added (0 or -inf): a broadcast add is many times faster than a masked
            # copy
            if mask is not None:
                S += additive_mask(xp, mask, S.dtype) if mask.dtype == np.bool_ else mask
            if causal:
                S += causal_additive(xp, S.shape[-2], S.shape[-1], S.dtype)
            S -= S.max(axis=-1, keepdims=True)
            xp.exp(S, out=S)
            S /= _rowsum(xp, S)
        self.A = S
        self.D = None
        if dropout_p > 0:
            keep = _rng().random(S.shape, dtype=np.float32) >= dropout_p
            D = keep.astype(S.dtype)
            D *= 1.0 / (1.0 - dropout_p)
            self.D = xp.asarray(D)
            S = S * self.D
        return S @ v

    def backward(self, g):
        xp = self.xp
        q, k, v = self.saved[:3]
        A, D = self.A, self.D
        Ad = A if D is None else A * D
        needs = self.needs
        gv = xp.swapaxes(Ad, -1, -2) @ g if needs[2] else None
        del Ad
        gq = gk = gm = None
        if needs[0] or needs[1] or (len(needs) > 3 and needs[3]):
            gS = g @ xp.swapaxes(v, -1, -2)
            if D is not None:
                gS *= D
            if self.kern is not None and native(gS) is not None and gS.shape == A.shape:
                self.kern.softmax_backward(gS, A, A.shape[-1], self.scale)  # dS times the scale
                if needs[0]:
                    gq = gS @ k
                if needs[1]:
                    gk = xp.swapaxes(gS, -1, -2) @ q
                return (gq, gk, gv, gm)[:len(needs)]
            gS -= _rowdot(xp, gS, A)
            gS *= A
            if len(needs) > 3 and needs[3] and self.saved[3].dtype != np.bool_:
                gm = gS
            sc = q.dtype.type(self.scale)
            if needs[0]:
                gq = (gS @ k) * sc
            if needs[1]:
                gk = (xp.swapaxes(gS, -1, -2) @ q) * sc
        return (gq, gk, gv, gm)[:len(needs)]

    def composite(self, q, k, v, mask=None):
        """softmax(q k^T s + mask) (dropout mask reused) @ v, from primitives."""
        S = (q * self.scale) @ k.transpose(-2, -1)
        if mask is not None:
            if mask.dtype == np.bool_:
                S = P.masked_fill(S, P.logical_not(mask), -math.inf)
            else:
                S = S + mask
        if self.causal:
            S = P.masked_fill(S, causal_upper(S.shape[-2], S.shape[-1]), -math.inf)
        A = P.softmax(S, dim=-1)
        if self.D is not None:
            A = A * Tensor._wrap(self.D)
        return A @ v
