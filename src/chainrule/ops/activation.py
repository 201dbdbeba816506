"""Activations: sigmoid, relu, leaky_relu, gelu, silu, softplus, and the rest of PyTorch's
(elu, selu, celu, hardtanh, relu6, hardsigmoid, hardswish, mish, logsigmoid, softsign,
tanhshrink): each is a row of the elementwise table (:mod:`chainrule.backend.elementwise`),
whose op :mod:`chainrule.ops.pointwise` makes, with one compiled pass each way on the CPU."""

from __future__ import annotations

from ._methods import tensor_method
from .pointwise import pointwise


@tensor_method()
def sigmoid(x):
    return pointwise("sigmoid", x)


@tensor_method()
def relu(x):
    return pointwise("relu", x)


@tensor_method()
def leaky_relu(x, negative_slope=0.01):
    return pointwise("leaky_relu", x, negative_slope)


@tensor_method()
def gelu(x, approximate="none"):
    """y = x Phi(x) (Phi the standard normal CDF), or its tanh approximation with
    ``approximate="tanh"`` (PyTorch's GELU). Integer and bool tensors become float32."""
    if approximate == "none":
        return pointwise("gelu", x)
    if approximate == "tanh":
        return pointwise("gelu_tanh", x, op_name="gelu")
    raise ValueError(f"gelu: approximate must be 'none' or 'tanh', got {approximate!r}")


@tensor_method()
def silu(x):
    return pointwise("silu", x)


@tensor_method()
def softplus(x, beta=1.0, threshold=20.0):
    return pointwise("softplus", x, beta, threshold)


def elu(x, alpha=1.0):
    return pointwise("elu", x, alpha)


def selu(x):
    return pointwise("selu", x)


def celu(x, alpha=1.0):
    if alpha == 0:
        raise ValueError("celu: alpha must not be 0 (it divides x)")
    return pointwise("celu", x, alpha)


def hardtanh(x, min_val=-1.0, max_val=1.0):
    if min_val > max_val:
        raise ValueError(f"hardtanh: min_val ({min_val}) must not exceed max_val ({max_val})")
    return pointwise("hardtanh", x, min_val, max_val)


def relu6(x):
    return pointwise("hardtanh", x, 0.0, 6.0, op_name="relu6")


def hardsigmoid(x):
    return pointwise("hardsigmoid", x)


def hardswish(x):
    return pointwise("hardswish", x)


def mish(x):
    return pointwise("mish", x)


def logsigmoid(x):
    return pointwise("logsigmoid", x)


def softsign(x):
    return pointwise("softsign", x)


def tanhshrink(x):
    return pointwise("tanhshrink", x)


__all__ = ["sigmoid", "relu", "leaky_relu", "gelu", "silu", "softplus"]
