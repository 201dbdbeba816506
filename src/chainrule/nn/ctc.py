"""Connectionist temporal classification (CTC) loss: F.ctc_loss, a fused op in log space.

For a target l of length S, the extended target l' = (blank, l1, blank, l2, ..., lS, blank)
has 2S + 1 positions. An alignment is a path through them, one per time step, that moves
0 or 1 positions on, or 2 to skip a blank between two different labels; it starts at l'_0
or l'_1 and ends at the last or second-last position. With e_t(s) = log_probs[t, l'_s]:

    alpha_0(s) = e_0(s) for s < 2;  alpha_t(s) = logsumexp(alpha_{t-1}(s), alpha_{t-1}(s-1),
    alpha_{t-1}(s-2) where l'_s != l'_{s-2}) + e_t(s);  nll = -logsumexp(alpha_{T-1}(2S),
    alpha_{T-1}(2S-1)).

beta runs the same recursion backwards from the end, so alpha_t(s) + beta_t(s) - e_t(s) is the
log probability of the alignments through s at t, and with it

    d nll / d log_probs[t, c] = -sum_{s: l'_s = c} exp(alpha_t(s) + beta_t(s) - e_t(s) + nll),

the (negated) posterior of emitting c at t, which is at most 1 in size (Graves et al. 2006,
eq. 16). PyTorch's kernel returns this plus exp(log_probs) (the part that cancels through a
log_softmax, since each time step's posteriors sum to one); here it is the gradient itself,
so the two agree on the logits before a log_softmax, where CTC is used.
"""

from __future__ import annotations

import math
import numbers

from .. import backend
from .. import ops as P
from ..autograd import Op
from ..backend import numpy_ns as _host
from ..tensor import Tensor

_NEG = -1e30  # "log 0" in the recorded composition: finite, so its gradients stay finite


def _extended(xp, targets, blank):
    """(N, 2S + 1) extended targets and the mask of positions that may skip two back."""
    N, S = targets.shape
    ext = xp.full((N, 2 * S + 1), blank, dtype=xp.int64)
    ext[:, 1::2] = targets
    skip = xp.zeros(ext.shape, dtype=bool)
    skip[:, 2:] = (ext[:, 2:] != blank) & (ext[:, 2:] != ext[:, :-2])
    return ext, skip


def _shift(xp, a, k, fill):
    """a moved k positions on along the last dim (k > 0: towards higher s), ``fill`` in."""
    out = xp.full(a.shape, fill, dtype=a.dtype)
    if k > 0:
        out[..., k:] = a[..., :-k]
    else:
        out[..., :k] = a[..., -k:]
    return out


