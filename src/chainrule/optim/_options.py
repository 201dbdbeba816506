"""Keyword options PyTorch's optimizers take that change nothing here.

``foreach`` and ``capturable`` choose how PyTorch batches the update over tensors and whether
it can be captured in a CUDA graph; the numbers are the same either way, so they are accepted
and ignored. ``differentiable=True`` asks for the update itself to be recorded for autograd,
which these in-place updates do not do, so it is refused."""

from __future__ import annotations


def check_pytorch_options(name: str, foreach=None, capturable=False, differentiable=False):
    """Raise a clear error for the accepted-but-unsupported ``differentiable=True``."""
    if differentiable:
        raise ValueError(f"{name}: differentiable=True is not supported (the update runs in "
                         "place, outside autograd); use differentiable=False")
