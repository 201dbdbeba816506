"""Convolution and pooling ops on (N, C, H, W) arrays (conv1d runs as conv2d with H = 1).

Convolution is im2col plus one GEMM: the kh*kw shifted, strided views of the padded input are
copied into columns (G, Cg*kh*kw, N*Ho*Wo), which the weight as (G, O/G, Cg*kh*kw)
multiplies; one more pass puts the result in (N, O, Ho, Wo) layout. Pooling walks the same
kh*kw views elementwise; max pooling saves the argmax offset of each window for backward.
"""

from __future__ import annotations

import math
import threading

import numpy as np

from .. import ops as P
from ..autograd import Op
from ..backend import native


def out_size(n, k, s, p, d, ceil_mode=False):
    """Output length of a window k (dilation d) sliding with stride s over n + 2p (PyTorch's
    rule: with ceil_mode the last window must start inside the input or left padding)."""
    span = n + 2 * p - d * (k - 1) - 1
    o = (span + (s - 1 if ceil_mode else 0)) // s + 1
    if ceil_mode and (o - 1) * s >= n + p:
        o -= 1
    return o


def _pad_for(x, xp, ph, pw, Ho, Wo, kh, kw, sh, sw, dh, dw, value):
    """x padded by (ph, pw) on the left and as much as the windows need on the right."""
    N, C, H, W = x.shape
    rh = max((Ho - 1) * sh + dh * (kh - 1) + 1 - H - ph, 0)
    rw = max((Wo - 1) * sw + dw * (kw - 1) + 1 - W - pw, 0)
    if not (ph or pw or rh or rw):
        return x
    out = xp.full((N, C, ph + H + rh, pw + W + rw), value, dtype=x.dtype)
    out[:, :, ph:ph + H, pw:pw + W] = x
    return out


def _view(a, i, j, Ho, Wo, sh, sw, dh, dw):
    """The (N, C, Ho, Wo) strided view of ``a`` seen by kernel offset (i, j)."""
    return a[:, :, i * dh:i * dh + sh * (Ho - 1) + 1:sh, j * dw:j * dw + sw * (Wo - 1) + 1:sw]


_PER_SAMPLE_K = 64  # below this GEMM depth, per-sample GEMMs beat one GEMM plus two transposes


def _nchw(xp, y, b=None):
    """(C, N, H, W) -> a contiguous (N, C, H, W), adding the per-channel bias in the same pass."""
    C, N, H, W = y.shape
    out = xp.empty((N, C, H, W), dtype=y.dtype)
    yt = y.transpose(1, 0, 2, 3)
    if b is None:
        out[...] = yt
    else:
        xp.add(yt, b.reshape(C, 1, 1), out=out)
    return out


_scratch = threading.local()  # per thread: two threads' convolutions never share a buffer


def _scratch_buffer(xp, key, shape, dtype, zeros=False):
    """A temporary array kept between calls (one per key): the buffers of the deep
    convolution, reused instead of freshly mapped (and page-faulted) memory on every call.
    Only for values that never leave the op. ``zeros``: zero-filled when first made (a key
    that names the exact layout may rely on untouched entries staying zero)."""
    if xp is not np:
        return (xp.zeros if zeros else xp.empty)(shape, dtype=dtype)
    dtype = np.dtype(dtype)
    n = math.prod(shape)
    bufs = _scratch.__dict__
    buf = bufs.get((key, dtype))
    if buf is None or buf.size < n or buf.size > 4 * n:
        if len(bufs) > 32:  # many layer shapes: start over rather than grow without bound
            bufs.clear()
        buf = (np.zeros if zeros else np.empty)(n, dtype=dtype)
        bufs[(key, dtype)] = buf
    return buf[:n].reshape(shape)