class CTCLossOp(Op):
    """nll[n] of log_probs (T, N, C) for each sample's target (see the module docstring);
    ``zero_infinity`` gives 0 (and a zero gradient) where no alignment exists."""

    def forward(self, lp, targets=None, input_lengths=None, target_lengths=None, blank=0,
                zero_infinity=False):
        xp = self.xp
        T, N, _ = lp.shape
        ext, skip = _extended(xp, targets, blank)
        L = ext.shape[1]
        self.ext, self.skip, self.blank = ext, skip, blank
        self.in_len, self.tg_len, self.zero_infinity = input_lengths, target_lengths, zero_infinity
        e = xp.take_along_axis(lp, xp.broadcast_to(ext, (T, N, L)), axis=2)  # (T, N, L)
        alpha = xp.full((T, N, L), -math.inf, dtype=lp.dtype)
        alpha[0, :, 0] = e[0, :, 0]
        if L > 1:
            alpha[0, :, 1] = xp.where(target_lengths > 0, e[0, :, 1], -math.inf)
        with xp.errstate(invalid="ignore"):
            for t in range(1, T):
                a = alpha[t - 1]
                two = xp.where(skip, _shift(xp, a, 2, -math.inf), -math.inf)
                alpha[t] = xp.logaddexp(xp.logaddexp(a, _shift(xp, a, 1, -math.inf)), two)
                alpha[t] += e[t]
        n = xp.arange(N)
        last = alpha[input_lengths - 1, n]  # (N, L)
        end = 2 * target_lengths
        ll = xp.logaddexp(last[n, end],
                          xp.where(end > 0, last[n, xp.maximum(end - 1, 0)], -math.inf))
        nll = -ll
        self.infinite = xp.isinf(nll)
        if zero_infinity:
            nll = xp.where(self.infinite, 0.0, nll).astype(lp.dtype)
        self.save(lp)
        self.alpha, self.e, self.nll = alpha, e, nll
        return nll

    def _beta(self):
        xp, e, skip = self.xp, self.e, self.skip
        T, N, L = e.shape
        n = xp.arange(N)
        end = 2 * self.tg_len
        skip_next = _shift(xp, skip, -2, False)  # s + 2 may skip back to s
        beta = xp.full((T, N, L), -math.inf, dtype=e.dtype)
        with xp.errstate(invalid="ignore"):
            for t in range(T - 1, -1, -1):
                if t < T - 1:
                    b = beta[t + 1]
                    two = xp.where(skip_next, _shift(xp, b, -2, -math.inf), -math.inf)
                    beta[t] = xp.logaddexp(xp.logaddexp(b, _shift(xp, b, -1, -math.inf)), two)
                    beta[t] += e[t]
                start = n[self.in_len - 1 == t]  # samples whose last step is t
                if start.size:
                    se = end[start]
                    beta[t, start, se] = e[t, start, se]
                    s1 = start[se > 0]
                    beta[t, s1, end[s1] - 1] = e[t, s1, end[s1] - 1]
        return beta

    def backward(self, g):
        xp = self.xp
        (lp,) = self.saved
        T, N, C = lp.shape
        L = self.ext.shape[1]
        nll = xp.where(self.infinite, math.inf, self.nll) if self.zero_infinity else self.nll
        with xp.errstate(invalid="ignore", over="ignore"):
            occ = xp.exp(self.alpha + self._beta() - self.e + nll.reshape(1, N, 1))
        if self.zero_infinity:
            occ = xp.where(self.infinite.reshape(1, N, 1), 0.0, occ)
        occ *= -g.reshape(1, N, 1)
        index = (xp.arange(T).reshape(T, 1, 1), xp.arange(N).reshape(1, N, 1),
                 xp.broadcast_to(self.ext, (T, N, L)))
        return (xp.scatter_add_zeros((T, N, C), index, occ.astype(lp.dtype)),)

    def composite(self, lp):
        """The same losses from primitives (gather, pad, logsumexp, where), with -1e30 for
        log 0 so that no gradient meets inf - inf."""
        xp = _host if isinstance(self.ext, _host.ndarray) else lp.xp
        T, N, _ = lp.shape
        L = self.ext.shape[1]
        e = P.gather(lp, 2, Tensor._wrap(xp.ascontiguousarray(
            xp.broadcast_to(self.ext, (T, N, L)))))
        first = xp.zeros((N, L), dtype=bool)
        first[:, 0] = True
        if L > 1:
            first[:, 1] = self.tg_len > 0
        skip = Tensor._wrap(self.skip)
        alpha = P.where(Tensor._wrap(first), e[0], _NEG)
        alphas = [alpha]
        for t in range(1, T):
            a1 = P.pad(alpha, (1, 0), value=_NEG)[:, :L]
            a2 = P.where(skip, P.pad(alpha, (2, 0), value=_NEG)[:, :L], _NEG)
            alpha = P.logsumexp(P.stack([alpha, a1, a2], 0), 0) + e[t]
            alphas.append(alpha)
        n = xp.arange(N)
        last = P.stack(alphas, 0)[self.in_len - 1, n]  # (N, L)
        end = 2 * self.tg_len
        ends = Tensor._wrap(xp.stack([end, xp.maximum(end - 1, 0)], 1))
        pair = P.where(Tensor._wrap(xp.stack([end >= 0, end > 0], 1)),
                       P.gather(last, 1, ends), _NEG)
        nll = -P.logsumexp(pair, 1)
        if self.zero_infinity:
            nll = P.where(Tensor._wrap(self.infinite), 0.0, nll)
        return nll


def _lengths(v, N, name, op):
    a = v._data if isinstance(v, Tensor) else _host.asarray(v)
    if a.dtype.kind not in "iu" or a.size != N:
        raise ValueError(f"{op}: {name} must be {N} integers (one per sample), got "
                         f"{a.dtype} of shape {tuple(a.shape)}")
    return _host.asarray(a.reshape(N), dtype=_host.int64)


