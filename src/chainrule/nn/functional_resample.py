"""More of chainrule.nn.functional: 3-d convolution and pooling (:mod:`.conv.conv3d`),
transposed convolutions, 1-d pooling, adaptive max pooling, channel dropout, interpolation
(nearest, linear, bilinear, bicubic), grid sampling, pixel (un)shuffle and unfold/fold.
Re-exported by :mod:`chainrule.nn.functional`; all are compositions of differentiable ops,
so their gradients (and second derivatives) come from those ops."""

from __future__ import annotations

import math
import numbers

from .. import ops as P
from ..autograd import enable_grad
from ..autograd import grad as _grad
from ..tensor import ShapeError, Tensor
from . import conv, fused
from .conv.conv3d import avg_pool3d as avg_pool3d
from .conv.conv3d import conv3d as conv3d
from .conv.conv3d import conv_transpose3d as conv_transpose3d
from .conv.conv3d import max_pool3d as max_pool3d
from .conv.geometry import out_size
from .conv.transpose import conv_transpose2d_nchw


def _conv2d(x, w, bias, stride, padding, dilation, groups):
    """The convolution of an input already padded and checked (conv2d's op)."""
    return fused.apply_present(conv.Conv2dOp, x, w, bias, stride=(1, 1), padding=(0, 0),
                               dilation=tuple(dilation), groups=groups)


def _pool_geometry(x, k, s, p, d, ceil_mode, op):
    if p[0] * 2 > k[0] or p[1] * 2 > k[1]:
        raise ValueError(f"{op}: padding {p} must be at most half the kernel size {k}")
    out = (out_size(x.shape[2], k[0], s[0], p[0], d[0], ceil_mode),
           out_size(x.shape[3], k[1], s[1], p[1], d[1], ceil_mode))
    if out[0] < 1 or out[1] < 1:
        raise ShapeError(f"{op}: input of shape {tuple(x.shape)} received, too small for "
                         f"kernel {k} with padding {p} and dilation {d}")
    return out


def _batched3(input, op):
    _float(input, op)
    if input.ndim == 2:
        return input.unsqueeze(0), True
    if input.ndim != 3:
        raise ShapeError(f"{op}: input of shape {tuple(input.shape)} received, expected "
                         "(N, C, L) or (C, L)")
    return input, False


def _float(x, op, name="input"):
    if not isinstance(x, Tensor):
        raise TypeError(f"{op}: {name} must be a Tensor, got {type(x).__name__}")
    if x._data.dtype.kind != "f":
        raise TypeError(f"{op}: {name} must be a floating tensor, got dtype {x.dtype}")
    return x


def _tuple(v, n, name, op):
    if isinstance(v, numbers.Integral):
        return (int(v),) * n
    v = tuple(int(i) for i in v)
    if len(v) != n:
        raise ValueError(f"{op}: {name} must be an int or {n} ints, got {v}")
    return v


# ----------------------------------------------------------------------------- transposed


def conv_transpose2d(input, weight, bias=None, stride=1, padding=0, output_padding=0,
                     groups=1, dilation=1):
    """2-d transposed convolution: input (N, C_in, H, W), weight (C_in, C_out / groups, kh,
    kw); output size (H - 1) stride - 2 padding + dilation (kh - 1) + output_padding + 1."""
    op = "conv_transpose2d"
    _float(input, op)
    _float(weight, op, "weight")
    if input.ndim not in (3, 4) or weight.ndim != 4:
        raise ShapeError(f"{op}: input {tuple(input.shape)} and weight {tuple(weight.shape)} "
                         "received, expected (N, C_in, H, W) and (C_in, C_out/groups, kh, kw)")
    unbatched = input.ndim == 3
    x = input.unsqueeze(0) if unbatched else input
    if x.shape[1] != weight.shape[0] or weight.shape[0] % groups:
        raise ShapeError(f"{op}: input of {x.shape[1]} channels received, expected "
                         f"{weight.shape[0]} (weight's dim 0, divisible by groups={groups})")
    s, p = _tuple(stride, 2, "stride", op), _tuple(padding, 2, "padding", op)
    o, d = _tuple(output_padding, 2, "output_padding", op), _tuple(dilation, 2, "dilation", op)
    for oi, si, di in zip(o, s, d):
        if oi >= max(si, di):
            raise ValueError(f"{op}: output_padding {o} must be smaller than stride {s} or "
                             f"dilation {d}")
    if bias is not None and tuple(bias.shape) != (weight.shape[1] * groups,):
        raise ShapeError(f"{op}: bias of shape {tuple(bias.shape)}, expected "
                         f"({weight.shape[1] * groups},)")
    y = conv_transpose2d_nchw(x, weight, bias, s, p, o, groups, d, _conv2d)
    return y.squeeze(0) if unbatched else y


