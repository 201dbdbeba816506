"""Scaled dot-product attention, fused, and its masks."""

from __future__ import annotations

import math

from ... import ops as P
from ...autograd import Op
from ...backend import numpy_ns as _host
from ...dtypes import bool_, float32
from ...random import _rng
from ...tensor import Tensor

_causal_cache: dict = {}


def causal_upper(L, S):
    """Boolean (L, S) mask of the positions a causal query may not see (j > i)."""
    key = (L, S)
    m = _causal_cache.get(key)
    if m is None:
        m = _host.triu(_host.ones((L, S), dtype=bool_), 1)
        if len(_causal_cache) > 64:
            _causal_cache.clear()
        _causal_cache[key] = m
    return m


def additive_mask(xp, allowed, dtype):
    """0 where ``allowed`` is True, -inf elsewhere."""
    m = xp.zeros(allowed.shape, dtype=dtype)
    m[~allowed] = -math.inf
    return m


class AttentionOp(Op):
    """Scaled dot-product attention over the last two dims:

    S = (q k^T) s [+ mask, or -inf where a boolean mask is False / above the diagonal
    when causal],  A = softmax_rows(S),  A' = A D (dropout, D = m / (1 - p)),  o = A' v.

    do = g:  dv = A'^T g,  dA' = g v^T,  dA = dA' D,  dS = A (dA - sum_rows(dA A)),
    dq = s dS k,  dk = s dS^T q,  d(additive mask) = dS.

    A and dS are the namespace's kernels (``xp.attention_softmax`` and its backward: on
    float32 without a mask, the compiled row softmax with the scale and the causal mask).
    """

    def forward(self, q, k, v, mask=None, scale=1.0, causal=False, dropout_p=0.0):
        xp = self.xp
        self.scale, self.causal, self.dropout_p = scale, causal, dropout_p
        self.has_mask = mask is not None
        self.save(*((q, k, v) if mask is None else (q, k, v, mask)))
        if mask is not None and mask.dtype == bool_:
            mask = additive_mask(xp, mask, xp.result_type(q.dtype, k.dtype))
        S, self.fwd = xp.attention_softmax(q, k, scale, causal, mask)
        self.A = S
        self.D = None
        if dropout_p > 0:
            keep = xp.random_uniform(_rng(), S.shape, float32) >= dropout_p
            D = keep.astype(S.dtype)
            D *= 1.0 / (1.0 - dropout_p)
            self.D = D
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
            gS, sc = xp.attention_softmax_backward(gS, A, self.scale, self.fwd)
            if len(needs) > 3 and needs[3] and self.saved[3].dtype != bool_:
                gm = gS
            if needs[0]:
                gq = gS @ k
                if sc is not None:  # (None: the kernel folded the scale into dS)
                    gq = gq * sc
            if needs[1]:
                gk = xp.swapaxes(gS, -1, -2) @ q
                if sc is not None:
                    gk = gk * sc
        return (gq, gk, gv, gm)[:len(needs)]

    def composite(self, q, k, v, mask=None):
        """softmax(q k^T s + mask) (dropout mask reused) @ v, from primitives."""
        S = (q * self.scale) @ k.transpose(-2, -1)
        if mask is not None:
            if mask.dtype == bool_:
                S = P.masked_fill(S, P.logical_not(mask), -math.inf)
            else:
                S = S + mask
        if self.causal:
            S = P.masked_fill(S, causal_upper(S.shape[-2], S.shape[-1]), -math.inf)
        A = P.softmax(S, dim=-1)
        if self.D is not None:
            A = A * Tensor._wrap(self.D)
        return A @ v
