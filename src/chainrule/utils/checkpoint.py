"""Activation checkpointing (``torch.utils.checkpoint.checkpoint``): run a segment of the
network without keeping its intermediate values, and run it again during backward to get
them, with the random state of the first run restored so that dropout draws the same masks.

Memory: only the segment's inputs and output are kept; time: one more forward of the segment.
"""

from __future__ import annotations

from .. import random as _random
from ..autograd import Function, enable_grad, no_grad
from ..tensor import Tensor

__all__ = ["checkpoint", "checkpoint_sequential"]


class _Checkpoint(Function):
    @staticmethod
    def forward(ctx, fn, preserve, kwargs, *args):
        ctx.segment, ctx.kwargs, ctx.args = fn, kwargs, args
        ctx.state = _random.get_rng_state() if preserve else None
        with no_grad():
            out = fn(*args, **kwargs)
        if not isinstance(out, Tensor):
            raise TypeError(f"checkpoint: the function must return one Tensor, got "
                            f"{type(out).__name__}")
        return out

    @staticmethod
    def backward(ctx, g):
        needs = ctx.needs_input_grad[3:]
        inputs = [a.detach().requires_grad_(bool(n)) if isinstance(a, Tensor) else a
                  for a, n in zip(ctx.args, needs)]
        now = None
        if ctx.state is not None:
            now = _random.get_rng_state()
            _random.set_rng_state(ctx.state)
        try:
            with enable_grad():
                out = ctx.segment(*inputs, **ctx.kwargs)
        finally:
            if now is not None:
                _random.set_rng_state(now)
        if out.requires_grad:
            out.backward(g)
        grads = [a.grad if isinstance(a, Tensor) and a.requires_grad else None for a in inputs]
        return (None, None, None) + tuple(grads)


def checkpoint(function, *args, use_reentrant=None, preserve_rng_state=True,
               context_fn=None, determinism_check="default", debug=False, **kwargs):
    """``function(*args, **kwargs)`` whose intermediate values are recomputed during backward
    instead of kept. The function returns one Tensor; the gradients reach its tensor
    arguments and the parameters it uses (accumulated into their ``.grad``, as PyTorch's
    reentrant checkpoint). When no tensor argument requires grad the function runs plainly
    (kept values, and gradients for its parameters)."""
    if not callable(function):
        raise TypeError(f"checkpoint: expected a callable, got {type(function).__name__}")
    if not any(isinstance(a, Tensor) and a.requires_grad for a in args):
        # nothing to route the gradient through: run it plainly, so parameters still learn
        return function(*args, **kwargs)
    return _Checkpoint.apply(function, bool(preserve_rng_state), kwargs, *args)


def checkpoint_sequential(functions, segments, input, use_reentrant=None, **kwargs):
    """Run ``functions`` (a Sequential or a list of modules) in ``segments`` checkpointed
    pieces (the last one not checkpointed, as PyTorch)."""
    fns = list(functions.children()) if hasattr(functions, "children") else list(functions)
    if segments < 1:
        raise ValueError(f"checkpoint_sequential: segments must be at least 1, got {segments}")
    size = max(len(fns) // segments, 1)

    def run(start, end):
        def f(x):
            for m in fns[start:end]:
                x = m(x)
            return x
        return f

    end = -1
    for start in range(0, size * (segments - 1), size):
        end = start + size - 1
        input = checkpoint(run(start, end + 1), input)
    return run(end + 1, len(fns))(input)