def conv_transpose1d(input, weight, bias=None, stride=1, padding=0, output_padding=0,
                     groups=1, dilation=1):
    """1-d transposed convolution: input (N, C_in, L), weight (C_in, C_out / groups, k)."""
    op = "conv_transpose1d"
    _float(input, op)
    if input.ndim not in (2, 3) or weight.ndim != 3:
        raise ShapeError(f"{op}: input {tuple(input.shape)} and weight {tuple(weight.shape)} "
                         "received, expected (N, C_in, L) and (C_in, C_out/groups, k)")

    def pair(v, h):
        return (h, _tuple(v, 1, "argument", op)[0])

    y = conv_transpose2d(input.unsqueeze(-2), weight.unsqueeze(-2), bias, pair(stride, 1),
                         pair(padding, 0), pair(output_padding, 0), groups, pair(dilation, 1))
    return y.squeeze(-2)


# ----------------------------------------------------------------------------- pooling


def max_pool1d(input, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False,
               return_indices=False):
    """Maximum over windows of (N, C, L) (stride defaults to the kernel size)."""
    op = "max_pool1d"
    x, unbatched = _batched3(input, op)
    k = _tuple(kernel_size, 1, "kernel_size", op)[0]
    s = k if stride is None else _tuple(stride, 1, "stride", op)[0]
    p = _tuple(padding, 1, "padding", op)[0]
    d = _tuple(dilation, 1, "dilation", op)[0]
    x4 = x.unsqueeze(-2)
    geo = dict(kernel=(1, k), stride=(1, s), padding=(0, p), dilation=(1, d))
    out = _pool_geometry(x4, (1, k), (1, s), (0, p), (1, d), ceil_mode, op)
    y = conv.MaxPool2dOp.apply(x4, out_hw=out, **geo).squeeze(-2)
    if return_indices:
        from ..autograd import no_grad

        with no_grad():  # the indices, from the same windows (no gradient)
            o = conv.MaxPool2dOp()
            o.xp = x.xp
            o.forward(x4._data, out_hw=out, **geo)
            idx = Tensor._wrap(o.indices(x4.shape[3])).squeeze(-2)
        return (y.squeeze(0), idx.squeeze(0)) if unbatched else (y, idx)
    return y.squeeze(0) if unbatched else y


def avg_pool1d(input, kernel_size, stride=None, padding=0, ceil_mode=False,
               count_include_pad=True):
    """Mean over windows of (N, C, L) (zero padding counted when ``count_include_pad``)."""
    op = "avg_pool1d"
    x, unbatched = _batched3(input, op)
    k = _tuple(kernel_size, 1, "kernel_size", op)[0]
    s = k if stride is None else _tuple(stride, 1, "stride", op)[0]
    p = _tuple(padding, 1, "padding", op)[0]
    x4 = x.unsqueeze(-2)
    out = _pool_geometry(x4, (1, k), (1, s), (0, p), (1, 1), ceil_mode, op)
    divisor = conv.avg_divisor(x.xp, 1, x4.shape[3], (1, k), (1, s), (0, p), out,
                               count_include_pad, x.dtype)
    if (divisor == divisor.flat[0]).all():
        divisor = float(divisor.flat[0])
    y = conv.AvgPool2dOp.apply(x4, kernel=(1, k), stride=(1, s), padding=(0, p), out_hw=out,
                               divisor=divisor).squeeze(-2)
    return y.squeeze(0) if unbatched else y