def ctc_loss(log_probs, targets, input_lengths, target_lengths, blank=0, reduction="mean",
             zero_infinity=False):
    """The CTC loss of log_probs (T, N, C) (or (T, C)) for the targets, (N, S) padded or 1-d
    concatenated (sum(target_lengths),); 'mean' divides each loss by its target length, then
    averages over the batch (as PyTorch)."""
    op = "ctc_loss"
    if not isinstance(log_probs, Tensor) or log_probs._data.dtype.kind != "f":
        got = log_probs.dtype if isinstance(log_probs, Tensor) else type(log_probs).__name__
        raise TypeError(f"{op}: log_probs must be a floating Tensor, got {got}")
    if reduction not in ("mean", "sum", "none"):
        raise ValueError(f"{op}: reduction must be 'mean', 'sum' or 'none', got {reduction!r}")
    unbatched = log_probs.ndim == 2
    lp = log_probs.unsqueeze(1) if unbatched else log_probs
    if lp.ndim != 3:
        raise ValueError(f"{op}: log_probs of shape {tuple(log_probs.shape)} received, expected "
                         "(T, N, C) or (T, C)")
    T, N, C = lp.shape
    if not isinstance(blank, numbers.Integral) or not 0 <= blank < C:
        raise ValueError(f"{op}: blank must be a class index in [0, {C}), got {blank!r}")
    tg = backend.to_numpy(targets._data) if isinstance(targets, Tensor) else _host.asarray(targets)
    if tg.dtype.kind not in "iu":
        raise TypeError(f"{op}: targets must be integers, got dtype {tg.dtype}")
    tg = _host.asarray(tg, dtype=_host.int64)
    in_len = _lengths(input_lengths, N, "input_lengths", op)
    tg_len = _lengths(target_lengths, N, "target_lengths", op)
    if in_len.min() < 1 or in_len.max() > T:
        raise ValueError(f"{op}: input_lengths must be in [1, {T}] (T of log_probs), got "
                         f"{in_len.tolist()}")
    if tg_len.min() < 0:
        raise ValueError(f"{op}: target_lengths must be >= 0, got {tg_len.tolist()}")
    if unbatched or tg.ndim == 1:
        if tg.ndim != 1 or tg.size < tg_len.sum():
            raise ValueError(f"{op}: 1-d targets must hold sum(target_lengths) = "
                             f"{int(tg_len.sum())} labels, got shape {tuple(tg.shape)}")
        padded = _host.full((N, max(int(tg_len.max()), 0)), blank, dtype=_host.int64)
        starts = _host.concatenate([[0], _host.cumsum(tg_len)[:-1]])
        for i in range(N):
            padded[i, :tg_len[i]] = tg[starts[i]:starts[i] + tg_len[i]]
    else:
        if tg.ndim != 2 or tg.shape[0] != N or tg.shape[1] < tg_len.max():
            raise ValueError(f"{op}: targets of shape {tuple(tg.shape)} received, expected "
                             f"(N={N}, S) with S >= max(target_lengths) = {int(tg_len.max())}")
        padded = tg.copy()
        padded[_host.arange(padded.shape[1]) >= tg_len.reshape(-1, 1)] = blank
    used = padded[_host.arange(padded.shape[1]) < tg_len.reshape(-1, 1)]
    if used.size and (used.min() < 0 or used.max() >= C or (used == blank).any()):
        raise ValueError(f"{op}: target labels must be classes in [0, {C}) other than the "
                         f"blank {blank}, got {sorted(set(used.tolist()))}")
    xp = lp.xp
    if xp is not _host:
        padded, in_len, tg_len = xp.asarray(padded), xp.asarray(in_len), xp.asarray(tg_len)
    nll = CTCLossOp.apply(lp, targets=padded, input_lengths=in_len, target_lengths=tg_len,
                          blank=int(blank), zero_infinity=bool(zero_infinity))
    if reduction == "none":
        return nll.squeeze(0) if unbatched else nll
    if reduction == "sum":
        return nll.sum()
    div = xp.maximum(tg_len, 1).astype(lp._data.dtype)
    return (nll / Tensor._wrap(div)).mean()
