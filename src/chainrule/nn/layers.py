"""Layers: Linear, Embedding, LayerNorm, RMSNorm, Dropout, Flatten and the activations.

Weight layouts and default initializations are PyTorch's, so checkpoints convert without
transposes and a freshly built layer has the same weight distribution. Each layer checks its
input's shape and dtype and names its own path in the error.
"""

from __future__ import annotations

import math

import numpy as np

from .. import ops as P
from ..tensor import ShapeError, Tensor, as_dtype, float32
from . import functional as F
from . import fused, init
from .module import Module, module_error
from .parameter import Parameter


def _empty(shape, dtype):
    return np.empty(shape, dtype=as_dtype(dtype) or float32)


def check_input(module, x, ndims=None, last=None, dtype=None, expected=None):
    """Raise a ValueError/TypeError naming ``module``'s path when ``x`` is not a tensor with
    one of ``ndims`` dims, trailing dims ``last`` and dtype ``dtype``."""
    if not isinstance(x, Tensor):
        raise module_error(module, TypeError, f"expected a Tensor input, got {type(x).__name__}")
    shape = x._data.shape
    bad = ndims is not None and len(shape) not in ndims
    if last is not None and not bad:
        bad = len(shape) < len(last) or shape[len(shape) - len(last):] != tuple(last)
    if bad:
        raise module_error(
            module, ShapeError, f"input of shape {tuple(shape)} received, expected {expected}"
        )
    if dtype is not None and x._data.dtype != dtype:
        raise module_error(
            module, TypeError,
            f"input of dtype {x.dtype} received, expected {dtype} (the layer's parameters' "
            f"dtype); convert the input with .to({dtype}) or the layer with .to(...)",
        )


class Identity(Module):
    """y = x."""

    def __init__(self, *args, **kwargs):
        super().__init__()

    def forward(self, x):
        return x


class Linear(Module):
    """y = x W^T + b with W (out_features, in_features).

    Init (PyTorch's): W ~ U(-1/sqrt(in), 1/sqrt(in)) (kaiming_uniform_ with a = sqrt(5)),
    b ~ U(-1/sqrt(in), 1/sqrt(in)).
    """

    def __init__(self, in_features, out_features, bias=True, device=None, dtype=None):
        super().__init__()
        self.in_features, self.out_features = int(in_features), int(out_features)
        self.weight = Parameter(_empty((self.out_features, self.in_features), dtype))
        if bias:
            self.bias = Parameter(_empty((self.out_features,), dtype))
        else:
            self.register_parameter("bias", None)
        self.reset_parameters()
        if device is not None:
            self.to(device=device)

    def reset_parameters(self):
        init.kaiming_uniform_(self.weight, a=math.sqrt(5))
        if self.bias is not None:
            bound = 1 / math.sqrt(self.in_features) if self.in_features > 0 else 0
            init.uniform_(self.bias, -bound, bound)

    def forward(self, x):
        w = self.weight
        if (not isinstance(x, Tensor) or not x._data.ndim
                or x._data.shape[-1] != self.in_features or x._data.dtype != w._data.dtype):
            check_input(self, x, last=(self.in_features,), dtype=w._data.dtype,
                        expected=f"(*, {self.in_features}) (last dim = in_features)")
        b = self.bias
        return fused.LinearOp.apply(x, w) if b is None else fused.LinearOp.apply(x, w, b)

    def extra_repr(self):
        return (f"in_features={self.in_features}, out_features={self.out_features}, "
                f"bias={self.bias is not None}")


