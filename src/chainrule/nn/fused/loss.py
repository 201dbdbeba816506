"""The fused losses: cross-entropy against class indices and against class probabilities,
each fused with the log-softmax of the logits."""

from __future__ import annotations

from ... import ops as P
from ...autograd import Op
from ...tensor import Tensor


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
        with xp.errstate(invalid="ignore", divide="ignore"):
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
