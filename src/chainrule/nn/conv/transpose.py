"""Transposed convolution (the gradient of a convolution with respect to its input, as a
layer): the input with stride - 1 zeros between its elements, padded by
dilation (k - 1) - padding on each side (plus output_padding after), convolved with the
weight flipped in space and with its in/out channels swapped per group, through the
convolution strategies of :mod:`.conv2d`."""

from __future__ import annotations

from ... import ops as P


def _spread(x, dim, s):
    """s - 1 zeros after every element of ``x`` along ``dim`` (none after the last)."""
    if s == 1:
        return x
    n = x.shape[dim]
    y = x.unsqueeze(dim + 1)
    widths = [0, 0] * (y.ndim - dim - 2) + [0, s - 1]
    y = P.pad(y, tuple(widths))
    shape = tuple(x.shape[:dim]) + (n * s,) + tuple(x.shape[dim + 1:])
    return P.narrow(y.reshape(shape), dim, 0, (n - 1) * s + 1)


def _pad_or_crop(x, dim, lo, hi):
    if lo < 0:
        x = P.narrow(x, dim, -lo, x.shape[dim] + lo)
        lo = 0
    if hi < 0:
        x = P.narrow(x, dim, 0, x.shape[dim] + hi)
        hi = 0
    if lo or hi:
        widths = [0, 0] * (x.ndim - dim - 1) + [lo, hi]
        x = P.pad(x, tuple(widths))
    return x


def transpose_weight(w, groups):
    """(C_in, C_out / g, kh, kw) -> (C_out, C_in / g, kh, kw), flipped in space."""
    cin, cog, kh, kw = w.shape
    w = w.reshape(groups, cin // groups, cog, kh, kw).transpose(1, 2)
    return P.flip(w.reshape(groups * cog, cin // groups, kh, kw), (2, 3))


def conv_transpose2d_nchw(x, w, bias, stride, padding, output_padding, groups, dilation,
                          conv):
    """The transposed convolution of a batched (N, C_in, H, W) input; ``conv`` is the
    convolution (conv2d's signature) it runs on the spread, padded input."""
    kh, kw = w.shape[2], w.shape[3]
    for dim, s, k, p, op, d in ((2, stride[0], kh, padding[0], output_padding[0], dilation[0]),
                                (3, stride[1], kw, padding[1], output_padding[1], dilation[1])):
        x = _spread(x, dim, s)
        edge = d * (k - 1) - p
        x = _pad_or_crop(x, dim, edge, edge + op)
    return conv(x, transpose_weight(w, groups), bias, 1, 0, dilation, groups)
