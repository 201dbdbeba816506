"""The convolution and pooling kernels of the NumPy namespace (re-exported by
:mod:`chainrule.backend.numpy_kernels`): the compiled float32 code for the layout changes of a
convolution (patch rows, their adjoint, channels-last to channels-first and back), a direct
convolution for few input channels, and 2x2 pooling with stride 2 in both directions.

Each returns its result, or None where the compiled code does not apply (not built or
switched off, not float32 C-contiguous NumPy arrays, another namespace), and the caller runs
its general code, which computes the same values. A convolution's geometry comes as the tuple
``(N, C, H, W, kh, kw, sh, sw, ph, pw, dh, dw, Ho, Wo, Hp, Wp)``
(:meth:`chainrule.nn.conv.ConvGeometry.key`).
"""

from __future__ import annotations

import numpy

from . import numpy_ns as _ns  # (a circular import: numpy_ns imports numpy_kernels, this)
from .compiled import native

__all__ = [
    "conv_rows", "conv_rows_adjoint", "to_channels_first", "to_channels_last", "conv_direct",
    "max_pool2x2_backward", "avg_pool2x2", "avg_pool2x2_backward",
]


def conv_rows(x, geo, s, e, out, *, xp=_ns):
    """Patch rows of samples s..e of x (N, C, H, W) into ``out`` ((e - s) Ho Wo, kh kw C),
    channels last: the row of output pixel (n, ho, wo) holds x_pad[n, c, ho sh + i dh,
    wo sw + j dw] at column (i kw + j) C + c (zero padding). ``out``, or None."""
    kern = native(x, out)
    if kern is None:
        return None
    kern.conv_rows(x, out, geo, s, e, False)
    return out


def conv_rows_adjoint(cols, geo, s, e, gx, *, xp=_ns):
    """The adjoint of ``conv_rows``: samples s..e of gx (N, C, H, W) set to the sum of each
    entry of the patch rows ``cols`` onto the input pixel it was read from (kernel offset by
    kernel offset, as NumPy's col2im adds them). ``gx``, or None."""
    kern = native(cols, gx)
    if kern is None:
        return None
    kern.conv_rows(cols, gx, geo, s, e, True)
    return gx


def to_channels_first(a, b=None, out=None, *, xp=_ns):
    """(N, P, O) -> a fresh (or ``out``) C-contiguous (N, O, P), plus the per-channel ``b``
    (O,) if given, in one pass; None where the compiled code does not apply."""
    kern = native(a, *(() if b is None else (b,)), *(() if out is None else (out,)))
    if kern is None or a.ndim != 3:
        return None
    N, P, O = a.shape
    if out is None:
        out = numpy.empty((N, O, P), dtype=a.dtype)
    kern.channels_last(a, out, b, N, P, O, True)
    return out


def to_channels_last(a, out=None, *, xp=_ns):
    """(N, O, P) -> a fresh (or ``out``) C-contiguous (N, P, O); None where the compiled code
    does not apply."""
    kern = native(a, *(() if out is None else (out,)))
    if kern is None or a.ndim != 3:
        return None
    N, O, P = a.shape
    if out is None:
        out = numpy.empty((N, P, O), dtype=a.dtype)
    kern.channels_last(a, out, None, N, P, O, False)
    return out


def conv_direct(x, w, b, geo, *, xp=_ns):
    """The convolution of x (N, C, H, W) with w (O, C, kh, kw), groups 1 and stride 1 along
    the width, plus b (O,) if given, computed directly (no column matrix; for few input
    channels, where a GEMM of depth C kh kw is inefficient): y (N, O, Ho, Wo), or None."""
    kern = native(x, w, *(() if b is None else (b,)))
    if kern is None or geo[7] != 1:
        return None
    O = w.shape[0]
    y = numpy.empty((geo[0], O, geo[12], geo[13]), dtype=x.dtype)
    kern.conv_direct(x, w, b, y, geo, O)
    return y


def max_pool2x2_backward(x, y, g, *, xp=_ns):
    """The gradient of ``max_pool2x2``'s y: each window's g routed to its first pixel equal
    to y (the window's last pixel where none is), zeros elsewhere: gx like x, or None."""
    kern = native(x, y, g)
    if kern is None:
        return None
    N, C, H, W = x.shape
    gx = numpy.empty_like(x)
    kern.pool2(0, x, y, g, gx, N * C, H, W, y.shape[2], y.shape[3], 0.0)
    return gx


def avg_pool2x2(x, Ho, Wo, divisor, *, xp=_ns):
    """The mean of each 2x2 window with stride 2 over the first 2 Ho x 2 Wo pixels of x: the
    four summed in row order, divided by the float ``divisor``; None where the compiled code
    does not apply."""
    kern = native(x)
    if kern is None or not isinstance(divisor, float):
        return None
    N, C, H, W = x.shape
    y = numpy.empty((N, C, Ho, Wo), dtype=x.dtype)
    kern.pool2(1, x, None, None, y, N * C, H, W, Ho, Wo, divisor)
    return y


def avg_pool2x2_backward(g, H, W, divisor, *, xp=_ns):
    """The gradient of ``avg_pool2x2``: g / divisor on each pixel of its window, zeros past
    2 Ho x 2 Wo: (N, C, H, W), or None."""
    kern = native(g)
    if kern is None or not isinstance(divisor, float):
        return None
    N, C, Ho, Wo = g.shape
    gx = numpy.empty((N, C, H, W), dtype=g.dtype)
    kern.pool2(2, g, None, None, gx, N * C, H, W, Ho, Wo, divisor)
    return gx
