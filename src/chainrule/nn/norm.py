"""Normalization layers over channels: BatchNorm1d/2d/3d, InstanceNorm1d/2d/3d and GroupNorm,
with PyTorch's parameters, buffers (running_mean, running_var, num_batches_tracked) and
train/eval behaviour."""

from __future__ import annotations

import numpy as np

from ..tensor import Tensor, as_dtype, float32
from . import functional as F
from . import init
from .layers import check_input
from .module import Module, module_error
from .parameter import Parameter


class _NormBase(Module):
    _ndims = (2, 3)
    _expected = "(N, C) or (N, C, L)"

    def __init__(self, num_features, eps=1e-5, momentum=0.1, affine=True,
                 track_running_stats=True, device=None, dtype=None):
        super().__init__()
        dt = as_dtype(dtype) or float32
        self.num_features, self.eps, self.momentum = int(num_features), eps, momentum
        self.affine, self.track_running_stats = affine, track_running_stats
        if affine:
            self.weight = Parameter(np.ones(self.num_features, dt))
            self.bias = Parameter(np.zeros(self.num_features, dt))
        else:
            self.register_parameter("weight", None)
            self.register_parameter("bias", None)
        if track_running_stats:
            self.register_buffer("running_mean", Tensor._wrap(np.zeros(self.num_features, dt)))
            self.register_buffer("running_var", Tensor._wrap(np.ones(self.num_features, dt)))
            self.register_buffer("num_batches_tracked", Tensor._wrap(np.zeros((), np.int64)))
        else:
            self.register_buffer("running_mean", None)
            self.register_buffer("running_var", None)
            self.register_buffer("num_batches_tracked", None)
        if device is not None:
            self.to(device=device)

    def reset_running_stats(self):
        if self.track_running_stats:
            self.running_mean._data[...] = 0
            self.running_var._data[...] = 1
            self.num_batches_tracked._data[...] = 0

    def reset_parameters(self):
        self.reset_running_stats()
        if self.affine:
            init.ones_(self.weight)
            init.zeros_(self.bias)

    def _check(self, x):
        if (not isinstance(x, Tensor) or x._data.ndim not in self._ndims
                or x._data.shape[1] != self.num_features or x._data.dtype.kind != "f"):
            check_input(self, x, ndims=self._ndims, expected=self._expected)
            if x._data.dtype.kind != "f":
                raise module_error(self, TypeError, f"input of dtype {x.dtype} received, "
                                   "expected a floating tensor")
            raise module_error(self, ValueError, f"input of shape {tuple(x.shape)} received, "
                               f"expected {self._expected} with C = num_features = "
                               f"{self.num_features}")

    def _factor(self):
        """The momentum of this step's update (PyTorch's exponential_average_factor); counts
        the batch when the statistics are tracked in training."""
        factor = 0.0 if self.momentum is None else self.momentum
        if self.training and self.track_running_stats and self.num_batches_tracked is not None:
            self.num_batches_tracked._data[...] += 1
            if self.momentum is None:
                factor = 1.0 / float(self.num_batches_tracked._data)
        return factor

    def extra_repr(self):
        return (f"{self.num_features}, eps={self.eps}, momentum={self.momentum}, "
                f"affine={self.affine}, track_running_stats={self.track_running_stats}")


class _BatchNorm(_NormBase):
    """Batch normalization per channel: in training, the batch's statistics normalize and the
    running ones move by ``momentum`` (None: a cumulative average); in eval, the running ones
    normalize (the batch's, without ``track_running_stats``)."""

    def forward(self, x):
        self._check(x)
        factor = self._factor()
        bn_training = self.training or (self.running_mean is None and self.running_var is None)
        track = not self.training or self.track_running_stats
        return F.batch_norm(x, self.running_mean if track else None,
                            self.running_var if track else None, self.weight, self.bias,
                            bn_training, factor, self.eps)


class BatchNorm1d(_BatchNorm):
    """Batch normalization over (N, C) or (N, C, L)."""