class Embedding(Module):
    """A lookup table: y = W[idx] with W (num_embeddings, embedding_dim).

    Init (PyTorch's): W ~ N(0, 1), the padding_idx row zero (it gets no gradient).
    """

    def __init__(self, num_embeddings, embedding_dim, padding_idx=None, device=None,
                 dtype=None, _weight=None):
        super().__init__()
        self.num_embeddings, self.embedding_dim = int(num_embeddings), int(embedding_dim)
        if padding_idx is not None:
            if not -self.num_embeddings <= padding_idx < self.num_embeddings:
                raise ValueError(f"Embedding: padding_idx {padding_idx} out of range for "
                                 f"{self.num_embeddings} embeddings")
            padding_idx %= self.num_embeddings
        self.padding_idx = padding_idx
        if _weight is not None:
            self.weight = Parameter(_weight)
        else:
            self.weight = Parameter(_empty((self.num_embeddings, self.embedding_dim), dtype))
            self.reset_parameters()
        if device is not None:
            self.to(device=device)

    def reset_parameters(self):
        init.normal_(self.weight)
        if self.padding_idx is not None:
            self.weight._data[self.padding_idx] = 0

    @classmethod
    def from_pretrained(cls, embeddings, freeze=True, padding_idx=None):
        """An Embedding whose table is ``embeddings`` (num_embeddings, embedding_dim), shared
        not copied; frozen (no gradient) unless ``freeze=False``."""
        if not isinstance(embeddings, Tensor) or embeddings.ndim != 2:
            raise ValueError("Embedding.from_pretrained: expected a 2-d tensor (num_embeddings, "
                             f"embedding_dim), got {getattr(embeddings, 'shape', embeddings)}")
        V, D = embeddings.shape
        m = cls(V, D, padding_idx=padding_idx, _weight=embeddings)
        m.weight.requires_grad_(not freeze)
        return m

    def forward(self, idx):
        a = idx._data if isinstance(idx, Tensor) else None
        if a is None or a.dtype.kind not in "iu":
            got = f"dtype {a.dtype}" if a is not None else type(idx).__name__
            raise module_error(
                self, TypeError,
                f"input of {got} received, expected an integer tensor of indices in "
                f"[0, {self.num_embeddings}); convert with .long()",
            )
        if a.size:
            lo, hi = a.min(), a.max()
            if lo < 0 or hi >= self.num_embeddings:
                raise module_error(
                    self, IndexError,
                    f"index {int(hi if hi >= self.num_embeddings else lo)} received, expected "
                    f"indices in [0, {self.num_embeddings}) (num_embeddings)",
                )
        return fused.EmbeddingOp.apply(self.weight, a, padding_idx=self.padding_idx)

    def extra_repr(self):
        s = f"{self.num_embeddings}, {self.embedding_dim}"
        return s + (f", padding_idx={self.padding_idx}" if self.padding_idx is not None else "")


class _Norm(Module):
    def _check(self, x):
        shape = self.normalized_shape
        if (not isinstance(x, Tensor) or x._data.shape[x._data.ndim - len(shape):] != shape
                or x._data.ndim < len(shape) or x._data.dtype.kind != "f"
                or (self.weight is not None and x._data.dtype != self.weight._data.dtype)):
            dtype = self.weight._data.dtype if self.weight is not None else None
            if dtype is None and isinstance(x, Tensor) and x._data.dtype.kind != "f":
                raise module_error(self, TypeError, f"input of dtype {x.dtype} received, "
                                   "expected a floating tensor")
            check_input(self, x, last=shape, dtype=dtype,
                        expected=f"(*, {', '.join(map(str, shape))}) (trailing dims = "
                                 "normalized_shape)")


class LayerNorm(_Norm):
    """Layer normalization over the trailing ``normalized_shape`` dims: weight ones, bias
    zeros."""

    def __init__(self, normalized_shape, eps=1e-5, elementwise_affine=True, bias=True,
                 device=None, dtype=None):
        super().__init__()
        self.normalized_shape = F._norm_shape(normalized_shape)
        self.eps = eps
        self.elementwise_affine = elementwise_affine
        if elementwise_affine:
            self.weight = Parameter(np.ones(self.normalized_shape, as_dtype(dtype) or float32))
            if bias:
                self.bias = Parameter(np.zeros(self.normalized_shape, as_dtype(dtype) or float32))
            else:
                self.register_parameter("bias", None)
        else:
            self.register_parameter("weight", None)
            self.register_parameter("bias", None)
        if device is not None:
            self.to(device=device)

    def reset_parameters(self):
        if self.weight is not None:
            init.ones_(self.weight)
        if self.bias is not None:
            init.zeros_(self.bias)

    def forward(self, x):
        self._check(x)
        return fused.apply_present(fused.LayerNormOp, x, self.weight, self.bias,
                                       n=math.prod(self.normalized_shape), eps=self.eps)

    def extra_repr(self):
        return (f"{self.normalized_shape}, eps={self.eps}, "
                f"elementwise_affine={self.elementwise_affine}")