def _windows(n, o):
    return [((i * n) // o, -((-(i + 1) * n) // o)) for i in range(o)]


def adaptive_max_pool2d(input, output_size, return_indices=False):
    """Maximum over PyTorch's adaptive windows, so the output is ``output_size``."""
    op = "adaptive_max_pool2d"
    _float(input, op)
    if return_indices:
        raise NotImplementedError(f"{op}: return_indices=True is not supported")
    H, W = input.shape[-2], input.shape[-1]
    oh, ow = (output_size, output_size) if isinstance(output_size, numbers.Integral) or \
        output_size is None else tuple(output_size)
    oh, ow = H if oh is None else int(oh), W if ow is None else int(ow)
    rows = []
    for a, b in _windows(H, oh):
        band = P.narrow(input, -2, a, b - a)
        cols = [P.amax(P.narrow(band, -1, c, e - c), (-2, -1)) for c, e in _windows(W, ow)]
        rows.append(P.stack(cols, -1))
    return P.stack(rows, -2)


def adaptive_max_pool1d(input, output_size, return_indices=False):
    """Maximum over adaptive windows of (N, C, L)."""
    return adaptive_max_pool2d(input.unsqueeze(-2), (1, output_size),
                               return_indices).squeeze(-2)


def adaptive_avg_pool1d(input, output_size):
    """Average over adaptive windows of (N, C, L): y = x A^T with an averaging matrix."""
    _float(input, "adaptive_avg_pool1d")
    n, o = input.shape[-1], int(output_size)
    xp = input.xp
    a = xp.zeros((n, o), dtype=input._data.dtype)
    for i, (lo, hi) in enumerate(_windows(n, o)):
        a[lo:hi, i] = 1.0 / (hi - lo)
    return input @ Tensor._wrap(a)


# ----------------------------------------------------------------------------- dropout


def _channel_dropout(input, p, training, spatial, op):
    _float(input, op)
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"{op}: p must be in [0, 1], got {p}")
    if not training or p == 0.0:
        return input
    batched = input.ndim == spatial + 2
    if input.ndim not in (spatial + 1, spatial + 2):
        raise ValueError(f"{op}: input of shape {tuple(input.shape)} received, expected "
                         f"{spatial + 2} dims (N, C, ...) or {spatial + 1} (C, ...)")
    if p == 1.0:
        return input * 0.0
    from .. import creation

    lead = tuple(input.shape[:2] if batched else input.shape[:1])
    u = creation.rand(*lead, dtype=input.dtype)
    keep = (u._data >= p).astype(input._data.dtype) / (1.0 - p)
    mask = Tensor._wrap(keep.reshape(lead + (1,) * spatial))
    return input * mask


def dropout1d(input, p=0.5, training=True, inplace=False):
    """Zero whole channels of (N, C, L) with probability p (scaling the rest by 1/(1-p))."""
    return _channel_dropout(input, p, training, 1, "dropout1d")


def dropout2d(input, p=0.5, training=True, inplace=False):
    """Zero whole channels of (N, C, H, W) with probability p."""
    return _channel_dropout(input, p, training, 2, "dropout2d")


def dropout3d(input, p=0.5, training=True, inplace=False):
    """Zero whole channels of (N, C, D, H, W) with probability p."""
    return _channel_dropout(input, p, training, 3, "dropout3d")


# ----------------------------------------------------------------------------- interpolate


def _index(xp, idx):
    return Tensor._wrap(xp.asarray(idx, dtype=xp.int64))


def _cubic_weights(t, A=-0.75):
    """Keys' cubic convolution weights (A = -0.75, as PyTorch) of the four taps at offsets
    -1, 0, 1, 2 from floor(src), for the fraction t = src - floor(src)."""

    def near(x):  # |x| <= 1
        return ((A + 2) * x - (A + 3)) * x * x + 1

    def far(x):  # 1 < |x| < 2
        return ((A * x - 5 * A) * x + 8 * A) * x - 4 * A

    return far(t + 1), near(t), near(1 - t), far(2 - t)


def interpolate(input, size=None, scale_factor=None, mode="nearest", align_corners=None,
                recompute_scale_factor=None, antialias=False):
    """Resample the spatial dims of (N, C, *): 'nearest', 'linear' (3-d), 'bilinear' (4-d),
    'bicubic' (4-d), 'trilinear' (5-d), with PyTorch's source coordinates (``align_corners``).
    Each dim is resampled in turn (the kernels are separable): linear blends the two taps
    around the source coordinate, bicubic four, with Keys' weights (A = -0.75) and the taps
    clamped to the input's edge."""
    op = "interpolate"
    _float(input, op)
    modes = ("nearest", "nearest-exact", "linear", "bilinear", "bicubic", "trilinear")
    if mode not in modes:
        raise NotImplementedError(f"{op}: mode {mode!r}; supported: {', '.join(modes)}")
    nd = input.ndim - 2
    if nd < 1:
        raise ValueError(f"{op}: input of shape {tuple(input.shape)} received, expected "
                         "(N, C, *spatial)")
    linear = mode in ("linear", "bilinear", "bicubic", "trilinear")
    need = {"linear": 1, "bilinear": 2, "bicubic": 2, "trilinear": 3}.get(mode)
    if linear and need != min(nd, 3):
        raise ValueError(f"{op}: mode {mode!r} needs a {need + 2}-d input (N, C and {need} "
                         f"spatial dims), got shape {tuple(input.shape)}")
    if not linear and align_corners is not None:
        raise ValueError(f"{op}: align_corners applies to the linear and cubic modes only")
    if (size is None) == (scale_factor is None):
        raise ValueError(f"{op}: pass exactly one of size and scale_factor")
    ins = tuple(input.shape[2:])
    if size is not None:
        outs = _tuple(size, nd, "size", op)
        scales = [None] * nd
    else:
        sf = (float(scale_factor),) * nd if isinstance(scale_factor, numbers.Real) else \
            tuple(float(v) for v in scale_factor)
        outs = tuple(int(math.floor(n * f)) for n, f in zip(ins, sf))
        scales = [None] * nd if recompute_scale_factor else list(sf)
    xp = input.xp
    y = input
    for k in range(nd):
        dim, n, o, sc = 2 + k, ins[k], outs[k], scales[k]
        if o == n and sc in (None, 1.0):
            continue
        ratio = (1.0 / sc) if sc is not None else n / o
        if not linear:
            i = xp.arange(o, dtype=xp.float64)
            src = (i + 0.5) * ratio if mode == "nearest-exact" else i * ratio
            idx = xp.minimum(xp.floor(src).astype(xp.int64), n - 1)
            y = P.index_select(y, dim, _index(xp, idx))
            continue
        i = xp.arange(o, dtype=xp.float64)
        if align_corners:
            src = i * ((n - 1) / (o - 1)) if o > 1 else xp.zeros(o)
        else:
            src = (i + 0.5) * ratio - 0.5
            if mode != "bicubic":  # the linear modes clamp at 0; cubic reads clamped taps
                src = xp.maximum(src, 0.0)
        shape = [1] * y.ndim
        shape[dim] = o
        base = xp.floor(src)
        if mode == "bicubic":
            taps = base.astype(xp.int64)
            ws = _cubic_weights(src - base)
            acc = None
            for off, w in zip((-1, 0, 1, 2), ws):
                idx = xp.clip(taps + off, 0, n - 1)
                term = P.index_select(y, dim, _index(xp, idx)) * Tensor._wrap(
                    w.astype(input._data.dtype).reshape(shape))
                acc = term if acc is None else acc + term
            y = acc
            continue
        i0 = xp.minimum(base.astype(xp.int64), n - 1)
        i1 = xp.minimum(i0 + 1, n - 1)
        lam = (src - i0).astype(input._data.dtype)
        lam = Tensor._wrap(lam.reshape(shape))
        a = P.index_select(y, dim, _index(xp, i0))
        b = P.index_select(y, dim, _index(xp, i1))
        y = a + (b - a) * lam
    return y


# ----------------------------------------------------------------------------- grid sampling


def affine_grid(theta, size, align_corners=None):
    """The sampling grid of the affine maps ``theta``: (N, 2, 3) for size (N, C, H, W) gives
    (N, H, W, 2), (N, 3, 4) for (N, C, D, H, W) gives (N, D, H, W, 3); grid = theta [x, y,
    (z,) 1] at the normalized coordinates of each output pixel (-1 and 1 the corner pixels'
    centres with ``align_corners``, else their outer edges)."""
    op = "affine_grid"
    _float(theta, op, "theta")
    size = tuple(int(v) for v in size)
    nd = len(size) - 2
    if nd not in (2, 3) or tuple(theta.shape) != (size[0], nd, nd + 1):
        raise ValueError(f"{op}: theta of shape {tuple(theta.shape)} and size {size} received, "
                         "expected theta (N, 2, 3) with size (N, C, H, W), or (N, 3, 4) with "
                         "(N, C, D, H, W)")
    xp, dt = theta.xp, theta._data.dtype

    def axis(n):
        if n <= 1:
            return xp.zeros(n, dtype=dt)
        lin = xp.linspace(-1.0, 1.0, n, dtype=dt)
        return lin if align_corners else lin * ((n - 1) / n)

    spatial = size[2:]
    coords = []
    for k in reversed(range(nd)):  # x (the last dim, width) first
        shape = [1] * nd
        shape[k] = spatial[k]
        coords.append(xp.broadcast_to(axis(spatial[k]).reshape(shape), spatial))
    base = xp.stack(coords + [xp.ones(spatial, dtype=dt)], -1)  # (*spatial, nd + 1)
    base = Tensor._wrap(base.reshape(1, -1, nd + 1))
    grid = base @ theta.transpose(1, 2)  # (N, prod(spatial), nd)
    return grid.reshape(size[:1] + size[2:] + (nd,))


def _unnormalize(c, n, align_corners):
    """Normalized [-1, 1] coordinates to pixel ones: -1 and 1 are the corner pixels' centres
    (align_corners) or their outer edges."""
    return (c + 1) * ((n - 1) / 2) if align_corners else ((c + 1) * n - 1) / 2


def _reflect(c, twice_lo, twice_hi):
    """c reflected into [lo, hi] off both ends, as often as needed (PyTorch's
    reflect_coordinates); differentiable in c (slope +-1)."""
    if twice_lo == twice_hi:
        return c * 0.0
    lo, span = twice_lo / 2, (twice_hi - twice_lo) / 2
    c = P.abs(c - lo)
    flips = c.xp.floor(c._data / span)
    extra = c - Tensor._wrap(flips * span)
    even = Tensor._wrap((flips % 2) == 0)
    return P.where(even, extra + lo, span - extra + lo)


def _source(c, n, padding_mode, align_corners):
    """The pixel coordinate that a grid coordinate reads along a dim of size n."""
    c = _unnormalize(c, n, align_corners)
    if padding_mode == "reflection":
        c = _reflect(c, 0, 2 * (n - 1)) if align_corners else _reflect(c, -1, 2 * n - 1)
    if padding_mode in ("border", "reflection"):
        c = P.clamp(c, 0, n - 1)
    return c


def grid_sample(input, grid, mode="bilinear", padding_mode="zeros", align_corners=None):
    """Sample (N, C, H, W) at the normalized (x, y) points of grid (N, Ho, Wo, 2) (-1 the left
    or top edge, 1 the right or bottom): 'bilinear' blends the four pixels around each point,
    'nearest' takes the closest (ties to even); points outside read zeros, the border pixel
    ('border') or the image reflected at its edges ('reflection'). Differentiable in input
    and (bilinear) in grid, through the blend weights."""
    op = "grid_sample"
    _float(input, op)
    _float(grid, op, "grid")
    if mode not in ("bilinear", "nearest"):
        raise NotImplementedError(f"{op}: mode {mode!r}; supported: 'bilinear', 'nearest'")
    if padding_mode not in ("zeros", "border", "reflection"):
        raise ValueError(f"{op}: padding_mode must be 'zeros', 'border' or 'reflection', got "
                         f"{padding_mode!r}")
    if input.ndim != 4 or grid.ndim != 4 or grid.shape[-1] != 2 or \
            grid.shape[0] != input.shape[0]:
        raise ValueError(f"{op}: input {tuple(input.shape)} and grid {tuple(grid.shape)} "
                         "received, expected (N, C, H, W) and (N, Ho, Wo, 2) (volumetric "
                         "inputs are not supported)")
    if grid._data.dtype != input._data.dtype:
        raise TypeError(f"{op}: grid dtype {grid.dtype} differs from input dtype "
                        f"{input.dtype}")
    N, C, H, W = input.shape
    Ho, Wo = grid.shape[1], grid.shape[2]
    xp = input.xp
    ix = _source(grid[..., 0], W, padding_mode, bool(align_corners))  # (N, Ho, Wo)
    iy = _source(grid[..., 1], H, padding_mode, bool(align_corners))
    flat = input.reshape(N, C, H * W)

    def read(xc, yc):
        """input at integer pixels (xc, yc) (N, Ho, Wo), as (N, C, Ho, Wo), and the 0/1 mask of
        those inside the image."""
        inside = (xc >= 0) & (xc < W) & (yc >= 0) & (yc < H)
        idx = xp.clip(yc, 0, H - 1) * W + xp.clip(xc, 0, W - 1)
        idx = xp.broadcast_to(idx.reshape(N, 1, Ho * Wo), (N, C, Ho * Wo))
        vals = P.gather(flat, 2, Tensor._wrap(idx)).reshape(N, C, Ho, Wo)
        return vals, inside

    if mode == "nearest":
        xn = xp.rint(ix._data).astype(xp.int64)
        yn = xp.rint(iy._data).astype(xp.int64)
        vals, inside = read(xn, yn)
        return vals * Tensor._wrap(inside.astype(input._data.dtype).reshape(N, 1, Ho, Wo))
    x0f, y0f = xp.floor(ix._data), xp.floor(iy._data)
    tx, ty = ix - Tensor._wrap(x0f), iy - Tensor._wrap(y0f)
    x0, y0 = x0f.astype(xp.int64), y0f.astype(xp.int64)
    out = None
    for dx, dy, wgt in ((0, 0, (1 - tx) * (1 - ty)), (1, 0, tx * (1 - ty)),
                        (0, 1, (1 - tx) * ty), (1, 1, tx * ty)):
        vals, inside = read(x0 + dx, y0 + dy)
        if not inside.all():
            wgt = wgt * Tensor._wrap(inside.astype(input._data.dtype))
        term = vals * wgt.unsqueeze(1)
        out = term if out is None else out + term
    return out


def upsample(input, size=None, scale_factor=None, mode="nearest", align_corners=None):
    """interpolate under its older name."""
    return interpolate(input, size, scale_factor, mode, align_corners)


# ----------------------------------------------------------------------------- rearranging


def pixel_shuffle(input, upscale_factor):
    """(*, C r^2, H, W) -> (*, C, H r, W r)."""
    r = int(upscale_factor)
    _float(input, "pixel_shuffle")
    if input.ndim < 3 or input.shape[-3] % (r * r):
        raise ValueError(f"pixel_shuffle: input of shape {tuple(input.shape)} received, "
                         f"expected (*, C * {r * r}, H, W)")
    *lead, C, H, W = input.shape
    c = C // (r * r)
    x = input.reshape(tuple(lead) + (c, r, r, H, W))
    n = len(lead)
    x = P.permute(x, tuple(range(n)) + (n, n + 3, n + 1, n + 4, n + 2))
    return x.reshape(tuple(lead) + (c, H * r, W * r))


def pixel_unshuffle(input, downscale_factor):
    """(*, C, H r, W r) -> (*, C r^2, H, W)."""
    r = int(downscale_factor)
    _float(input, "pixel_unshuffle")
    if input.ndim < 3 or input.shape[-1] % r or input.shape[-2] % r:
        raise ValueError(f"pixel_unshuffle: input of shape {tuple(input.shape)} received, "
                         f"expected (*, C, H, W) with H and W divisible by {r}")
    *lead, C, H, W = input.shape
    x = input.reshape(tuple(lead) + (C, H // r, r, W // r, r))
    n = len(lead)
    x = P.permute(x, tuple(range(n)) + (n, n + 2, n + 4, n + 1, n + 3))
    return x.reshape(tuple(lead) + (C * r * r, H // r, W // r))


def unfold(input, kernel_size, dilation=1, padding=0, stride=1):
    """im2col: (N, C, H, W) -> (N, C kh kw, L), each column one sliding window (C-major, then
    kernel rows, then kernel columns, as PyTorch)."""
    op = "unfold"
    _float(input, op)
    if input.ndim not in (3, 4):
        raise ValueError(f"{op}: input of shape {tuple(input.shape)} received, expected "
                         "(N, C, H, W) or (C, H, W)")
    unbatched = input.ndim == 3
    x = input.unsqueeze(0) if unbatched else input
    k, d = _tuple(kernel_size, 2, "kernel_size", op), _tuple(dilation, 2, "dilation", op)
    p, s = _tuple(padding, 2, "padding", op), _tuple(stride, 2, "stride", op)
    N, C, H, W = x.shape
    ho, wo = out_size(H, k[0], s[0], p[0], d[0]), out_size(W, k[1], s[1], p[1], d[1])
    if ho < 1 or wo < 1:
        raise ValueError(f"{op}: input of shape {tuple(input.shape)} is too small for kernel "
                         f"{k} (dilation {d}, padding {p})")
    if p != (0, 0):
        x = P.pad(x, (p[1], p[1], p[0], p[0]))
    pieces = []
    for i in range(k[0]):
        for j in range(k[1]):
            a, b = i * d[0], j * d[1]
            pieces.append(x[:, :, a:a + s[0] * (ho - 1) + 1:s[0], b:b + s[1] * (wo - 1) + 1:s[1]])
    y = P.stack(pieces, 2).reshape(N, C * k[0] * k[1], ho * wo)
    return y.squeeze(0) if unbatched else y


def fold(input, output_size, kernel_size, dilation=1, padding=0, stride=1):
    """col2im, the adjoint of :func:`unfold`: (N, C kh kw, L) -> (N, C, H, W), the columns'
    values summed where windows overlap."""
    op = "fold"
    _float(input, op)
    if input.ndim not in (2, 3):
        raise ValueError(f"{op}: input of shape {tuple(input.shape)} received, expected "
                         "(N, C * kh * kw, L) or (C * kh * kw, L)")
    unbatched = input.ndim == 2
    x = input.unsqueeze(0) if unbatched else input
    k = _tuple(kernel_size, 2, "kernel_size", op)
    H, W = _tuple(output_size, 2, "output_size", op)
    if x.shape[1] % (k[0] * k[1]):
        raise ValueError(f"{op}: input of {x.shape[1]} rows received, expected a multiple of "
                         f"kh * kw = {k[0] * k[1]}")
    C = x.shape[1] // (k[0] * k[1])
    z = Tensor._wrap(x.xp.zeros((x.shape[0], C, H, W), dtype=x._data.dtype),
                     requires_grad=True)
    with enable_grad():
        cols = unfold(z, k, dilation, padding, stride)
        if tuple(cols.shape) != tuple(x.shape):
            raise ValueError(f"{op}: input of shape {tuple(input.shape)} received, expected "
                             f"{tuple(cols.shape)} for output_size {(H, W)} and kernel {k}")
        (y,) = _grad(cols, [z], x, create_graph=True)
    return y.squeeze(0) if unbatched else y


__all__ = [
    "conv3d", "conv_transpose3d", "max_pool3d", "avg_pool3d", "conv_transpose1d",
    "conv_transpose2d", "max_pool1d", "avg_pool1d",
    "adaptive_max_pool2d", "adaptive_max_pool1d", "adaptive_avg_pool1d", "dropout1d",
    "dropout2d", "dropout3d", "interpolate", "upsample", "affine_grid", "grid_sample",
    "pixel_shuffle", "pixel_unshuffle", "unfold", "fold",
]
