"""3-d convolution, transposed convolution and pooling over (N, C, D, H, W), written on the
2-d ops: the depth window is unrolled into channels (convolution) or reduced plane by plane
after a 2-d pool of every depth plane (pooling). All are compositions of differentiable ops,
so their gradients and second derivatives come from those ops.

With kd depth offsets, the convolution's depth taps become kd slices of the depth-padded
input, each (N, C, Do, H, W); stacked as channels (group-major, then offset, then channel)
they turn y = sum_i conv2d(x_i, w[:, :, i]) into one 2-d convolution with kd Cg input
channels per group over N Do images, so the work is one GEMM per group as in 2-d.
"""

from __future__ import annotations

import math
import numbers

from ... import ops as P
from ...autograd import no_grad
from ...tensor import ShapeError, Tensor
from .conv2d import Conv2dOp
from .geometry import out_size
from .pool import AvgPool2dOp, MaxPool2dOp
from .transpose import _pad_or_crop, _spread


def _float(x, op, name="input"):
    if not isinstance(x, Tensor):
        raise TypeError(f"{op}: {name} must be a Tensor, got {type(x).__name__}")
    if x._data.dtype.kind != "f":
        raise TypeError(f"{op}: {name} must be a floating tensor, got dtype {x.dtype}")
    return x


def _triple(v, name, op):
    if isinstance(v, numbers.Integral):
        return (int(v),) * 3
    v = tuple(int(i) for i in v)
    if len(v) != 3:
        raise ValueError(f"{op}: {name} must be an int or 3 ints, got {v}")
    return v


def _batched5(input, op):
    _float(input, op)
    if input.ndim == 4:
        return input.unsqueeze(0), True
    if input.ndim != 5:
        raise ShapeError(f"{op}: input of shape {tuple(input.shape)} received, expected "
                         "(N, C, D, H, W) or (C, D, H, W)")
    return input, False


def _depth_taps(x, kd, sd, pd, dd, Do, value=0.0, right=0):
    """The kd depth slices x_pad[:, :, i dd + z sd] (z < Do) of x padded by pd (and ``right``
    more after) with ``value`` along depth, each (N, C, Do, H, W)."""
    if pd or right:
        x = P.pad(x, (0, 0, 0, 0, pd, pd + right), value=value)
    span = sd * (Do - 1) + 1
    return [x[:, :, i * dd:i * dd + span:sd] for i in range(kd)]


# ----------------------------------------------------------------------------- convolution