class RMSNorm(_Norm):
    """RMS normalization over the trailing dims: y = x / sqrt(mean x^2 + eps) * weight (weight
    ones; eps defaults to the dtype's machine epsilon, as PyTorch)."""

    def __init__(self, normalized_shape, eps=None, elementwise_affine=True, device=None,
                 dtype=None):
        super().__init__()
        self.normalized_shape = F._norm_shape(normalized_shape)
        self.eps = eps
        self.elementwise_affine = elementwise_affine
        if elementwise_affine:
            self.weight = Parameter(np.ones(self.normalized_shape, as_dtype(dtype) or float32))
        else:
            self.register_parameter("weight", None)
        if device is not None:
            self.to(device=device)

    def reset_parameters(self):
        if self.weight is not None:
            init.ones_(self.weight)

    def forward(self, x):
        self._check(x)
        eps = self.eps if self.eps is not None else float(np.finfo(x._data.dtype).eps)
        return fused.apply_present(fused.RMSNormOp, x, self.weight,
                                   n=math.prod(self.normalized_shape), eps=eps)

    def extra_repr(self):
        return (f"{self.normalized_shape}, eps={self.eps}, "
                f"elementwise_affine={self.elementwise_affine}")


class Dropout(Module):
    """Zero elements with probability p in training mode (scaling the rest by 1/(1-p));
    the identity in eval mode."""

    def __init__(self, p=0.5, inplace=False):
        super().__init__()
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"Dropout: p must be in [0, 1], got {p}")
        self.p, self.inplace = float(p), inplace

    def forward(self, x):
        return F.dropout(x, self.p, self.training)

    def extra_repr(self):
        return f"p={self.p}, inplace={self.inplace}"


class Flatten(Module):
    """Flatten dims start_dim..end_dim into one (default: all but the batch dim)."""

    def __init__(self, start_dim=1, end_dim=-1):
        super().__init__()
        self.start_dim, self.end_dim = start_dim, end_dim

    def forward(self, x):
        if not isinstance(x, Tensor):
            check_input(self, x)
        nd = max(x.ndim, 1)
        if not (-nd <= self.start_dim < nd and -nd <= self.end_dim < nd):
            raise module_error(
                self, ValueError,
                f"input of shape {tuple(x.shape)} received, expected at least "
                f"{max(self.start_dim, self.end_dim, -min(self.start_dim, self.end_dim) - 1) + 1}"
                " dims",
            )
        return P.flatten(x, self.start_dim, self.end_dim)

    def extra_repr(self):
        return f"start_dim={self.start_dim}, end_dim={self.end_dim}"


class Unflatten(Module):
    """Split dim ``dim`` into ``unflattened_size``."""

    def __init__(self, dim, unflattened_size):
        super().__init__()
        self.dim, self.unflattened_size = dim, tuple(unflattened_size)

    def forward(self, x):
        return P.unflatten(x, self.dim, self.unflattened_size)

    def extra_repr(self):
        return f"dim={self.dim}, unflattened_size={self.unflattened_size}"


# ----------------------------------------------------------------------------- activations


class ReLU(Module):
    """y = max(x, 0)."""

    def __init__(self, inplace=False):
        super().__init__()

    def forward(self, x):
        return P.relu(x)


class GELU(Module):
    """y = x Phi(x) (approximate='tanh': the tanh form)."""

    def __init__(self, approximate="none"):
        super().__init__()
        if approximate not in ("none", "tanh"):
            raise ValueError(f"GELU: approximate must be 'none' or 'tanh', got {approximate!r}")
        self.approximate = approximate

    def forward(self, x):
        return F.gelu(x, self.approximate)

    def extra_repr(self):
        return f"approximate={self.approximate!r}"


class SiLU(Module):
    """y = x sigmoid(x)."""

    def __init__(self, inplace=False):
        super().__init__()

    def forward(self, x):
        return P.silu(x)


class Tanh(Module):
    """y = tanh(x)."""

    def forward(self, x):
        return P.tanh(x)


class Sigmoid(Module):
    """y = 1 / (1 + exp(-x))."""

    def forward(self, x):
        return P.sigmoid(x)


class LeakyReLU(Module):
    """y = x if x > 0 else negative_slope x."""

    def __init__(self, negative_slope=0.01, inplace=False):
        super().__init__()
        self.negative_slope = negative_slope

    def forward(self, x):
        return P.leaky_relu(x, self.negative_slope)

    def extra_repr(self):
        return f"negative_slope={self.negative_slope}"