def _channel_sums(xp, g):
    """g.sum(axis=(0, 2, 3)) of an (N, C, H, W) array; for a contiguous float array as a
    matrix-vector product with ones (BLAS) over each plane, then a sum over the batch: about
    three times faster than NumPy's reduction over the non-adjacent axes."""
    N, C, H, W = g.shape
    if xp is not np or g.dtype.kind != "f" or not g.flags.c_contiguous:
        return g.sum(axis=(0, 2, 3))
    return (g.reshape(N, C, H * W) @ np.ones(H * W, dtype=g.dtype)).sum(axis=0)


class Conv2dOp(Op):
    """y[n, o] = b[o] + sum_{c in group(o), i, j} w[o, c, i, j] x_pad[n, c, h s + i d, w s + j d].

    Forward is one GEMM per group, with the columns X = im2col(x) laid out (Cg kh kw, N Ho Wo)
    (a column per output pixel of every sample) and Wg = w as (O/G, Cg kh kw): Y = Wg X.
    With G the output gradient as (O/G, N Ho Wo):  dWg = G X^T;  dX = col2im(Wg^T G), each
    column entry added back onto the pixel it was copied from (for stride 1 with few input
    channels, the convolution of g with the flipped kernel instead);  db = sum of g over
    n, h, w. Deep kernels compute both per kernel offset (see ``_backward_by_offset``), so no
    column matrix is kept between forward and backward.
    """

    def forward(self, x, w, b=None, stride=(1, 1), padding=(0, 0), dilation=(1, 1), groups=1):
        xp = self.xp
        self.save(*((x, w) if b is None else (x, w, b)))
        self.stride, self.padding, self.dilation, self.groups = stride, padding, dilation, groups
        N, C, H, W = x.shape
        O, Cg, kh, kw = w.shape
        (sh, sw), (ph, pw), (dh, dw) = stride, padding, dilation
        Ho, Wo = out_size(H, kh, sh, ph, dh), out_size(W, kw, sw, pw, dw)
        self.out_hw = (Ho, Wo)
        # Few input channels (K small, e.g. the first layer on images): per-sample GEMMs on
        # (N, G, K, Ho Wo) columns give NCHW directly; otherwise one large GEMM per group is
        # faster than the two layout passes it costs.
        self.per_sample = Cg * kh * kw < _PER_SAMPLE_K
        if not self.per_sample and groups == 1:
            return self._forward_rows(x, w, b)
        cols = self._im2col(x, self.per_sample)
        y = xp.matmul(w.reshape(groups, O // groups, Cg * kh * kw), cols)
        # per sample, the columns are what the weight gradient reads: kept when it is needed
        # (deep kernels rebuild them one kernel offset at a time in backward instead)
        needs = getattr(self, "needs", None)
        self.cols = cols if needs and needs[1] and self.per_sample else None
        if self.per_sample:
            y = y.reshape(N, O, Ho, Wo)
            if b is not None:
                y += b.reshape(O, 1, 1)
            return y
        return _nchw(xp, y.reshape(O, N, Ho, Wo), b)

    def _windows_nhwc(self, x):
        """All kernel windows of x as a strided (N, Ho, Wo, kh, kw, C) view of the input padded
        in channels-last layout, so a copy of it has runs of C contiguous channels."""
        xp = self.xp
        N, C, H, W = x.shape
        _, _, kh, kw = self.saved[1].shape
        (sh, sw), (ph, pw), (dh, dw) = self.stride, self.padding, self.dilation
        Ho, Wo = self.out_hw
        rh = max((Ho - 1) * sh + dh * (kh - 1) + 1 - H - ph, 0)
        rw = max((Wo - 1) * sw + dw * (kw - 1) + 1 - W - pw, 0)
        # kept per layout: only the interior is written, so the zero border stays zero
        shape = (N, ph + H + rh, pw + W + rw, C)
        xh = _scratch_buffer(xp, ("xh", shape, ph, pw, H, W), shape, x.dtype, zeros=True)
        xh[:, ph:ph + H, pw:pw + W, :] = x.transpose(0, 2, 3, 1)
        win = xp.lib.stride_tricks.sliding_window_view(
            xh, (dh * (kh - 1) + 1, dw * (kw - 1) + 1), axis=(1, 2))  # (N, H', W', C, ekh, ekw)
        win = win[:, :sh * (Ho - 1) + 1:sh, :sw * (Wo - 1) + 1:sw, :, ::dh, ::dw]
        return win.transpose(0, 1, 2, 4, 5, 3)

    def _samples_per_block(self, N, K, itemsize):
        """Samples whose (Ho Wo, K) patch rows fill about 1 MiB: a block that stays in cache
        between being copied and being multiplied."""
        Ho, Wo = self.out_hw
        return max(1, min(N, (1 << 20) // max(1, Ho * Wo * K * itemsize)))

    def _forward_rows(self, x, w, b):
        """Deep kernels without groups: Y = X Wr^T with X the (N Ho Wo, kh kw C) patch rows
        and Wr = w as (O, kh kw C), a block of samples at a time (the rows never exist for the
        whole batch); Y (rows, O) is put in NCHW layout with the bias in the same pass."""
        xp = self.xp
        N = x.shape[0]
        O, C, kh, kw = w.shape
        Ho, Wo = self.out_hw
        K = kh * kw * C
        wr = xp.ascontiguousarray(w.transpose(0, 2, 3, 1)).reshape(O, K)
        win = self._windows_nhwc(x)
        nb = self._samples_per_block(N, K, x.dtype.itemsize)
        buf = _scratch_buffer(xp, "rows", (nb * Ho * Wo, K), x.dtype)
        out = xp.empty((N, O, Ho, Wo), dtype=xp.result_type(x.dtype, w.dtype))
        for s in range(0, N, nb):
            e = min(N, s + nb)
            rows = buf[:(e - s) * Ho * Wo]
            rows.reshape(e - s, Ho, Wo, kh, kw, C)[...] = win[s:e]
            yt = (rows @ wr.T).reshape(e - s, Ho, Wo, O).transpose(0, 3, 1, 2)
            if b is None:
                out[s:e] = yt
            else:
                xp.add(yt, b.reshape(O, 1, 1), out=out[s:e])
        return out

    def _backward_rows(self, g, gb):
        """Backward of ``_forward_rows`` by the same blocks of samples, with Gr = g as
        (rows, O):  dWr = sum over blocks of Gr^T X (X rebuilt from x);  dX: for each kernel
        offset (i, j), Gr w[:, :, i, j] added back onto the input pixels that offset read
        (col2im in channels-last layout)."""
        xp = self.xp
        x, w = self.saved[0], self.saved[1]
        N, C, H, W = x.shape
        O, _, kh, kw = w.shape
        K = kh * kw * C
        Ho, Wo = self.out_hw
        (sh, sw), (ph, pw), (dh, dw) = self.stride, self.padding, self.dilation
        P = Ho * Wo
        gr = _scratch_buffer(xp, "gr", (N, Ho, Wo, O), g.dtype)
        gr[...] = g.transpose(0, 2, 3, 1)
        gr = gr.reshape(N * P, O)
        nb = self._samples_per_block(N, K, g.dtype.itemsize)
        gx = gw = None
        if self.needs[1]:
            win = self._windows_nhwc(x)
            buf = _scratch_buffer(xp, "rows", (nb * P, K), x.dtype)
            gwr = xp.zeros((O, K), dtype=g.dtype)
            for s in range(0, N, nb):
                e = min(N, s + nb)
                rows = buf[:(e - s) * P]
                rows.reshape(e - s, Ho, Wo, kh, kw, C)[...] = win[s:e]
                gwr += gr[s * P:e * P].T @ rows
            gw = xp.ascontiguousarray(gwr.reshape(O, kh, kw, C).transpose(0, 3, 1, 2))
        if self.needs[0]:
            # one (rows, C) block per kernel offset, so that each block is added back onto
            # the padded input gradient in runs of Wo C contiguous values
            wk = xp.ascontiguousarray(w.transpose(2, 3, 0, 1)).reshape(kh * kw, O, C)
            Hp = max(H + ph, (Ho - 1) * sh + dh * (kh - 1) + 1)
            Wp = max(W + pw, (Wo - 1) * sw + dw * (kw - 1) + 1)
            gxh = _scratch_buffer(xp, "gxh", (N, Hp, Wp, C), g.dtype)
            gxh.fill(0)
            blocks = _scratch_buffer(xp, "blocks", (kh * kw, nb * P, C), g.dtype)
            for s in range(0, N, nb):
                e = min(N, s + nb)
                blk = xp.matmul(gr[s * P:e * P], wk, out=blocks[:, :(e - s) * P])
                gs = gxh[s:e]
                for i in range(kh):
                    for j in range(kw):
                        gs[:, i * dh:i * dh + sh * (Ho - 1) + 1:sh,
                           j * dw:j * dw + sw * (Wo - 1) + 1:sw, :] += \
                            blk[i * kw + j].reshape(e - s, Ho, Wo, C)
            gx = xp.ascontiguousarray(gxh[:, ph:ph + H, pw:pw + W, :].transpose(0, 3, 1, 2))
        return (gx, gw, gb)[:len(self.needs)]

    def _im2col(self, x, per_sample=False):
        """(G, Cg*kh*kw, N*Ho*Wo) columns of x, or (N, G, Cg*kh*kw, Ho*Wo) per sample: one
        strided copy (none for a 1x1 stride-1 kernel per sample)."""
        xp = self.xp
        N, C, H, W = x.shape
        _, _, kh, kw = self.saved[1].shape
        (sh, sw), (ph, pw), (dh, dw) = self.stride, self.padding, self.dilation
        Ho, Wo = self.out_hw
        G = self.groups
        if kh == kw == 1 and sh == sw == 1 and not (ph or pw):
            if per_sample:
                return x.reshape(N, G, C // G, H * W)
            return xp.ascontiguousarray(x.transpose(1, 0, 2, 3)).reshape(G, C // G, N * H * W)
        xpad = _pad_for(x, xp, ph, pw, Ho, Wo, kh, kw, sh, sw, dh, dw, 0)
        # all windows as a strided view (N, C, H', W', ekh, ekw), then one copy into the
        # (C, kh, kw, N, Ho, Wo) column layout
        win = xp.lib.stride_tricks.sliding_window_view(
            xpad, (dh * (kh - 1) + 1, dw * (kw - 1) + 1), axis=(2, 3))
        win = win[:, :, :sh * (Ho - 1) + 1:sh, :sw * (Wo - 1) + 1:sw, ::dh, ::dw]
        if per_sample:
            cols = xp.ascontiguousarray(win.transpose(0, 1, 4, 5, 2, 3))
            return cols.reshape(N, G, (C // G) * kh * kw, Ho * Wo)
        cols = xp.ascontiguousarray(win.transpose(1, 4, 5, 0, 2, 3))
        return cols.reshape(G, (C // G) * kh * kw, N * Ho * Wo)

    def backward(self, g):
        xp = self.xp
        x, w = self.saved[0], self.saved[1]
        N, C, H, W = x.shape
        O, Cg, kh, kw = w.shape
        G = self.groups
        Ho, Wo = self.out_hw
        (sh, sw), (ph, pw), (dh, dw) = self.stride, self.padding, self.dilation
        gx = gw = gb = None
        if len(self.saved) > 2 and self.needs[2]:
            gb = _channel_sums(xp, g)
        if not self.per_sample:
            if G == 1:
                return self._backward_rows(g, gb)
            return self._backward_by_offset(g, gb)
        stride1 = sh == sw == 1 and ph <= dh * (kh - 1) and pw <= dw * (kw - 1)
        gT = g.reshape(N, G, O // G, Ho * Wo)
        if self.needs[1]:
            gw = xp.matmul(gT, xp.swapaxes(self.cols, -1, -2)).sum(axis=0).reshape(w.shape)
        if self.needs[0]:
            w2 = w.reshape(G, O // G, Cg * kh * kw)
            if stride1:
                gx = self._grad_input_stride1(g, w)
            else:
                gcols = xp.matmul(xp.swapaxes(w2, -1, -2), gT)  # (N, G, Cg kh kw, Ho Wo)
                gcols = gcols.reshape(N, C, kh, kw, Ho, Wo)
                Hp = max(H + ph, (Ho - 1) * sh + dh * (kh - 1) + 1)
                Wp = max(W + pw, (Wo - 1) * sw + dw * (kw - 1) + 1)
                gpad = xp.zeros((N, C, Hp, Wp), dtype=g.dtype)
                for i in range(kh):
                    for j in range(kw):
                        _view(gpad, i, j, Ho, Wo, sh, sw, dh, dw)[...] += gcols[:, :, i, j]
                gx = gpad[:, :, ph:ph + H, pw:pw + W]
        return (gx, gw, gb)[:len(self.needs)]

    def _backward_by_offset(self, g, gb):
        """Deep kernels, with G the output gradient as (O/G, N Ho Wo): the weight gradient as
        kh*kw GEMMs, one per kernel offset (i, j), dW[:, :, i, j] = G X_ij^T with X_ij the
        (Cg, N Ho Wo) input pixels that offset sees (so no column matrix is kept from forward);
        the input gradient as one GEMM W^T G and col2im."""
        xp = self.xp
        x, w = self.saved[0], self.saved[1]
        N, C, H, W = x.shape
        O, Cg, kh, kw = w.shape
        G = self.groups
        Og = O // G
        Ho, Wo = self.out_hw
        (sh, sw), (ph, pw), (dh, dw) = self.stride, self.padding, self.dilation
        M = N * Ho * Wo
        gT = xp.ascontiguousarray(g.transpose(1, 0, 2, 3)).reshape(G, Og, M)
        gx = gw = None

        if self.needs[1]:
            xT = _pad_for(x, xp, ph, pw, Ho, Wo, kh, kw, sh, sw, dh, dw, 0).transpose(1, 0, 2, 3)
            buf = xp.empty((C, N, Ho, Wo), dtype=x.dtype)
            gw = xp.empty((kh, kw, G, Og, Cg), dtype=g.dtype)
            for i in range(kh):
                for j in range(kw):
                    buf[...] = _view(xT, i, j, Ho, Wo, sh, sw, dh, dw)
                    xp.matmul(gT, xp.swapaxes(buf.reshape(G, Cg, M), -1, -2), out=gw[i, j])
            gw = xp.ascontiguousarray(gw.transpose(2, 3, 4, 0, 1)).reshape(O, Cg, kh, kw)
        if self.needs[0]:
            Hp = max(H + ph, (Ho - 1) * sh + dh * (kh - 1) + 1)
            Wp = max(W + pw, (Wo - 1) * sw + dw * (kw - 1) + 1)
            gpad = xp.zeros((C, N, Hp, Wp), dtype=g.dtype)
            # one deep GEMM for all offsets (a temporary the size of the columns, faster than
            # kh*kw shallow ones), then col2im
            gcols = xp.matmul(xp.swapaxes(w.reshape(G, Og, Cg * kh * kw), -1, -2), gT)
            gcols = gcols.reshape(C, kh, kw, N, Ho, Wo)
            for i in range(kh):
                for j in range(kw):
                    _view(gpad, i, j, Ho, Wo, sh, sw, dh, dw)[...] += gcols[:, i, j]
            del gcols
            gx = _nchw(xp, gpad[:, :, ph:ph + H, pw:pw + W])
        return (gx, gw, gb)[:len(self.needs)]

    def _grad_input_stride1(self, g, w):
        """dx for stride 1 as a convolution of g (padded by d(k-1) - p) with the flipped,
        channel-transposed kernel: dx[c] = sum_o g[o] * rot180(w[o, c]), i.e. im2col of g and
        one GEMM, with no scatter."""
        xp = self.xp
        x = self.saved[0]
        N, C, H, W = x.shape
        O, Cg, kh, kw = w.shape
        G = self.groups
        (ph, pw), (dh, dw) = self.padding, self.dilation
        qh, qw = dh * (kh - 1) - ph, dw * (kw - 1) - pw
        # w -> (G, Cg, O/G, kh, kw) flipped, as a (C, O/G, kh, kw) kernel with groups G
        wt = w.reshape(G, O // G, Cg, kh, kw)[:, :, :, ::-1, ::-1].transpose(0, 2, 1, 3, 4)
        wt = xp.ascontiguousarray(wt).reshape(G, Cg, (O // G) * kh * kw)
        sub = Conv2dOp.__new__(Conv2dOp)
        sub.xp, sub.stride, sub.padding, sub.dilation, sub.groups = xp, (1, 1), (qh, qw), \
            (dh, dw), G
        sub.saved = (g, wt.reshape(C, O // G, kh, kw))
        sub.out_hw = (H, W)
        if (O // G) * kh * kw < _PER_SAMPLE_K:
            cols = sub._im2col(g, True)  # (N, G, (O/G) kh kw, H W)
            return xp.matmul(wt, cols).reshape(N, C, H, W)
        cols = sub._im2col(g)  # (G, (O/G) kh kw, N H W)
        return _nchw(xp, xp.matmul(wt, cols).reshape(C, N, H, W))

    def composite(self, x, w, b=None):
        """The same convolution from primitives: pad, strided slices, stack, matmul."""
        N, C, H, W = x.shape
        O, Cg, kh, kw = w.shape
        G = self.groups
        Ho, Wo = self.out_hw
        (sh, sw), (ph, pw), (dh, dw) = self.stride, self.padding, self.dilation
        rh = max((Ho - 1) * sh + dh * (kh - 1) + 1 - H - ph, 0)
        rw = max((Wo - 1) * sw + dw * (kw - 1) + 1 - W - pw, 0)
        xpad = P.pad(x, (pw, rw, ph, rh)) if (ph or pw or rh or rw) else x
        patches = [_view(xpad, i, j, Ho, Wo, sh, sw, dh, dw)
                   for i in range(kh) for j in range(kw)]
        cols = P.stack(patches, dim=2).reshape(N, G, Cg * kh * kw, Ho * Wo)
        y = (w.reshape(G, O // G, Cg * kh * kw) @ cols).reshape(N, O, Ho, Wo)
        return y if b is None else y + b.reshape(O, 1, 1)


class MaxPool2dOp(Op):
    """y[n, c, h, w] = max over the window of x_pad (-inf padding); the first maximum's offset
    k = i kw + j is saved (after the compiled 2x2 forward, found again from x and y).  dx = g
    routed to the argmax of each window (accumulated where windows overlap)."""

    def forward(self, x, kernel=(2, 2), stride=(2, 2), padding=(0, 0), dilation=(1, 1),
                out_hw=(1, 1)):
        xp = self.xp
        self.save(x)
        self.kernel, self.stride, self.padding, self.dilation = kernel, stride, padding, dilation
        self.out_hw = out_hw
        (kh, kw), (sh, sw), (ph, pw), (dh, dw) = kernel, stride, padding, dilation
        Ho, Wo = out_hw
        N, C, H, W = x.shape
        # the usual 2x2 pool with stride 2 inside x: the compiled kernel, which saves no argmax
        # (the backward finds each window's first maximum again from x and y, when it runs)
        kern = (native(x) if kernel == stride == (2, 2) and padding == (0, 0)
                and dilation == (1, 1) and 2 * Ho <= H and 2 * Wo <= W else None)
        if kern is not None:
            y = np.empty((N, C, Ho, Wo), dtype=x.dtype)
            kern.maxpool2_forward(x, y, N * C, H, W, Ho, Wo)
            self.save(x, y)
            self.arg = None
            return y
        xpad = _pad_for(x, xp, ph, pw, Ho, Wo, kh, kw, sh, sw, dh, dw, -math.inf)
        # a tournament over the kh*kw window views: each round keeps the larger of two
        # neighbours (the left one, holding the earlier offsets, on ties: PyTorch's first max)
        level = [(_view(xpad, k // kw, k % kw, Ho, Wo, sh, sw, dh, dw), k)
                 for k in range(kh * kw)]
        code = xp.uint8 if kh * kw < 256 else xp.int32
        while len(level) > 1:
            nxt = []
            for (v1, a1), (v2, a2) in zip(level[0::2], level[1::2]):
                right = v2 > v1
                if isinstance(a1, int):  # first round: offsets are constants, a1 + right
                    arg = right.view(xp.uint8) if code == xp.uint8 else right.astype(code)
                    arg = arg + code(a1) if a1 else arg
                elif isinstance(a2, int):
                    arg = a1 + right.astype(code) * (code(a2) - a1)
                else:  # a2 > a1 everywhere (the right half holds the later offsets)
                    arg = a2 - a1
                    arg *= right
                    arg += a1
                nxt.append((xp.maximum(v1, v2), arg))
            if len(level) % 2:
                nxt.append(level[-1])
            level = nxt
        best, arg = level[0]
        if isinstance(arg, int) or best.base is not None:  # a 1x1 window: still a view of x
            best = best.copy()
            arg = xp.full(best.shape, arg, dtype=code) if isinstance(arg, int) else arg
        self.arg = arg
        return best

    def backward(self, g):
        xp = self.xp
        x = self.saved[0]
        N, C, H, W = x.shape
        (kh, kw), (sh, sw), (ph, pw), (dh, dw) = (self.kernel, self.stride, self.padding,
                                                  self.dilation)
        Ho, Wo = self.out_hw
        arg = self.arg if self.arg is not None else self._first_max_offsets()
        Hp = max(H + ph, (Ho - 1) * sh + dh * (kh - 1) + 1)
        Wp = max(W + pw, (Wo - 1) * sw + dw * (kw - 1) + 1)
        disjoint = sh >= dh * (kh - 1) + 1 and sw >= dw * (kw - 1) + 1
        # windows that tile the input exactly write every pixel once: no zero fill needed
        tiled = (disjoint and sh == dh * (kh - 1) + 1 and sw == dw * (kw - 1) + 1
                 and dh == dw == 1 and not (ph or pw) and Ho * sh == H and Wo * sw == W)
        gpad = (xp.empty if tiled else xp.zeros)((N, C, Hp, Wp), dtype=g.dtype)
        mask = xp.empty(arg.shape, dtype=g.dtype)
        for k in range(kh * kw):
            view = _view(gpad, k // kw, k % kw, Ho, Wo, sh, sw, dh, dw)
            # the mask as 0/1 in g's dtype: a same-dtype multiply, not a casting loop
            xp.equal(arg, k, out=mask, casting="unsafe")
            if disjoint:  # every input pixel is in at most one window: written once
                xp.multiply(g, mask, out=view)
            else:
                view += g * mask
        return (gpad[:, :, ph:ph + H, pw:pw + W],)

    def _first_max_offsets(self):
        """After the compiled 2x2 forward (which keeps no argmax): the offset k = 2 i + j of
        each window's first maximum, found from x and y (the earliest offset wins ties)."""
        x, y = self.saved
        Ho, Wo = self.out_hw
        # with n_k = [x_k != y] as 0/1: k = n0 (1 + n1 (1 + n2)), in uint8 arithmetic (a
        # masked copy or np.where is many times slower)
        n0, n1, n2 = ((_view(x, k // 2, k % 2, Ho, Wo, 2, 2, 1, 1) != y).view(np.uint8)
                      for k in range(3))
        arg = n2 + np.uint8(1)
        arg *= n1
        arg += np.uint8(1)
        arg *= n0
        return arg

    def indices(self, W):
        """PyTorch's return_indices: the flat h * W + w input position of each maximum."""
        xp = self.xp
        (_, kw), (sh, sw), (ph, pw), (dh, dw) = (self.kernel, self.stride, self.padding,
                                                 self.dilation)
        Ho, Wo = self.out_hw
        arg = self.arg if self.arg is not None else self._first_max_offsets()
        a = arg.astype(xp.int64)
        h = xp.arange(Ho).reshape(Ho, 1) * sh - ph + (a // kw) * dh
        w = xp.arange(Wo) * sw - pw + (a % kw) * dw
        return h * W + w

    def composite(self, x):
        """max over the stacked window views of the -inf-padded input, from primitives."""
        N, C, H, W = x.shape
        (kh, kw), (sh, sw), (ph, pw), (dh, dw) = (self.kernel, self.stride, self.padding,
                                                  self.dilation)
        Ho, Wo = self.out_hw
        rh = max((Ho - 1) * sh + dh * (kh - 1) + 1 - H - ph, 0)
        rw = max((Wo - 1) * sw + dw * (kw - 1) + 1 - W - pw, 0)
        xpad = P.pad(x, (pw, rw, ph, rh), value=-math.inf) if (ph or pw or rh or rw) else x
        views = [_view(xpad, i, j, Ho, Wo, sh, sw, dh, dw) for i in range(kh) for j in range(kw)]
        return P.max(P.stack(views, dim=-1), dim=-1).values


def avg_divisor(xp, H, W, kernel, stride, padding, out_hw, count_include_pad, dtype):
    """(Ho, Wo) window sizes that avg_pool2d divides by: the window clipped to the padded input
    (count_include_pad) or to the input itself."""
    counts = []
    for n, k, s, p, o in zip((H, W), kernel, stride, padding, out_hw):
        start = xp.arange(o) * s - p
        end = xp.minimum(start + k, n + p)
        if not count_include_pad:
            start, end = xp.maximum(start, 0), xp.minimum(end, n)
        counts.append((end - start).astype(dtype))
    return counts[0].reshape(-1, 1) * counts[1]


class AvgPool2dOp(Op):
    """y = (sum over the window of x_pad, zero padding) / divisor;  dx = g / divisor added to
    every pixel of its window."""

    def forward(self, x, kernel=(2, 2), stride=(2, 2), padding=(0, 0), out_hw=(1, 1),
                divisor=None):
        xp = self.xp
        self.save(x)
        self.kernel, self.stride, self.padding, self.out_hw = kernel, stride, padding, out_hw
        self.divisor = divisor
        (kh, kw), (sh, sw), (ph, pw) = kernel, stride, padding
        Ho, Wo = out_hw
        xpad = _pad_for(x, xp, ph, pw, Ho, Wo, kh, kw, sh, sw, 1, 1, 0)
        y = _view(xpad, 0, 0, Ho, Wo, sh, sw, 1, 1).copy()
        for k in range(1, kh * kw):
            y += _view(xpad, k // kw, k % kw, Ho, Wo, sh, sw, 1, 1)
        y /= divisor
        return y

    def backward(self, g):
        xp = self.xp
        x = self.saved[0]
        N, C, H, W = x.shape
        (kh, kw), (sh, sw), (ph, pw) = self.kernel, self.stride, self.padding
        Ho, Wo = self.out_hw
        Hp = max(H + ph, (Ho - 1) * sh + kh)
        Wp = max(W + pw, (Wo - 1) * sw + kw)
        gpad = xp.zeros((N, C, Hp, Wp), dtype=g.dtype)
        gd = g / self.divisor
        for k in range(kh * kw):
            _view(gpad, k // kw, k % kw, Ho, Wo, sh, sw, 1, 1)[...] += gd
        return (gpad[:, :, ph:ph + H, pw:pw + W],)

    def composite(self, x):
        N, C, H, W = x.shape
        (kh, kw), (sh, sw), (ph, pw) = self.kernel, self.stride, self.padding
        Ho, Wo = self.out_hw
        rh = max((Ho - 1) * sh + kh - H - ph, 0)
        rw = max((Wo - 1) * sw + kw - W - pw, 0)
        xpad = P.pad(x, (pw, rw, ph, rh)) if (ph or pw or rh or rw) else x
        views = [_view(xpad, i, j, Ho, Wo, sh, sw, 1, 1) for i in range(kh) for j in range(kw)]
        return P.stack(views, dim=-1).sum(dim=-1) / self.divisor
