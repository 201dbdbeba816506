"""Layers over :mod:`chainrule.nn.functional_resample`: Conv3d, ConvTranspose1d/2d/3d,
MaxPool3d, AvgPool3d, MaxPool1d,
AvgPool1d, AdaptiveMaxPool1d/2d, AdaptiveAvgPool1d, Dropout1d/2d/3d, Upsample (and
UpsamplingNearest2d, UpsamplingBilinear2d), PixelShuffle, PixelUnshuffle, Unfold, Fold, with
PyTorch's arguments, weight layouts and initialization."""

from __future__ import annotations

import math

import numpy as np

from ..tensor import Tensor, as_dtype, float32
from . import functional as F
from . import init
from .layers import _ConvNd, _MaxPoolNd
from .module import Module, module_error
from .parameter import Parameter


class _ConvTransposeNd(Module):
    _nd = 2

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0,
                 output_padding=0, groups=1, bias=True, dilation=1, padding_mode="zeros",
                 device=None, dtype=None):
        super().__init__()
        nd, name = self._nd, type(self).__name__
        if padding_mode != "zeros":
            raise ValueError(f"{name}: only padding_mode='zeros' is supported, got "
                             f"{padding_mode!r}")
        if in_channels % groups or out_channels % groups:
            raise ValueError(f"{name}: in_channels ({in_channels}) and out_channels "
                             f"({out_channels}) must be divisible by groups ({groups})")

        def tup(v):
            return (int(v),) * nd if isinstance(v, int) else tuple(int(i) for i in v)

        self.in_channels, self.out_channels = int(in_channels), int(out_channels)
        self.kernel_size, self.stride, self.padding = tup(kernel_size), tup(stride), tup(padding)
        self.output_padding, self.dilation = tup(output_padding), tup(dilation)
        self.groups, self.padding_mode, self.transposed = int(groups), padding_mode, True
        dt = as_dtype(dtype) or float32
        shape = (self.in_channels, self.out_channels // self.groups) + self.kernel_size
        self.weight = Parameter(np.empty(shape, dt))
        if bias:
            self.bias = Parameter(np.empty(self.out_channels, dt))
        else:
            self.register_parameter("bias", None)
        self.reset_parameters()
        if device is not None:
            self.to(device=device)

    def reset_parameters(self):
        """PyTorch's: kaiming_uniform_(a = sqrt(5)) with fan_in = weight.shape[1] * prod(k),
        the bias U(-1/sqrt(fan_in), 1/sqrt(fan_in))."""
        init.kaiming_uniform_(self.weight, a=math.sqrt(5))
        if self.bias is not None:
            fan_in = math.prod(self.weight.shape[1:])
            bound = 1 / math.sqrt(fan_in) if fan_in > 0 else 0
            init.uniform_(self.bias, -bound, bound)

    def _output_padding(self, x, output_size):
        if output_size is None:
            return self.output_padding
        want = tuple(output_size)[-self._nd:]
        pads = []
        for k in range(self._nd):
            n = x.shape[x.ndim - self._nd + k]
            base = ((n - 1) * self.stride[k] - 2 * self.padding[k]
                    + self.dilation[k] * (self.kernel_size[k] - 1) + 1)
            extra = want[k] - base
            if not 0 <= extra < max(self.stride[k], self.dilation[k]):
                raise module_error(self, ValueError, f"output_size {tuple(want)} received, "
                                   f"expected sizes from {base} to "
                                   f"{base + max(self.stride[k], self.dilation[k]) - 1}")
            pads.append(extra)
        return tuple(pads)

    def _check(self, x):
        nd = self._nd
        if not isinstance(x, Tensor) or x.ndim not in (nd + 1, nd + 2) or \
                x.shape[-nd - 1] != self.in_channels:
            got = tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__
            raise module_error(self, ValueError, f"input {got} received, expected (N, "
                               f"{self.in_channels}, *{nd} spatial dims) (C = in_channels)")

    def extra_repr(self):
        s = (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
             f"stride={self.stride}")
        if self.padding != (0,) * self._nd:
            s += f", padding={self.padding}"
        if self.output_padding != (0,) * self._nd:
            s += f", output_padding={self.output_padding}"
        if self.groups != 1:
            s += f", groups={self.groups}"
        return s + ("" if self.bias is not None else ", bias=False")


class ConvTranspose2d(_ConvTransposeNd):
    """2-d transposed convolution, weight (in_channels, out_channels / groups, kh, kw)."""

    _nd = 2

    def forward(self, input, output_size=None):
        self._check(input)
        return F.conv_transpose2d(input, self.weight, self.bias, self.stride, self.padding,
                                  self._output_padding(input, output_size), self.groups,
                                  self.dilation)


class ConvTranspose1d(_ConvTransposeNd):
    """1-d transposed convolution, weight (in_channels, out_channels / groups, k)."""

    _nd = 1

    def forward(self, input, output_size=None):
        self._check(input)
        return F.conv_transpose1d(input, self.weight, self.bias, self.stride, self.padding,
                                  self._output_padding(input, output_size), self.groups,
                                  self.dilation)


class ConvTranspose3d(_ConvTransposeNd):
    """3-d transposed convolution, weight (in_channels, out_channels / groups, kd, kh, kw)."""

    _nd = 3

    def forward(self, input, output_size=None):
        self._check(input)
        return F.conv_transpose3d(input, self.weight, self.bias, self.stride, self.padding,
                                  self._output_padding(input, output_size), self.groups,
                                  self.dilation)


class Conv3d(_ConvNd):
    """3-d convolution (cross-correlation) over (N, C, D, H, W) with weight
    (out_channels, in_channels / groups, kd, kh, kw)."""

    _nd = 3

    def _check(self, x):
        w = self.weight._data
        if (not isinstance(x, Tensor) or x._data.ndim not in (4, 5)
                or x._data.shape[-4] != self.in_channels or x._data.dtype != w.dtype):
            got = (f"input of shape {tuple(x.shape)} and dtype {x.dtype}"
                   if isinstance(x, Tensor) else f"input of type {type(x).__name__}")
            raise module_error(self, ValueError, f"{got} received, expected (N, "
                               f"{self.in_channels}, D, H, W) or ({self.in_channels}, D, H, W) "
                               f"of dtype {as_dtype(w.dtype)} (C = in_channels)")

    def forward(self, x):
        self._check(x)
        x, padding = self._padded(x)
        return F.conv3d(x, self.weight, self.bias, self.stride, padding, self.dilation,
                        self.groups)


class MaxPool3d(_MaxPoolNd):
    """Maximum over (kd, kh, kw) windows of (N, C, D, H, W) (stride defaults to kernel_size)."""

    def forward(self, x):
        return F.max_pool3d(x, self.kernel_size, self.stride, self.padding, self.dilation,
                            self.ceil_mode, self.return_indices)


class AvgPool3d(Module):
    """Mean over (kd, kh, kw) windows of (N, C, D, H, W) (stride defaults to kernel_size)."""

    def __init__(self, kernel_size, stride=None, padding=0, ceil_mode=False,
                 count_include_pad=True, divisor_override=None):
        super().__init__()
        self.kernel_size, self.stride = kernel_size, stride if stride is not None else kernel_size
        self.padding, self.ceil_mode = padding, ceil_mode
        self.count_include_pad, self.divisor_override = count_include_pad, divisor_override

    def forward(self, x):
        return F.avg_pool3d(x, self.kernel_size, self.stride, self.padding, self.ceil_mode,
                            self.count_include_pad, self.divisor_override)

    def extra_repr(self):
        return f"kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding}"


class MaxPool1d(_MaxPoolNd):
    """Maximum over windows of (N, C, L)."""

    def forward(self, x):
        return F.max_pool1d(x, self.kernel_size, self.stride, self.padding, self.dilation,
                            self.ceil_mode, self.return_indices)


class AvgPool1d(Module):
    """Mean over windows of (N, C, L)."""

    def __init__(self, kernel_size, stride=None, padding=0, ceil_mode=False,
                 count_include_pad=True):
        super().__init__()
        self.kernel_size, self.stride = kernel_size, stride if stride is not None else kernel_size
        self.padding, self.ceil_mode, self.count_include_pad = padding, ceil_mode, \
            count_include_pad

    def forward(self, x):
        return F.avg_pool1d(x, self.kernel_size, self.stride, self.padding, self.ceil_mode,
                            self.count_include_pad)


class AdaptiveMaxPool2d(Module):
    """Maximum over adaptive windows to ``output_size``."""

    def __init__(self, output_size, return_indices=False):
        super().__init__()
        self.output_size, self.return_indices = output_size, return_indices

    def forward(self, x):
        return F.adaptive_max_pool2d(x, self.output_size, self.return_indices)


class AdaptiveMaxPool1d(AdaptiveMaxPool2d):
    """Maximum over adaptive windows of (N, C, L)."""

    def forward(self, x):
        return F.adaptive_max_pool1d(x, self.output_size, self.return_indices)


class AdaptiveAvgPool1d(Module):
    """Mean over adaptive windows of (N, C, L)."""

    def __init__(self, output_size):
        super().__init__()
        self.output_size = output_size

    def forward(self, x):
        return F.adaptive_avg_pool1d(x, self.output_size)


class _DropoutNd(Module):
    _fn = staticmethod(F.dropout2d)

    def __init__(self, p=0.5, inplace=False):
        super().__init__()
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"{type(self).__name__}: p must be in [0, 1], got {p}")
        self.p, self.inplace = float(p), inplace

    def forward(self, x):
        return type(self)._fn(x, self.p, self.training)

    def extra_repr(self):
        return f"p={self.p}, inplace={self.inplace}"