def _same_padding(k, d, op, stride):
    """PyTorch's padding='same' (stride 1): total d (k - 1) per dim, the odd one extra on the
    right. Returns (left, right) per dim."""
    if stride != (1, 1, 1):
        raise ValueError(f"{op}: padding='same' needs stride 1, got {stride}")
    return [(di * (ki - 1) // 2, di * (ki - 1) - di * (ki - 1) // 2) for ki, di in zip(k, d)]


def conv3d(input, weight, bias=None, stride=1, padding=0, dilation=1, groups=1):
    """3-d cross-correlation (PyTorch's conv3d): input (N, C, D, H, W), weight (O, C/groups,
    kd, kh, kw); padding an int, a triple, 'valid' or 'same' (stride 1)."""
    op = "conv3d"
    x, unbatched = _batched5(input, op)
    _float(weight, op, "weight")
    if weight.ndim != 5:
        raise ShapeError(f"{op}: weight must be 5-d (out, in/groups, kd, kh, kw), got shape "
                         f"{tuple(weight.shape)}")
    if x._data.dtype != weight._data.dtype:
        raise TypeError(f"{op}: input dtype {x.dtype} differs from weight dtype "
                        f"{weight.dtype}; convert one (e.g. input.to({weight.dtype}))")
    N, C = x.shape[0], x.shape[1]
    O, Cg, kd, kh, kw = weight.shape
    if groups < 1 or C % groups or O % groups or C // groups != Cg:
        raise ShapeError(f"{op}: input of shape {tuple(input.shape)} with groups={groups} "
                         f"received, expected {Cg * groups} input channels for weight of shape "
                         f"{tuple(weight.shape)} (and out channels divisible by groups)")
    s, d = _triple(stride, "stride", op), _triple(dilation, "dilation", op)
    if isinstance(padding, str):
        if padding not in ("valid", "same"):
            raise ValueError(f"{op}: padding must be an int, a triple, 'valid' or 'same', got "
                             f"{padding!r}")
        pads = [(0, 0)] * 3 if padding == "valid" else _same_padding((kd, kh, kw), d, op, s)
        if any(lo != hi for lo, hi in pads):  # odd total: the extra one on the right
            x = P.pad(x, (pads[2][0], pads[2][1], pads[1][0], pads[1][1], pads[0][0],
                          pads[0][1]))
            pads = [(0, 0)] * 3
        p = tuple(lo for lo, _ in pads)
    else:
        p = _triple(padding, "padding", op)
    if bias is not None:
        _float(bias, op, "bias")
        if tuple(bias.shape) != (O,):
            raise ShapeError(f"{op}: bias of shape {tuple(bias.shape)}, expected ({O},)")
    D, H, W = x.shape[2:]
    outs = [out_size(n, k, si, pi, di) for n, k, si, pi, di in
            zip((D, H, W), (kd, kh, kw), s, p, d)]
    if min(outs) < 1:
        raise ShapeError(f"{op}: input of shape {tuple(input.shape)} received, too small for a "
                         f"{kd}x{kh}x{kw} kernel (dilation {d}, padding {p})")
    Do, G = outs[0], groups
    taps = _depth_taps(x, kd, s[0], p[0], d[0], Do)
    if kd == 1:
        x2 = taps[0].transpose(1, 2)  # (N, Do, C, H, W)
    else:
        # (N, kd, G, Cg, Do, H, W) -> (N, Do, G, kd, Cg, H, W): per group, offset-major channels
        x2 = P.stack(taps, 1).reshape(N, kd, G, Cg, Do, H, W)
        x2 = P.permute(x2, (0, 4, 2, 1, 3, 5, 6))
    x2 = x2.reshape(N * Do, G * kd * Cg, H, W)
    w2 = P.permute(weight, (0, 2, 1, 3, 4)).reshape(O, kd * Cg, kh, kw)
    inputs = (x2, w2) if bias is None else (x2, w2, bias)
    y = Conv2dOp.apply(*inputs, stride=s[1:], padding=p[1:], dilation=d[1:], groups=G)
    y = y.reshape(N, Do, O, outs[1], outs[2]).transpose(1, 2)  # (N, O, Do, Ho, Wo)
    return y.squeeze(0) if unbatched else y


def conv_transpose3d(input, weight, bias=None, stride=1, padding=0, output_padding=0,
                     groups=1, dilation=1):
    """3-d transposed convolution: input (N, C_in, D, H, W), weight (C_in, C_out / groups, kd,
    kh, kw); each output size (n - 1) stride - 2 padding + dilation (k - 1) + output_padding
    + 1. Computed as the stride-1 convolution of the input spread by stride - 1 zeros, padded
    by dilation (k - 1) - padding, with the weight flipped and its channels swapped per group."""
    op = "conv_transpose3d"
    x, unbatched = _batched5(input, op)
    _float(weight, op, "weight")
    if weight.ndim != 5:
        raise ShapeError(f"{op}: weight of shape {tuple(weight.shape)} received, expected "
                         "(C_in, C_out/groups, kd, kh, kw)")
    cin, cog = weight.shape[0], weight.shape[1]
    if x.shape[1] != cin or cin % groups:
        raise ShapeError(f"{op}: input of {x.shape[1]} channels received, expected {cin} "
                         f"(weight's dim 0, divisible by groups={groups})")
    s, p = _triple(stride, "stride", op), _triple(padding, "padding", op)
    o, d = _triple(output_padding, "output_padding", op), _triple(dilation, "dilation", op)
    for oi, si, di in zip(o, s, d):
        if oi >= max(si, di):
            raise ValueError(f"{op}: output_padding {o} must be smaller than stride {s} or "
                             f"dilation {d}")
    if bias is not None and tuple(bias.shape) != (cog * groups,):
        raise ShapeError(f"{op}: bias of shape {tuple(bias.shape)}, expected ({cog * groups},)")
    k = tuple(weight.shape[2:])
    for dim in range(3):
        x = _spread(x, dim + 2, s[dim])
        edge = d[dim] * (k[dim] - 1) - p[dim]
        x = _pad_or_crop(x, dim + 2, edge, edge + o[dim])
    # (C_in, C_out/g, k...) -> (C_out, C_in/g, k...), flipped in space
    wt = weight.reshape((groups, cin // groups, cog) + k).transpose(1, 2)
    wt = P.flip(wt.reshape((groups * cog, cin // groups) + k), (2, 3, 4))
    y = conv3d(x, wt, bias, 1, 0, d, groups)
    return y.squeeze(0) if unbatched else y


# ----------------------------------------------------------------------------- pooling


def _pool3d_args(input, kernel_size, stride, padding, dilation, ceil_mode, op):
    x, unbatched = _batched5(input, op)
    k = _triple(kernel_size, "kernel_size", op)
    s = k if stride is None or (not isinstance(stride, numbers.Integral) and len(stride) == 0) \
        else _triple(stride, "stride", op)
    p, d = _triple(padding, "padding", op), _triple(dilation, "dilation", op)
    if any(2 * pi > ki for pi, ki in zip(p, k)):
        raise ValueError(f"{op}: padding {p} must be at most half the kernel size {k}")
    outs = tuple(out_size(n, ki, si, pi, di, ceil_mode)
                 for n, ki, si, pi, di in zip(x.shape[2:], k, s, p, d))
    if min(outs) < 1:
        raise ShapeError(f"{op}: input of shape {tuple(input.shape)} received, too small for "
                         f"kernel {k} with padding {p} and dilation {d}")
    D = x.shape[2]
    # padding past the right edge that the last (ceil_mode) depth window reads
    right = max((outs[0] - 1) * s[0] + d[0] * (k[0] - 1) + 1 - D - p[0], 0)
    return x, unbatched, k, s, p, d, outs, right


def _planes(x, fn):
    """``fn`` (a 2-d pool) applied to every depth plane of (N, C, D, H, W)."""
    N, C, D = x.shape[:3]
    y = fn(x.reshape(N, C * D, x.shape[3], x.shape[4]))
    return y.reshape(N, C, D, y.shape[2], y.shape[3])


def max_pool3d(input, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False,
               return_indices=False):
    """Maximum over each (kd, kh, kw) window (stride defaults to the kernel size): a 2-d max
    pool of every depth plane, then the maximum over the kd depth taps. Ties go to the first
    maximum in (d, h, w) order, as PyTorch's (the 2-d pool keeps a plane's first, the depth
    maximum the first plane); ``return_indices`` gives the flat d H W + h W + w positions."""
    op = "max_pool3d"
    x, unbatched, k, s, p, d, outs, right = _pool3d_args(input, kernel_size, stride, padding,
                                                         dilation, ceil_mode, op)
    geo = dict(kernel=k[1:], stride=s[1:], padding=p[1:], dilation=d[1:], out_hw=outs[1:])
    xd = P.pad(x, (0, 0, 0, 0, p[0], p[0] + right), value=-math.inf) if p[0] or right else x
    planes = _planes(xd, lambda a: MaxPool2dOp.apply(a, **geo))
    taps = _depth_taps(planes, k[0], s[0], 0, d[0], outs[0])
    y = taps[0] if k[0] == 1 else P.max(P.stack(taps, -1), dim=-1).values
    if not return_indices:
        return y.squeeze(0) if unbatched else y
    xp = x.xp
    with no_grad():  # the indices, from the same windows (no gradient)
        pool = MaxPool2dOp()
        pool.xp = xp
        a = xd._data
        N, C, Dp, H, W = a.shape
        pool.forward(a.reshape(N, C * Dp, H, W), **geo)
        hw = pool.indices(W).reshape(N, C, Dp, outs[1], outs[2])
        stacked = xp.stack([t._data for t in taps], -1)
        tap = xp.argmax(stacked, axis=-1)  # the first plane holding the maximum
        plane = xp.arange(outs[0]).reshape(-1, 1, 1) * s[0] + tap * d[0]  # padded depth
        idx = (plane - p[0]) * (H * W) + xp.take_along_axis(hw, plane, axis=2)
        idx = Tensor._wrap(idx.astype(xp.int64))
    return (y.squeeze(0), idx.squeeze(0)) if unbatched else (y, idx)


def _counts(xp, n, k, s, p, o, include_pad, dtype):
    """Per output position, the window length that average pooling divides by along one dim:
    clipped to the padded input (``include_pad``) or to the input itself."""
    start = xp.arange(o) * s - p
    end = xp.minimum(start + k, n + p)
    if not include_pad:
        start, end = xp.maximum(start, 0), xp.minimum(end, n)
    return (end - start).astype(dtype)


def avg_pool3d(input, kernel_size, stride=None, padding=0, ceil_mode=False,
               count_include_pad=True, divisor_override=None):
    """Mean over each (kd, kh, kw) window (zero padding counted when ``count_include_pad``):
    the window sums of every depth plane (a 2-d sum pool), summed over the kd depth taps and
    divided by the window's size (a product of the per-dim clipped lengths) or
    ``divisor_override``."""
    op = "avg_pool3d"
    x, unbatched, k, s, p, _, outs, right = _pool3d_args(input, kernel_size, stride, padding,
                                                         1, ceil_mode, op)
    geo = dict(kernel=k[1:], stride=s[1:], padding=p[1:], out_hw=outs[1:], divisor=1.0)
    xd = P.pad(x, (0, 0, 0, 0, p[0], p[0] + right)) if p[0] or right else x
    planes = _planes(xd, lambda a: AvgPool2dOp.apply(a, **geo))
    taps = _depth_taps(planes, k[0], s[0], 0, 1, outs[0])
    y = taps[0] if k[0] == 1 else P.stack(taps, -1).sum(dim=-1)
    if divisor_override is not None:
        y = y / float(divisor_override)
    else:
        xp, dt = x.xp, x._data.dtype
        cd, ch, cw = (_counts(xp, n, ki, si, pi, o, count_include_pad, dt)
                      for n, ki, si, pi, o in zip(x.shape[2:], k, s, p, outs))
        div = cd.reshape(-1, 1, 1) * ch.reshape(-1, 1) * cw
        y = y / (float(div.flat[0]) if (div == div.flat[0]).all() else Tensor._wrap(div))
    return y.squeeze(0) if unbatched else y


__all__ = ["conv3d", "conv_transpose3d", "max_pool3d", "avg_pool3d"]
