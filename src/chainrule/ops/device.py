"""Copies and conversions, differentiably: to another device (ToDevice), to another dtype
(Cast), and clones."""

from __future__ import annotations

from .. import backend
from ..autograd import Op
from ..dtypes import as_dtype
from ..tensor import Tensor
from ._methods import tensor_method
from .arithmetic import Mul
from .nograd import NoGradElementwise


class ToDevice(Op):
    """y = x on another device;  dx = g moved back."""

    def forward(self, x, device="cpu"):
        self.src = backend.device_of(x)
        return backend.to_device(x, device)

    def backward(self, g):
        return (backend.to_device(g, self.src),)


class Cast(Op):
    """y = x as another dtype;  dx = g cast back (no gradient into integer dtypes)."""

    def forward(self, x, dtype=None):
        self.src = x.dtype
        return x.astype(dtype)

    def backward(self, g):
        return (g.astype(self.src),)

    @classmethod
    def apply(cls, x, dtype):
        if dtype.kind != "f":
            return NoGradElementwise.apply(x, fn=lambda xp, a: a.astype(dtype))
        return super().apply(x, dtype=dtype)


def to_device(x, device):
    backend.xp_for_device(device)  # loads the device's namespace before the op is applied
    return ToDevice.apply(x, device=device)


def cast(x, dtype):
    return Cast.apply(x, as_dtype(dtype))


@tensor_method("type_as")
def _type_as(self, other):
    """x.type_as(other): x in other's dtype."""
    return self.type(other.dtype)


def clone(x):
    return Mul.apply(x, 1) if x.requires_grad else Tensor._wrap(x._data.copy())


def clone_detach(x):
    return Tensor._wrap(x._data.copy())


__all__ = ["to_device", "cast", "clone", "clone_detach"]