class Dropout1d(_DropoutNd):
    """Zero whole channels of (N, C, L) in training."""

    _fn = staticmethod(F.dropout1d)


class Dropout2d(_DropoutNd):
    """Zero whole channels of (N, C, H, W) in training."""

    _fn = staticmethod(F.dropout2d)


class Dropout3d(_DropoutNd):
    """Zero whole channels of (N, C, D, H, W) in training."""

    _fn = staticmethod(F.dropout3d)


class Upsample(Module):
    """F.interpolate as a layer."""

    def __init__(self, size=None, scale_factor=None, mode="nearest", align_corners=None,
                 recompute_scale_factor=None):
        super().__init__()
        self.size, self.scale_factor, self.mode = size, scale_factor, mode
        self.align_corners, self.recompute_scale_factor = align_corners, recompute_scale_factor

    def forward(self, x):
        return F.interpolate(x, self.size, self.scale_factor, self.mode, self.align_corners,
                             self.recompute_scale_factor)

    def extra_repr(self):
        what = f"size={self.size}" if self.size is not None else \
            f"scale_factor={self.scale_factor}"
        return f"{what}, mode={self.mode!r}"


class UpsamplingNearest2d(Upsample):
    """Nearest-neighbour upsampling of (N, C, H, W)."""

    def __init__(self, size=None, scale_factor=None):
        super().__init__(size, scale_factor, "nearest")


