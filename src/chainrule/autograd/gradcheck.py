"""Gradient checking: compare backprop's gradient with central finite differences in float64.

``gradcheck`` checks every element of every input that requires grad, and on a mismatch names
the input, the element, both numbers and the relative error. A random output covector ``u``
makes one backward pass check the whole Jacobian row-space at once: for each input element
x_j it compares (u . f(x + eps e_j) - u . f(x - eps e_j)) / 2 eps with (J^T u)_j.
"""

from __future__ import annotations

import numpy as np

from ..tensor import Tensor
from . import engine as autograd


class GradcheckError(AssertionError, RuntimeError):
    """Raised when an analytic gradient disagrees with finite differences: an AssertionError,
    and a RuntimeError as PyTorch's GradcheckError is."""


def _as_tuple(x):
    return tuple(x) if isinstance(x, (tuple, list)) else (x,)


def _outputs(fn, inputs):
    out = _as_tuple(fn(*inputs))
    return [o for o in out if isinstance(o, Tensor) and o._data.dtype.kind == "f"]


def gradcheck(fn, inputs, *, eps=1e-6, atol=1e-5, rtol=1e-3, raise_exception=True, seed=0,
              name=None):
    """True when ``fn``'s backprop gradients match central differences at ``inputs``.

    ``inputs``: a tensor or tuple of tensors (and other arguments, passed through); those that
    require grad are checked. They should be float64: float32 cannot resolve eps.
    """
    inputs = _as_tuple(inputs)
    label = name or getattr(fn, "__name__", "function")
    rng = np.random.default_rng(seed)
    checked = [i for i, x in enumerate(inputs) if isinstance(x, Tensor) and x.requires_grad]
    if not checked:
        raise ValueError("gradcheck: no input requires grad")
    for i in checked:
        if inputs[i].dtype != np.float64:
            raise TypeError(
                f"gradcheck: input {i} is {inputs[i].dtype}; use float64 inputs (finite "
                "differences in float32 are too coarse to check anything)"
            )
    outs = _outputs(fn, inputs)
    us = [rng.standard_normal(o.shape) for o in outs]

    def scalar(args):
        res = _outputs(fn, args)  # grad mode stays on: gradgradcheck's fn calls grad()
        return sum(float((u * np.asarray(o._data, dtype=np.float64)).sum())
                   for u, o in zip(us, res))

    diff = [o for o in outs if o.requires_grad]
    if diff:
        seeds = [Tensor._wrap(u.astype(o.dtype)) for u, o in zip(us, outs) if o.requires_grad]
        analytic = autograd.grad(diff, [inputs[i] for i in checked], seeds, allow_unused=True)
    else:
        analytic = [None] * len(checked)
    for k, i in enumerate(checked):
        x = inputs[i]
        a = (np.zeros(x.shape) if analytic[k] is None
             else np.asarray(analytic[k]._data, dtype=np.float64))
        if a.shape != tuple(x.shape):
            return _fail(raise_exception, f"{label}: gradient of input {i} has shape {a.shape}, "
                                          f"expected {tuple(x.shape)}")
        base = x._data
        for j in np.ndindex(*x.shape) if x.ndim else [()]:
            orig = base[j]
            hi_args = list(inputs)
            pert = base.copy()
            pert[j] = orig + eps
            hi_args[i] = Tensor._wrap(pert, requires_grad=True)
            hi = scalar(hi_args)
            pert[j] = orig - eps
            lo = scalar(hi_args)
            n = (hi - lo) / (2 * eps)
            if not abs(a[j] - n) <= atol + rtol * abs(n):
                rel = abs(a[j] - n) / max(abs(n), 1e-300)
                return _fail(
                    raise_exception,
                    f"{label}: gradient of input {i} (shape {tuple(x.shape)}) at element {j}: "
                    f"backprop gives {a[j]:.8g}, finite differences give {n:.8g} "
                    f"(relative error {rel:.3g}, atol {atol}, rtol {rtol})",
                )
    return True


def gradgradcheck(fn, inputs, *, eps=1e-6, atol=1e-5, rtol=1e-3, raise_exception=True, seed=1,
                  name=None):
    """True when the gradient of ``fn`` (computed with create_graph=True) is itself correctly
    differentiated: gradcheck of x -> J(x)^T u for a fixed random covector u."""
    inputs = _as_tuple(inputs)
    label = name or getattr(fn, "__name__", "function")
    rng = np.random.default_rng(seed)
    checked = [i for i, x in enumerate(inputs) if isinstance(x, Tensor) and x.requires_grad]
    outs = [o for o in _outputs(fn, inputs) if o.requires_grad]
    us = [Tensor._wrap(rng.standard_normal(o.shape)) for o in outs]

    def first_grad(*args):
        res = [o for o in _outputs(fn, args) if o.requires_grad]
        grads = autograd.grad(res, [args[i] for i in checked], us, create_graph=True,
                              allow_unused=True)
        return tuple(g for g in grads if g is not None)

    first_grad.__name__ = f"grad of {label}"
    return gradcheck(first_grad, inputs, eps=eps, atol=atol, rtol=rtol,
                     raise_exception=raise_exception, seed=seed + 1)


def _fail(raise_exception, msg):
    if raise_exception:
        raise GradcheckError(msg)
    return False
