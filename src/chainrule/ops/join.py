"""Joins and splits: cat, stack, split, chunk, unbind. The splits are views (getitem of a
slice); their gradients add into one buffer (``GetItem.backward_into``)."""

from __future__ import annotations

import builtins

from ..autograd import Op
from ..tensor import ShapeError
from ._args import DimError, _dim1, _t
from ._methods import tensor_method
from .index import getitem


class Cat(Op):
    """y = concatenate(xs, dim);  dx_i = the slice of g that x_i filled."""

    def forward(self, *xs, dim=0):
        self.dim = dim
        self.sizes = [x.shape[dim] for x in xs]
        return self.xp.concatenate(xs, axis=dim)

    def backward(self, g):
        out, start = [], 0
        for n, need in zip(self.sizes, self.needs):
            if need:
                idx = (slice(None),) * self.dim + (slice(start, start + n),)
                out.append(g[idx])
            else:
                out.append(None)
            start += n
        return tuple(out)


class Stack(Op):
    """y = stack(xs, dim);  dx_i = g taken at position i along dim."""

    def forward(self, *xs, dim=0):
        self.dim = dim
        return self.xp.stack(xs, axis=dim)

    def backward(self, g):
        idx = (slice(None),) * self.dim
        return tuple(g[idx + (i,)] if need else None for i, need in enumerate(self.needs))


# ----------------------------------------------------------------------------- functions


def cat(tensors, dim=0):
    tensors = [_t(x, "cat") for x in tensors]
    if not tensors:
        raise ValueError("cat: expected a non-empty list of tensors")
    d = _dim1(tensors[0], dim, "cat")
    ref = tensors[0].shape
    for i, x in enumerate(tensors):
        if x.ndim != len(ref) or builtins.any(
            a != b for j, (a, b) in enumerate(zip(x.shape, ref)) if j != d
        ):
            raise ShapeError(
                f"cat: tensor {i} has shape {tuple(x.shape)} but tensor 0 has {tuple(ref)}; all "
                f"dims except dim {d} must match"
            )
    if len(tensors) == 1:
        return tensors[0]
    return Cat.apply(*tensors, dim=d)


concatenate = concat = cat


def stack(tensors, dim=0):
    tensors = [_t(x, "stack") for x in tensors]
    if not tensors:
        raise ValueError("stack: expected a non-empty list of tensors")
    ref = tensors[0].shape
    for i, x in enumerate(tensors):
        if x.shape != ref:
            raise ShapeError(
                f"stack: tensor {i} has shape {tuple(x.shape)} but tensor 0 has {tuple(ref)}; "
                "all must match"
            )
    nd = len(ref) + 1
    if not -nd <= dim < nd:
        raise DimError(f"stack: dim {dim} is out of range for a result of {nd} dims "
                       f"(expected {-nd}..{nd - 1})")
    return Stack.apply(*tensors, dim=dim % nd)


@tensor_method()
def split(x, split_size_or_sections, dim=0):
    x = _t(x, "split")
    if x.ndim == 0:
        raise ValueError("split: needs a tensor of at least 1 dim, got a 0-d tensor")
    d = _dim1(x, dim, "split")
    n = x._data.shape[d]
    if isinstance(split_size_or_sections, builtins.int):
        step = split_size_or_sections
        if step <= 0:
            raise ValueError(f"split: split_size must be positive, got {step}")
        sizes = [builtins.min(step, n - i) for i in range(0, n, step)]
    else:
        sizes = list(split_size_or_sections)
        if builtins.sum(sizes) != n:
            raise ShapeError(f"split: sections {sizes} sum to {builtins.sum(sizes)}, not {n}")
    out, start = [], 0
    pre = (slice(None),) * d
    for s in sizes:
        out.append(getitem(x, pre + (slice(start, start + s),)))
        start += s
    return tuple(out)


@tensor_method()
def chunk(x, chunks, dim=0):
    x = _t(x, "chunk")
    if not isinstance(chunks, builtins.int) or chunks <= 0:
        raise ValueError(f"chunk: chunks must be a positive integer, got {chunks!r}")
    n = x._data.shape[_dim1(x, dim, "chunk")]
    step = -(-n // chunks)
    return split(x, step, dim)


@tensor_method()
def unbind(x, dim=0):
    x = _t(x, "unbind")
    d = _dim1(x, dim, "unbind")
    pre = (slice(None),) * d
    return tuple(getitem(x, pre + (i,)) for i in range(x._data.shape[d]))


__all__ = ["cat", "concatenate", "concat", "stack", "split", "chunk", "unbind"]