class UpsamplingBilinear2d(Upsample):
    """Bilinear upsampling of (N, C, H, W) with align_corners=True (as PyTorch)."""

    def __init__(self, size=None, scale_factor=None):
        super().__init__(size, scale_factor, "bilinear", True)


class PixelShuffle(Module):
    """(*, C r^2, H, W) -> (*, C, H r, W r)."""

    def __init__(self, upscale_factor):
        super().__init__()
        self.upscale_factor = upscale_factor

    def forward(self, x):
        return F.pixel_shuffle(x, self.upscale_factor)


class PixelUnshuffle(Module):
    """(*, C, H r, W r) -> (*, C r^2, H, W)."""

    def __init__(self, downscale_factor):
        super().__init__()
        self.downscale_factor = downscale_factor

    def forward(self, x):
        return F.pixel_unshuffle(x, self.downscale_factor)


class Unfold(Module):
    """Sliding windows as columns (im2col)."""

    def __init__(self, kernel_size, dilation=1, padding=0, stride=1):
        super().__init__()
        self.kernel_size, self.dilation, self.padding, self.stride = (kernel_size, dilation,
                                                                      padding, stride)

    def forward(self, x):
        return F.unfold(x, self.kernel_size, self.dilation, self.padding, self.stride)


class Fold(Module):
    """Columns summed back into an image (col2im)."""

    def __init__(self, output_size, kernel_size, dilation=1, padding=0, stride=1):
        super().__init__()
        self.output_size, self.kernel_size = output_size, kernel_size
        self.dilation, self.padding, self.stride = dilation, padding, stride

    def forward(self, x):
        return F.fold(x, self.output_size, self.kernel_size, self.dilation, self.padding,
                      self.stride)
