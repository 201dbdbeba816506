"""2-d convolution: Conv2dOp, a dispatcher over the strategies below, each a function of the
array namespace, the :class:`ConvGeometry` and the arrays.

Shallow kernels (K = Cg kh kw below ``PER_SAMPLE_K``, e.g. the first layer on images) run as
im2col plus a batched GEMM per sample, giving NCHW directly; the columns are kept for the
weight gradient, and for stride 1 the input gradient is the convolution of g with the
flipped kernel (no scatter). Deep kernels without groups run on channels-last patch rows, a
block of samples at a time; deep grouped ones as one GEMM per group over all samples. The
backward of both deep layouts rebuilds what it needs from x, so no column matrix is kept.
"""

from __future__ import annotations

from ... import ops as P
from ...autograd import Op
from .geometry import ConvGeometry

PER_SAMPLE_K = 64  # below this GEMM depth, per-sample GEMMs beat one GEMM plus two transposes


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


def im2col(xp, geo, x, per_sample=False):
    """(G, K, N Ho Wo) columns of x, or (N, G, K, Ho Wo) per sample: one strided copy (none
    for a 1x1 stride-1 kernel per sample)."""
    N, C, H, W = x.shape
    G = geo.G
    if geo.kh == geo.kw == 1 and geo.sh == geo.sw == 1 and not (geo.ph or geo.pw):
        if per_sample:
            return x.reshape(N, G, C // G, H * W)
        return xp.ascontiguousarray(x.transpose(1, 0, 2, 3)).reshape(G, C // G, N * H * W)
    # all windows as a strided view (N, C, Ho, Wo, kh, kw), then one copy into the column
    # layout: (N, C, kh, kw, Ho, Wo) per sample, else (C, kh, kw, N, Ho, Wo)
    win = geo.windows(xp, geo.pad(xp, x, 0), (2, 3))
    if per_sample:
        cols = xp.ascontiguousarray(win.transpose(0, 1, 4, 5, 2, 3))
        return cols.reshape(N, G, (C // G) * geo.kh * geo.kw, geo.Ho * geo.Wo)
    cols = xp.ascontiguousarray(win.transpose(1, 4, 5, 0, 2, 3))
    return cols.reshape(G, (C // G) * geo.kh * geo.kw, N * geo.Ho * geo.Wo)


# ----------------------------------------------------------------------------- forward


def forward_shallow(xp, geo, x, w, b):
    """Y = Wg X per sample, with X the (N, G, K, Ho Wo) columns and Wg = w as (G, O/G, K):
    the output in NCHW layout directly. Returns (y, columns). Without groups, the
    namespace's direct convolution where it applies (no columns: (y, None))."""
    if geo.G == 1:
        y = xp.conv_direct(x, w, b, geo.key())
        if y is not None:
            return y, None
    cols = im2col(xp, geo, x, True)
    y = xp.matmul(w.reshape(geo.G, geo.Og, geo.K), cols).reshape(geo.N, geo.O, geo.Ho, geo.Wo)
    if b is not None:
        y += b.reshape(geo.O, 1, 1)
    return y, cols


def forward_grouped(xp, geo, x, w, b):
    """Y = Wg X, one GEMM per group, with X the (G, K, N Ho Wo) columns of all samples; one
    more pass puts Y in NCHW layout with the bias."""
    y = xp.matmul(w.reshape(geo.G, geo.Og, geo.K), im2col(xp, geo, x))
    return _nchw(xp, y.reshape(geo.O, geo.N, geo.Ho, geo.Wo), b)


def _windows_nhwc(xp, geo, x):
    """All kernel windows of x as a strided (N, Ho, Wo, kh, kw, C) view of the input padded
    in channels-last layout, so a copy of it has runs of C contiguous channels."""
    N, C, H, W = x.shape
    ph, pw = geo.ph, geo.pw
    # kept per layout: only the interior is written, so the zero border stays zero
    shape = (N, geo.Hp, geo.Wp, C)
    xh = xp.scratch_buffer(("xh", shape, ph, pw, H, W), shape, x.dtype, zeros=True)
    xh[:, ph:ph + H, pw:pw + W, :] = x.transpose(0, 2, 3, 1)
    return geo.windows(xp, xh, (1, 2)).transpose(0, 1, 2, 4, 5, 3)


def _patch_rows(xp, geo, x, s, e, rows, win):
    """Patch rows of samples s..e into ``rows``: the namespace's kernel, or a copy of the
    window view (made on first use, kept in ``win``)."""
    if xp.conv_rows(x, geo.key(), s, e, rows) is None:
        if not win:
            win.append(_windows_nhwc(xp, geo, x))
        rows.reshape(e - s, geo.Ho, geo.Wo, geo.kh, geo.kw, geo.C)[...] = win[0][s:e]
    return rows


def forward_rows(xp, geo, x, w, b):
    """Deep kernels without groups: Y = X Wr^T with X the (N Ho Wo, kh kw C) patch rows and
    Wr = w as (O, kh kw C), a block of samples at a time (the rows never exist for the whole
    batch); Y (rows, O) is put in NCHW layout with the bias in the same pass."""
    N, O, Ho, Wo = geo.N, geo.O, geo.Ho, geo.Wo
    K, P_ = geo.K, geo.Ho * geo.Wo
    wr = xp.ascontiguousarray(w.transpose(0, 2, 3, 1)).reshape(O, K)
    nb = geo.samples_per_block(K, x.dtype.itemsize)
    dtype = xp.result_type(x.dtype, w.dtype)
    buf = xp.scratch_buffer("rows", (nb * P_, K), x.dtype)
    ybuf = xp.scratch_buffer("yrows", (nb * P_, O), dtype)
    out = xp.empty((N, O, Ho, Wo), dtype=dtype)
    win = []
    for s in range(0, N, nb):
        e = min(N, s + nb)
        rows = _patch_rows(xp, geo, x, s, e, buf[:(e - s) * P_], win)
        yr = xp.matmul(rows, wr.T, out=ybuf[:(e - s) * P_])
        if xp.to_channels_first(yr.reshape(e - s, P_, O), b,
                                out=out[s:e].reshape(e - s, O, P_)) is not None:
            continue
        yt = yr.reshape(e - s, Ho, Wo, O).transpose(0, 3, 1, 2)
        if b is None:
            out[s:e] = yt
        else:
            xp.add(yt, b.reshape(O, 1, 1), out=out[s:e])
    return out


# ----------------------------------------------------------------------------- backward


def weight_grad_shallow(xp, geo, g, cols):
    """dWg = sum over samples of G X^T, with G = g as (N, G, O/G, Ho Wo) and X the columns
    the forward kept."""
    gT = g.reshape(geo.N, geo.G, geo.Og, geo.Ho * geo.Wo)
    gw = xp.matmul(gT, xp.swapaxes(cols, -1, -2)).sum(axis=0)
    return gw.reshape(geo.O, geo.Cg, geo.kh, geo.kw)


def input_grad_col2im(xp, geo, g, w):
    """dX = col2im(Wg^T G) per sample: each column entry added back onto the input pixel it
    was copied from."""
    N, C, kh, kw, Ho, Wo = geo.N, geo.C, geo.kh, geo.kw, geo.Ho, geo.Wo
    gT = g.reshape(N, geo.G, geo.Og, Ho * Wo)
    w2 = w.reshape(geo.G, geo.Og, geo.K)
    gcols = xp.matmul(xp.swapaxes(w2, -1, -2), gT)  # (N, G, Cg kh kw, Ho Wo)
    gcols = gcols.reshape(N, C, kh, kw, Ho, Wo)
    gpad = xp.zeros((N, C, geo.Hp, geo.Wp), dtype=g.dtype)
    for i in range(kh):
        for j in range(kw):
            geo.view(gpad, i, j)[...] += gcols[:, :, i, j]
    return gpad[:, :, geo.ph:geo.ph + geo.H, geo.pw:geo.pw + geo.W]


def stride1_transposable(geo):
    """Whether the input gradient is a stride-1 convolution of g (stride 1, padding at most
    the dilated kernel's reach)."""
    return (geo.sh == geo.sw == 1 and geo.ph <= geo.dh * (geo.kh - 1)
            and geo.pw <= geo.dw * (geo.kw - 1))


def input_grad_stride1(xp, geo, g, w):
    """dx for stride 1 as a convolution of g (padded by d(k-1) - p) with the flipped,
    channel-transposed kernel: dx[c] = sum_o g[o] * rot180(w[o, c]), i.e. im2col of g and one
    GEMM, with no scatter."""
    G, Og, Cg, kh, kw, dh, dw = geo.G, geo.Og, geo.Cg, geo.kh, geo.kw, geo.dh, geo.dw
    qh, qw = dh * (kh - 1) - geo.ph, dw * (kw - 1) - geo.pw
    # w -> (G, Cg, O/G, kh, kw) flipped, as a (C, O/G, kh, kw) kernel with groups G
    wt = w.reshape(G, Og, Cg, kh, kw)[:, :, :, ::-1, ::-1].transpose(0, 2, 1, 3, 4)
    wt = xp.ascontiguousarray(wt).reshape(geo.C, Og, kh, kw)
    sub = ConvGeometry.make(g.shape, wt.shape, (1, 1), (qh, qw), (dh, dw), G,
                            out_hw=(geo.H, geo.W))
    if sub.K < PER_SAMPLE_K:
        return forward_shallow(xp, sub, g, wt, None)[0]
    return forward_grouped(xp, sub, g, wt, None)


def backward_rows(xp, geo, x, w, g, need_x, need_w):
    """Backward of ``forward_rows`` by blocks of samples, with Gr = g as (rows, O):
    dWr = sum over blocks of Gr^T X (X rebuilt from x);  dX = col2im(Gr Wr), each patch-row
    entry added back onto the pixel it was read from (the namespace's kernel; in NumPy, for
    each kernel offset (i, j), Gr w[:, :, i, j] added onto the pixels that offset read, in
    channels-last layout). Returns (dx, dw), None where not needed."""
    N, C, H, W = x.shape
    O, kh, kw, Ho, Wo = geo.O, geo.kh, geo.kw, geo.Ho, geo.Wo
    K = geo.K
    P_ = Ho * Wo
    gr = xp.scratch_buffer("gr", (N, P_, O), g.dtype)
    if xp.to_channels_last(g.reshape(N, O, P_), out=gr) is None:
        gr.reshape(N, Ho, Wo, O)[...] = g.transpose(0, 2, 3, 1)
    gr = gr.reshape(N * P_, O)
    gx = gw = None
    if need_w:
        # dWr^T = sum over blocks of X^T Gr: (K, O) from blocks of a few samples, small
        # enough to stay in the core's cache (a K x O product is the form that BLAS runs
        # fastest for so deep a sum)
        nb = geo.samples_per_block(K, x.dtype.itemsize, 3 << 17)
        buf = xp.scratch_buffer("wrows", (nb * P_, K), x.dtype)
        gwt = xp.zeros((K, O), dtype=g.dtype)
        win = []
        for s in range(0, N, nb):
            e = min(N, s + nb)
            rows = _patch_rows(xp, geo, x, s, e, buf[:(e - s) * P_], win)
            gwt += rows.T @ gr[s * P_:e * P_]
        gw = xp.ascontiguousarray(gwt.T.reshape(O, kh, kw, C).transpose(0, 3, 1, 2))
    nb = geo.samples_per_block(K, g.dtype.itemsize)
    if need_x:
        # dX = col2im(Gr Wr) block by block, by the namespace's kernel
        wr = xp.ascontiguousarray(w.transpose(0, 2, 3, 1)).reshape(O, K)
        gcols = xp.scratch_buffer("gcols", (nb * P_, K), g.dtype)
        gx = xp.empty((N, C, H, W), dtype=g.dtype)
        for s in range(0, N, nb):
            e = min(N, s + nb)
            gc = xp.matmul(gr[s * P_:e * P_], wr, out=gcols[:(e - s) * P_])
            if xp.conv_rows_adjoint(gc, geo.key(), s, e, gx) is None:
                gx = None
                break
    if need_x and gx is None:
        # NumPy: one (rows, C) block per kernel offset, so that each block is added back onto
        # the padded input gradient in runs of Wo C contiguous values
        wk = xp.ascontiguousarray(w.transpose(2, 3, 0, 1)).reshape(kh * kw, O, C)
        gxh = xp.scratch_buffer("gxh", (N, geo.Hp, geo.Wp, C), g.dtype)
        gxh.fill(0)
        blocks = xp.scratch_buffer("blocks", (kh * kw, nb * P_, C), g.dtype)
        for s in range(0, N, nb):
            e = min(N, s + nb)
            blk = xp.matmul(gr[s * P_:e * P_], wk, out=blocks[:, :(e - s) * P_])
            gs = gxh[s:e]
            for i in range(kh):
                for j in range(kw):
                    gs[:, geo.hs(i), geo.ws(j), :] += blk[i * kw + j].reshape(e - s, Ho, Wo, C)
        ph, pw = geo.ph, geo.pw
        gx = xp.ascontiguousarray(gxh[:, ph:ph + H, pw:pw + W, :].transpose(0, 3, 1, 2))
    return gx, gw


def backward_by_offset(xp, geo, x, w, g, need_x, need_w):
    """Deep grouped kernels, with G the output gradient as (O/G, N Ho Wo): the weight
    gradient as kh*kw GEMMs, one per kernel offset (i, j), dW[:, :, i, j] = G X_ij^T with X_ij
    the (Cg, N Ho Wo) input pixels that offset sees (so no column matrix is kept from
    forward); the input gradient as one GEMM W^T G and col2im. Returns (dx, dw)."""
    N, C, H, W = x.shape
    O, Cg, kh, kw, G, Og = geo.O, geo.Cg, geo.kh, geo.kw, geo.G, geo.Og
    Ho, Wo = geo.Ho, geo.Wo
    M = N * Ho * Wo
    gT = xp.ascontiguousarray(g.transpose(1, 0, 2, 3)).reshape(G, Og, M)
    gx = gw = None
    if need_w:
        xT = geo.pad(xp, x, 0).transpose(1, 0, 2, 3)
        buf = xp.empty((C, N, Ho, Wo), dtype=x.dtype)
        gw = xp.empty((kh, kw, G, Og, Cg), dtype=g.dtype)
        for i in range(kh):
            for j in range(kw):
                buf[...] = geo.view(xT, i, j)
                xp.matmul(gT, xp.swapaxes(buf.reshape(G, Cg, M), -1, -2), out=gw[i, j])
        gw = xp.ascontiguousarray(gw.transpose(2, 3, 4, 0, 1)).reshape(O, Cg, kh, kw)
    if need_x:
        gpad = xp.zeros((C, N, geo.Hp, geo.Wp), dtype=g.dtype)
        # one deep GEMM for all offsets (a temporary the size of the columns, faster than
        # kh*kw shallow ones), then col2im
        gcols = xp.matmul(xp.swapaxes(w.reshape(G, Og, geo.K), -1, -2), gT)
        gcols = gcols.reshape(C, kh, kw, N, Ho, Wo)
        for i in range(kh):
            for j in range(kw):
                geo.view(gpad, i, j)[...] += gcols[:, i, j]
        del gcols
        gx = _nchw(xp, gpad[:, :, geo.ph:geo.ph + H, geo.pw:geo.pw + W])
    return gx, gw


# ----------------------------------------------------------------------------- the op


class Conv2dOp(Op):
    """y[n, o] = b[o] + sum_{c in group(o), i, j} w[o, c, i, j] x_pad[n, c, h s + i d, w s + j d].

    Forward is one GEMM per group, with the columns X = im2col(x) laid out (Cg kh kw, N Ho Wo)
    (a column per output pixel of every sample) and Wg = w as (O/G, Cg kh kw): Y = Wg X.
    With G the output gradient as (O/G, N Ho Wo):  dWg = G X^T;  dX = col2im(Wg^T G), each
    column entry added back onto the pixel it was copied from (for stride 1 with few input
    channels, the convolution of g with the flipped kernel instead);  db = sum of g over
    n, h, w. Which layout runs is chosen from the geometry (see the module docstring).
    """

    def forward(self, x, w, b=None, stride=(1, 1), padding=(0, 0), dilation=(1, 1), groups=1):
        xp = self.xp
        self.save(*((x, w) if b is None else (x, w, b)))
        self.geom = geo = ConvGeometry.make(x.shape, w.shape, stride, padding, dilation, groups)
        self.per_sample = geo.K < PER_SAMPLE_K
        self.cols = None
        if not self.per_sample:
            if groups == 1:
                return forward_rows(xp, geo, x, w, b)
            return forward_grouped(xp, geo, x, w, b)
        y, cols = forward_shallow(xp, geo, x, w, b)
        # the columns are what the weight gradient reads: kept when it is needed
        needs = getattr(self, "needs", None)
        if needs and needs[1]:
            self.cols = cols
        return y

    def backward(self, g):
        xp, geo, needs = self.xp, self.geom, self.needs
        x, w = self.saved[0], self.saved[1]
        gb = xp.channel_sums(g) if len(self.saved) > 2 and needs[2] else None
        if not self.per_sample:
            strategy = backward_rows if geo.G == 1 else backward_by_offset
            gx, gw = strategy(xp, geo, x, w, g, needs[0], needs[1])
            return (gx, gw, gb)[:len(needs)]
        gx = gw = None
        if needs[1]:
            # the columns, unless the forward ran a direct convolution, which keeps none
            cols = self.cols if self.cols is not None else im2col(xp, geo, x, True)
            gw = weight_grad_shallow(xp, geo, g, cols)
        if needs[0]:
            grad_input = input_grad_stride1 if stride1_transposable(geo) else input_grad_col2im
            gx = grad_input(xp, geo, g, w)
        return (gx, gw, gb)[:len(needs)]

    def composite(self, x, w, b=None):
        """The same convolution from primitives: pad, strided slices, stack, matmul."""
        geo = self.geom
        xpad = P.pad(x, (geo.pw, geo.rw, geo.ph, geo.rh)) if (
            geo.ph or geo.pw or geo.rh or geo.rw) else x
        patches = [geo.view(xpad, i, j) for i in range(geo.kh) for j in range(geo.kw)]
        cols = P.stack(patches, dim=2).reshape(geo.N, geo.G, geo.K, geo.Ho * geo.Wo)
        y = (w.reshape(geo.G, geo.Og, geo.K) @ cols).reshape(geo.N, geo.O, geo.Ho, geo.Wo)
        return y if b is None else y + b.reshape(geo.O, 1, 1)
