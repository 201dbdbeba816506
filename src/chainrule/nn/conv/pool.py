"""2-d max and average pooling: elementwise walks over the kh*kw window views of the padded
input; max pooling saves the argmax offset of each window for backward. The usual 2x2 window
with stride 2 runs the namespace's kernels in both directions where they apply."""

from __future__ import annotations

import math

from ... import ops as P
from ...autograd import Op
from .geometry import ConvGeometry


class MaxPool2dOp(Op):
    """y[n, c, h, w] = max over the window of x_pad (-inf padding); the first maximum's offset
    k = i kw + j is saved (after the compiled 2x2 forward, found again from x and y).  dx = g
    routed to the argmax of each window (accumulated where windows overlap)."""

    def forward(self, x, kernel=(2, 2), stride=(2, 2), padding=(0, 0), dilation=(1, 1),
                out_hw=(1, 1)):
        xp = self.xp
        self.save(x)
        self.geom = geo = ConvGeometry.pool(x.shape, kernel, stride, padding, dilation, out_hw)
        kh, kw, Ho, Wo = geo.kh, geo.kw, geo.Ho, geo.Wo
        # the usual 2x2 pool with stride 2 inside x: the namespace's kernel, which saves no
        # argmax (the backward finds each window's first maximum again from x and y)
        if (kernel == stride == (2, 2) and padding == (0, 0) and dilation == (1, 1)
                and 2 * Ho <= geo.H and 2 * Wo <= geo.W):
            y = xp.max_pool2x2(x, Ho, Wo)
            if y is not None:
                self.save(x, y)
                self.arg = None
                return y
        xpad = geo.pad(xp, x, -math.inf)
        # a tournament over the kh*kw window views: each round keeps the larger of two
        # neighbours (the left one, holding the earlier offsets, on ties: PyTorch's first max)
        level = [(geo.view(xpad, k // kw, k % kw), k) for k in range(kh * kw)]
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
        xp, geo = self.xp, self.geom
        kh, kw, sh, sw, dh, dw = geo.kh, geo.kw, geo.sh, geo.sw, geo.dh, geo.dw
        if self.arg is None:  # after the compiled 2x2 forward: its compiled backward
            gx = xp.max_pool2x2_backward(*self.saved, g)
            if gx is not None:
                return (gx,)
        arg = self.arg if self.arg is not None else self._first_max_offsets()
        disjoint = sh >= dh * (kh - 1) + 1 and sw >= dw * (kw - 1) + 1
        # windows that tile the input exactly write every pixel once: no zero fill needed
        tiled = (disjoint and sh == dh * (kh - 1) + 1 and sw == dw * (kw - 1) + 1
                 and dh == dw == 1 and not (geo.ph or geo.pw) and geo.Ho * sh == geo.H
                 and geo.Wo * sw == geo.W)
        gpad = (xp.empty if tiled else xp.zeros)((geo.N, geo.C, geo.Hp, geo.Wp), dtype=g.dtype)
        mask = xp.empty(arg.shape, dtype=g.dtype)
        for k in range(kh * kw):
            view = geo.view(gpad, k // kw, k % kw)
            # the mask as 0/1 in g's dtype: a same-dtype multiply, not a casting loop
            xp.equal(arg, k, out=mask, casting="unsafe")
            if disjoint:  # every input pixel is in at most one window: written once
                xp.multiply(g, mask, out=view)
            else:
                view += g * mask
        return (gpad[:, :, geo.ph:geo.ph + geo.H, geo.pw:geo.pw + geo.W],)

    def _first_max_offsets(self):
        """After the compiled 2x2 forward (which keeps no argmax): the offset k = 2 i + j of
        each window's first maximum, found from x and y (the earliest offset wins ties)."""
        xp, geo = self.xp, self.geom
        x, y = self.saved
        # with n_k = [x_k != y] as 0/1: k = n0 (1 + n1 (1 + n2)), in uint8 arithmetic (a
        # masked copy or a where is many times slower)
        n0, n1, n2 = ((geo.view(x, k // 2, k % 2) != y).view(xp.uint8) for k in range(3))
        arg = n2 + xp.uint8(1)
        arg *= n1
        arg += xp.uint8(1)
        arg *= n0
        return arg

    def indices(self, W):
        """PyTorch's return_indices: the flat h * W + w input position of each maximum."""
        xp, geo = self.xp, self.geom
        arg = self.arg if self.arg is not None else self._first_max_offsets()
        a = arg.astype(xp.int64)
        h = xp.arange(geo.Ho).reshape(geo.Ho, 1) * geo.sh - geo.ph + (a // geo.kw) * geo.dh
        w = xp.arange(geo.Wo) * geo.sw - geo.pw + (a % geo.kw) * geo.dw
        return h * W + w

    def composite(self, x):
        """max over the stacked window views of the -inf-padded input, from primitives."""
        geo = self.geom
        xpad = P.pad(x, (geo.pw, geo.rw, geo.ph, geo.rh), value=-math.inf) if (
            geo.ph or geo.pw or geo.rh or geo.rw) else x
        views = [geo.view(xpad, i, j) for i in range(geo.kh) for j in range(geo.kw)]
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
    every pixel of its window. The usual 2x2 pool with stride 2 runs the namespace's kernels
    (the same sums, in the same order)."""

    def forward(self, x, kernel=(2, 2), stride=(2, 2), padding=(0, 0), out_hw=(1, 1),
                divisor=None):
        xp = self.xp
        self.save(x)
        self.geom = geo = ConvGeometry.pool(x.shape, kernel, stride, padding, (1, 1), out_hw)
        self.divisor = divisor
        # 2x2 windows with stride 2 inside x: the namespace's kernel (and its backward)
        self.fast = (kernel == stride == (2, 2) and padding == (0, 0) and 2 * geo.Ho <= geo.H
                     and 2 * geo.Wo <= geo.W)
        if self.fast:
            y = xp.avg_pool2x2(x, geo.Ho, geo.Wo, divisor)
            if y is not None:
                return y
            self.fast = False
        xpad = geo.pad(xp, x, 0)
        y = geo.view(xpad, 0, 0).copy()
        for k in range(1, geo.kh * geo.kw):
            y += geo.view(xpad, k // geo.kw, k % geo.kw)
        y /= divisor
        return y

    def backward(self, g):
        xp, geo = self.xp, self.geom
        if self.fast:
            gx = xp.avg_pool2x2_backward(g, geo.H, geo.W, self.divisor)
            if gx is not None:
                return (gx,)
        gpad = xp.zeros((geo.N, geo.C, geo.Hp, geo.Wp), dtype=g.dtype)
        gd = g / self.divisor
        for k in range(geo.kh * geo.kw):
            geo.view(gpad, k // geo.kw, k % geo.kw)[...] += gd
        return (gpad[:, :, geo.ph:geo.ph + geo.H, geo.pw:geo.pw + geo.W],)

    def composite(self, x):
        geo = self.geom
        xpad = P.pad(x, (geo.pw, geo.rw, geo.ph, geo.rh)) if (
            geo.ph or geo.pw or geo.rh or geo.rw) else x
        views = [geo.view(xpad, i, j) for i in range(geo.kh) for j in range(geo.kw)]
        return P.stack(views, dim=-1).sum(dim=-1) / self.divisor