class BatchNorm2d(_BatchNorm):
    """Batch normalization over (N, C, H, W)."""

    _ndims = (4,)
    _expected = "(N, C, H, W)"


class BatchNorm3d(_BatchNorm):
    """Batch normalization over (N, C, D, H, W)."""

    _ndims = (5,)
    _expected = "(N, C, D, H, W)"


class _InstanceNorm(_NormBase):
    """Normalization of each (sample, channel) over the spatial dims; affine and running
    statistics off by default, as PyTorch. An unbatched input (C, *) is one sample."""

    _nd = 1

    def __init__(self, num_features, eps=1e-5, momentum=0.1, affine=False,
                 track_running_stats=False, device=None, dtype=None):
        super().__init__(num_features, eps, momentum, affine, track_running_stats, device,
                         dtype)

    def forward(self, x):
        nd = self._nd
        if isinstance(x, Tensor) and x._data.ndim == nd + 1:
            return self.forward(x.unsqueeze(0)).squeeze(0)
        self._check(x)
        factor = 0.0 if self.momentum is None else self.momentum  # (no batch count, as torch)
        use_input_stats = self.training or not self.track_running_stats
        return F.instance_norm(x, self.running_mean, self.running_var, self.weight, self.bias,
                               use_input_stats, factor, self.eps)


class InstanceNorm1d(_InstanceNorm):
    """Instance normalization over (N, C, L) or (C, L)."""

    _nd, _ndims, _expected = 1, (3,), "(N, C, L) or (C, L)"


class InstanceNorm2d(_InstanceNorm):
    """Instance normalization over (N, C, H, W) or (C, H, W)."""

    _nd, _ndims, _expected = 2, (4,), "(N, C, H, W) or (C, H, W)"


class InstanceNorm3d(_InstanceNorm):
    """Instance normalization over (N, C, D, H, W) or (C, D, H, W)."""

    _nd, _ndims, _expected = 3, (5,), "(N, C, D, H, W) or (C, D, H, W)"


class GroupNorm(Module):
    """Normalization over groups of channels of each sample: weight ones, bias zeros."""

    def __init__(self, num_groups, num_channels, eps=1e-5, affine=True, device=None,
                 dtype=None):
        super().__init__()
        if num_groups < 1 or num_channels % num_groups:
            raise ValueError(f"GroupNorm: num_channels ({num_channels}) must be divisible by "
                             f"num_groups ({num_groups})")
        dt = as_dtype(dtype) or float32
        self.num_groups, self.num_channels = int(num_groups), int(num_channels)
        self.eps, self.affine = eps, affine
        if affine:
            self.weight = Parameter(np.ones(self.num_channels, dt))
            self.bias = Parameter(np.zeros(self.num_channels, dt))
        else:
            self.register_parameter("weight", None)
            self.register_parameter("bias", None)
        if device is not None:
            self.to(device=device)

    def reset_parameters(self):
        if self.affine:
            init.ones_(self.weight)
            init.zeros_(self.bias)

    def forward(self, x):
        if (not isinstance(x, Tensor) or x._data.ndim < 2
                or x._data.shape[1] != self.num_channels):
            check_input(self, x, expected=f"(N, {self.num_channels}, *)")
            raise module_error(self, ValueError, f"input of shape {tuple(x.shape)} received, "
                               f"expected (N, {self.num_channels}, *) (C = num_channels)")
        return F.group_norm(x, self.num_groups, self.weight, self.bias, self.eps)

    def extra_repr(self):
        return f"{self.num_groups}, {self.num_channels}, eps={self.eps}, affine={self.affine}"


class LocalResponseNorm(Module):
    """F.local_response_norm as a layer (normalization across neighbouring channels)."""

    def __init__(self, size, alpha=1e-4, beta=0.75, k=1.0):
        super().__init__()
        self.size, self.alpha, self.beta, self.k = size, alpha, beta, k

    def forward(self, x):
        return F.local_response_norm(x, self.size, self.alpha, self.beta, self.k)

    def extra_repr(self):
        return f"{self.size}, alpha={self.alpha}, beta={self.beta}, k={self.k}"