class Softplus(Module):
    """y = log(1 + exp(beta x)) / beta."""

    def __init__(self, beta=1.0, threshold=20.0):
        super().__init__()
        self.beta, self.threshold = beta, threshold

    def forward(self, x):
        return P.softplus(x, self.beta, self.threshold)


class Softmax(Module):
    """y = softmax(x, dim)."""

    def __init__(self, dim=-1):
        super().__init__()
        self.dim = dim

    def forward(self, x):
        return P.softmax(x, self.dim)

    def extra_repr(self):
        return f"dim={self.dim}"


class LogSoftmax(Module):
    """y = log_softmax(x, dim)."""

    def __init__(self, dim=-1):
        super().__init__()
        self.dim = dim

    def forward(self, x):
        return P.log_softmax(x, self.dim)

    def extra_repr(self):
        return f"dim={self.dim}"


# ----------------------------------------------------------------------------- convolution


class _ConvNd(Module):
    _nd = 2

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0, dilation=1,
                 groups=1, bias=True, padding_mode="zeros", device=None, dtype=None):
        super().__init__()
        nd = self._nd
        name = type(self).__name__
        if padding_mode not in ("zeros", "reflect", "replicate", "circular"):
            raise ValueError(f"{name}: padding_mode must be 'zeros', 'reflect', 'replicate' or "
                             f"'circular', got {padding_mode!r}")
        if in_channels % groups or out_channels % groups:
            raise ValueError(f"{name}: in_channels ({in_channels}) and out_channels "
                             f"({out_channels}) must be divisible by groups ({groups})")

        def tup(v):
            return (int(v),) * nd if isinstance(v, int) else tuple(int(i) for i in v)

        self.in_channels, self.out_channels = int(in_channels), int(out_channels)
        self.kernel_size, self.stride, self.dilation = tup(kernel_size), tup(stride), tup(dilation)
        self.padding = padding if isinstance(padding, str) else tup(padding)
        self.groups, self.padding_mode = int(groups), padding_mode
        # F.pad's widths (last dim first) for the non-zero padding modes, as PyTorch's
        # _reversed_padding_repeated_twice; 'same' puts the odd extra on the right
        if self.padding == "same":
            self._reversed_padding_repeated_twice = tuple(
                w for d, k in reversed(list(zip(self.dilation, self.kernel_size)))
                for w in (d * (k - 1) // 2, d * (k - 1) - d * (k - 1) // 2))
        elif self.padding == "valid":
            self._reversed_padding_repeated_twice = (0, 0) * nd
        else:
            self._reversed_padding_repeated_twice = tuple(
                w for p in reversed(self.padding) for w in (p, p))
        shape = (self.out_channels, self.in_channels // self.groups) + self.kernel_size
        self.weight = Parameter(_empty(shape, dtype))
        if bias:
            self.bias = Parameter(_empty((self.out_channels,), dtype))
        else:
            self.register_parameter("bias", None)
        self.reset_parameters()
        if device is not None:
            self.to(device=device)

    def reset_parameters(self):
        """PyTorch's: W ~ U(-1/sqrt(fan_in), 1/sqrt(fan_in)) (kaiming_uniform_ with a = sqrt(5)),
        b likewise, fan_in = in_channels / groups * prod(kernel_size)."""
        init.kaiming_uniform_(self.weight, a=math.sqrt(5))
        if self.bias is not None:
            fan_in = math.prod(self.weight.shape[1:])
            bound = 1 / math.sqrt(fan_in) if fan_in > 0 else 0
            init.uniform_(self.bias, -bound, bound)

    def _check(self, x):
        nd = self._nd
        w = self.weight._data
        if (not isinstance(x, Tensor) or x._data.ndim not in (nd + 1, nd + 2)
                or x._data.shape[-nd - 1] != self.in_channels or x._data.dtype != w.dtype):
            dims = ("N", "C", "H", "W") if nd == 2 else ("N", "C", "L")
            spatial = ", ".join(dims[2:])
            check_input(self, x, ndims=(nd + 1, nd + 2), dtype=w.dtype,
                        expected=f"({dims[0]}, {self.in_channels}, {spatial}) or "
                                 f"({self.in_channels}, {spatial}) (C = in_channels)")
            raise module_error(
                self, ShapeError,
                f"input of shape {tuple(x.shape)} received, expected ({dims[0]}, "
                f"{self.in_channels}, {spatial}) or ({self.in_channels}, {spatial}) "
                "(C = in_channels)",
            )

    def _padded(self, x):
        """The input padded by padding_mode, and the padding left for the convolution."""
        if self.padding_mode == "zeros":
            return x, self.padding
        return F.pad(x, self._reversed_padding_repeated_twice, mode=self.padding_mode), 0

    def extra_repr(self):
        s = (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
             f"stride={self.stride}")
        if self.padding != (0,) * self._nd:  # PyTorch prints padding=valid too
            s += f", padding={self.padding}"
        if self.dilation != (1,) * self._nd:
            s += f", dilation={self.dilation}"
        if self.groups != 1:
            s += f", groups={self.groups}"
        if self.bias is None:
            s += ", bias=False"
        return s + (f", padding_mode={self.padding_mode}" if self.padding_mode != "zeros" else "")


class Conv2d(_ConvNd):
    """2-d convolution (cross-correlation) over (N, C, H, W) with weight
    (out_channels, in_channels / groups, kh, kw)."""

    _nd = 2

    def forward(self, x):
        self._check(x)
        x, padding = self._padded(x)
        return F.conv2d(x, self.weight, self.bias, self.stride, padding, self.dilation,
                        self.groups)


class Conv1d(_ConvNd):
    """1-d convolution over (N, C, L) with weight (out_channels, in_channels / groups, k)."""

    _nd = 1

    def forward(self, x):
        self._check(x)
        x, padding = self._padded(x)
        return F.conv1d(x, self.weight, self.bias, self.stride, padding, self.dilation,
                        self.groups)


class _Pool(Module):
    def _check(self, x):
        if not isinstance(x, Tensor) or x._data.ndim not in (3, 4) or x._data.dtype.kind != "f":
            check_input(self, x, ndims=(3, 4), expected="(N, C, H, W) or (C, H, W)")
            raise module_error(self, TypeError, f"input of dtype {x.dtype} received, expected a "
                                                "floating tensor")


class _MaxPoolNd(_Pool):
    """The arguments of MaxPool1d and MaxPool2d (stride defaults to kernel_size)."""

    def __init__(self, kernel_size, stride=None, padding=0, dilation=1, return_indices=False,
                 ceil_mode=False):
        super().__init__()
        self.kernel_size, self.stride = kernel_size, stride if stride is not None else kernel_size
        self.padding, self.dilation = padding, dilation
        self.return_indices, self.ceil_mode = return_indices, ceil_mode

    def extra_repr(self):
        return (f"kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding}, "
                f"dilation={self.dilation}, ceil_mode={self.ceil_mode}")


class MaxPool2d(_MaxPoolNd):
    """Maximum over kernel_size windows (stride defaults to kernel_size)."""

    def forward(self, x):
        self._check(x)
        return F.max_pool2d(x, self.kernel_size, self.stride, self.padding, self.dilation,
                            self.ceil_mode, self.return_indices)


class AvgPool2d(_Pool):
    """Mean over kernel_size windows (stride defaults to kernel_size)."""

    def __init__(self, kernel_size, stride=None, padding=0, ceil_mode=False,
                 count_include_pad=True, divisor_override=None):
        super().__init__()
        self.kernel_size, self.stride = kernel_size, stride if stride is not None else kernel_size
        self.padding, self.ceil_mode = padding, ceil_mode
        self.count_include_pad, self.divisor_override = count_include_pad, divisor_override

    def forward(self, x):
        self._check(x)
        return F.avg_pool2d(x, self.kernel_size, self.stride, self.padding, self.ceil_mode,
                            self.count_include_pad, self.divisor_override)

    def extra_repr(self):
        return f"kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding}"


class AdaptiveAvgPool2d(_Pool):
    """Average pooling to a fixed output size."""

    def __init__(self, output_size):
        super().__init__()
        self.output_size = output_size

    def forward(self, x):
        self._check(x)
        return F.adaptive_avg_pool2d(x, self.output_size)

    def extra_repr(self):
        return f"output_size={self.output_size}"
